"""One worker thread that runs reconciles in due-time order, so a sandbox run is deterministic."""
from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass(frozen=True)
class Clock:
    """Sandbox time: every interval and delay from a spec is divided by speed."""

    speed: float = 1.0

    def scale(self, seconds: float) -> float:
        return seconds / self.speed


class Scheduler:
    def __init__(self, handler: Callable[[Key], None], on_error: Callable[[Key, BaseException], None]) -> None:
        self._handler = handler
        self._on_error = on_error
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}  # earliest due time per key; later duplicates are dropped
        self._urgent: set[Key] = set()  # tasks that count against idleness (not periodic re-syncs)
        self._seq = 0
        self._cond = threading.Condition()
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name='sandbox-controllers', daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def enqueue(self, key: Key, delay: float = 0.0, *, periodic: bool = False) -> None:
        due = time.monotonic() + max(0.0, delay)
        with self._cond:
            if not periodic:
                self._urgent.add(key)
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, key))
            self._cond.notify_all()

    def _next(self) -> Key | None:
        with self._cond:
            while not self._stopped:
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier entry for the same key
                if self._heap:
                    due, _, key = self._heap[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        del self._due[key]
                        self._urgent.discard(key)
                        self._busy = True
                        return key
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        while True:
            key = self._next()
            if key is None:
                return
            try:
                self._handler(key)
            except Exception as error:  # a controller bug must not kill the sandbox
                self._on_error(key, error)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._busy and not self._urgent

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or self._urgent:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

"""Deterministic fault injection for the sandbox API server, scriptable from tests and from `--faults`.

Spec grammar (items separated by `;`, see docs/sandbox.md):

    fail:N:STATUS[:RETRY_AFTER][@VERB/RESOURCE]   the next N matching requests answer STATUS
    drop:N[@VERB/RESOURCE]                         the next N matching requests lose their connection
    delay:SECONDS[:N][@VERB/RESOURCE]              delay matching responses (N of them, default all)
    cut-watch:events=N | cut-watch:seconds=T       end every watch stream after N events or T seconds
    expire-watch[:N]                               the next N watch resumes get 410 Expired
    outage:SECONDS[:AFTER]                         take the server down for SECONDS, AFTER seconds from start

VERB and RESOURCE may each be `*`; RESOURCE is the plural (`kustomizations`) or plural/subresource.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from dataclasses import field


class FaultSpecError(ValueError):
    pass


@dataclass
class _Rule:
    action: str  # fail, drop or delay
    remaining: int | None  # None: until cleared
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    verb: str | None = None
    resource: str | None = None

    def matches(self, verb: str, resource: str) -> bool:
        return (self.verb in (None, '*', verb)) and (self.resource in (None, '*', resource))


@dataclass(frozen=True)
class Decision:
    """What to do to one request: any combination of a delay, a failure status and a dropped connection."""

    delay: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    drop: bool = False


@dataclass
class FaultInjector:
    _rules: list[_Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    watch_cut_events: int | None = None
    watch_cut_seconds: float | None = None
    _expire_watches: int = 0
    # Planned outages as (start after seconds, duration); the server starts them.
    outages: list[tuple[float, float]] = field(default_factory=list)

    # -- scripting -------------------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 500, *, verb: str | None = None, resource: str | None = None,
                  retry_after: float | None = None) -> None:
        with self._lock:
            self._rules.append(_Rule('fail', count, status=status, retry_after=retry_after, verb=verb,
                                     resource=resource))

    def drop_next(self, count: int, *, verb: str | None = None, resource: str | None = None) -> None:
        with self._lock:
            self._rules.append(_Rule('drop', count, verb=verb, resource=resource))

    def delay(self, seconds: float, count: int | None = None, *, verb: str | None = None,
              resource: str | None = None) -> None:
        with self._lock:
            self._rules.append(_Rule('delay', count, seconds=seconds, verb=verb, resource=resource))

    def cut_watches(self, *, after_events: int | None = None, after_seconds: float | None = None) -> None:
        with self._lock:
            self.watch_cut_events = after_events
            self.watch_cut_seconds = after_seconds

    def expire_next_watch(self, count: int = 1) -> None:
        with self._lock:
            self._expire_watches += count

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.watch_cut_events = None
            self.watch_cut_seconds = None
            self._expire_watches = 0

    # -- consulted by the server -----------------------------------------------------------------------

    def decide(self, verb: str, resource: str) -> Decision:
        delay = 0.0
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(verb, resource):
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                if rule.action == 'delay':
                    delay += rule.seconds
                    continue
                if rule.action == 'drop':
                    return Decision(delay=delay, drop=True)
                return Decision(delay=delay, status=rule.status, retry_after=rule.retry_after)
        return Decision(delay=delay)

    def take_watch_expiry(self) -> bool:
        with self._lock:
            if self._expire_watches > 0:
                self._expire_watches -= 1
                return True
            return False


def _target(text: str) -> tuple[str, dict[str, str | None]]:
    body, _, target = text.partition('@')
    if not target:
        return body, {'verb': None, 'resource': None}
    verb, _, resource = target.partition('/')
    return body, {'verb': verb or None, 'resource': resource or None}


def parse_fault_spec(spec: str) -> FaultInjector:
    injector = FaultInjector()
    for item in (part.strip() for part in spec.split(';')):
        if not item:
            continue
        try:
            _parse_item(injector, item)
        except (ValueError, IndexError) as error:
            raise FaultSpecError(
                f'bad fault {item!r}: {error}; expected e.g. fail:3:503, drop:2@list/kustomizations, '
                'delay:0.5, cut-watch:events=5, expire-watch, outage:10:5'
            ) from error
    return injector


def _parse_item(injector: FaultInjector, item: str) -> None:
    body, target = _target(item)
    action, *args = body.split(':')
    if action == 'fail':
        retry_after = float(args[2]) if len(args) > 2 else None
        status = int(args[1]) if len(args) > 1 else 500
        if status < 400 or status > 599:
            raise ValueError('status must be 4xx or 5xx')
        injector.fail_next(int(args[0]), status, retry_after=retry_after, **target)
    elif action == 'drop':
        injector.drop_next(int(args[0]), **target)
    elif action == 'delay':
        injector.delay(float(args[0]), int(args[1]) if len(args) > 1 else None, **target)
    elif action == 'cut-watch':
        key, _, value = args[0].partition('=')
        if key == 'events':
            injector.cut_watches(after_events=int(value))
        elif key == 'seconds':
            injector.cut_watches(after_seconds=float(value))
        else:
            raise ValueError('cut-watch takes events=N or seconds=T')
    elif action == 'expire-watch':
        injector.expire_next_watch(int(args[0]) if args else 1)
    elif action == 'outage':
        injector.outages.append((float(args[1]) if len(args) > 1 else 0.0, float(args[0])))
    else:
        raise ValueError(f'unknown fault {action!r}')

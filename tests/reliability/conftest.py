"""Shared pieces of the reliability suite: fast sandbox worlds, the checks every fault scenario makes, and the
one-line error check of the bad-input cases.

Worlds come from tests/wait/fleet.py (a fleet repository pushed to a bare remote that a sandbox follows, and a
user's clone), run at a higher sandbox speed so that each scenario takes seconds.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from flux_monitor_hook.sandbox.apiserver import Request
from flux_monitor_hook.sandbox.apiserver import RequestLog
from tests.hooks.conftest import PRE_COMMIT
from tests.hooks.conftest import Fleet
from tests.hooks.conftest import make_fleet
from tests.wait import fleet

# 100x: a Kustomization's 1m health-check timeout is 0.6 s, its 10m interval 6 s, the 1h GitRepository
# interval (Flux's own polling, which the tests do not want) 36 s.
SPEED = 100.0
ROOT = Path(__file__).resolve().parents[2]

MakeWorld = Callable[..., fleet.World]


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[MakeWorld]:
    """Build a World (tests/wait/fleet.world's arguments) at SPEED; several per test get their own directories."""
    with contextlib.ExitStack() as stack:
        yield fleet.world_factory(tmp_path, stack, speed=SPEED, bookmark_interval=0.5)


def configure(world: fleet.World, settings: Mapping[str, Any]) -> None:
    """Write .flux-monitor.yaml at the root of the user's clone (untracked: no commit changes)."""
    (world.clone / '.flux-monitor.yaml').write_text(yaml.safe_dump(dict(settings), sort_keys=False))


def retries(attempts: int, delay: str = '100ms', **more: Any) -> dict[str, Any]:
    return {'error_handling': {'retry_attempts': attempts, 'retry_delay': delay, **more}}


# -- what every fault scenario checks -------------------------------------------------------------------

def no_crash(run: fleet.Run) -> None:
    assert 'Traceback' not in run.stderr and 'Traceback' not in run.stdout, run
    assert run.code in (0, 1, 2, 3, 4, 130), run  # never a signal (abort) or Python's own exit 1 on a crash


def events_by_resource(run: fleet.Run) -> dict[tuple[str, str, str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for record in run.records:
        if record['type'] == 'event':
            key = (record['cluster'], record['kind'], record['namespace'], record['name'])
            found.setdefault(key, []).append(record)
    return found


def check_verdict(run: fleet.Run, result: str, code: int) -> dict[str, Any]:
    """The verdict and its exit code, no crash, and an event stream that neither repeats nor skips a state:
    for every followed object the states have no consecutive duplicates, end in its summary state, and a landed
    object was seen pending first unless it had landed when the wait started."""
    no_crash(run)
    assert run.code == code, run
    summary = run.summary
    assert summary['result'] == result, run
    events = events_by_resource(run)
    for item in summary['sources'] + summary['resources']:
        key = (item['cluster'], item['kind'], item['namespace'], item['name'])
        assert key in events, f'{key} is in the summary but was never reported\n{run}'
        states = [event['state'] for event in events[key]]
        repeated = [a for a, b in itertools.pairwise(states) if a == b]
        assert not repeated, f'{key} reported {repeated[0]} twice in a row: {states}\n{run}'
        assert states[-1] == item['state'], f'{key} ended as {states[-1]}, summary says {item["state"]}\n{run}'
        previous = [event['previous'] for event in events[key]]
        assert previous[0] is None and previous[1:] == states[:-1], f'{key}: previous {previous} vs {states}'
        if item['state'] == 'landed' and len(states) > 1:
            assert 'pending' in states, f'{key} landed without being seen pending: {states}\n{run}'
    return summary


def sha_landed(run: fleet.Run, sha: str) -> None:
    """Every landed source holds the commit (its revision names it)."""
    for source in run.summary['sources']:
        if source['state'] == 'landed':
            assert sha in (source['revision'] or ''), (source, run)


def failures(log: RequestLog, verb: str, resource: str) -> list[Request]:
    return [request for request in log.attempts(verb, resource) if request.fault]


def one_line_error(stderr: str) -> str:
    """A user-facing error: one non-empty line on stderr, `flux-monitor: error:` or the tool's own prefix."""
    assert 'Traceback' not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f'expected one line on stderr, got:\n{stderr}'
    return lines[0]


def flux_monitor(*args: str, cwd: Path, env: Mapping[str, str], timeout: float = 60,
                 input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, '-m', 'flux_monitor_hook', *args], cwd=cwd, env=dict(env),
                          capture_output=True, timeout=timeout, check=False, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- running a wait while acting on what it prints ----------------------------------------------------------

def wait_reacting(world: fleet.World, *args: str, react: Callable[[dict[str, Any]], None],
                  env: Mapping[str, str] | None = None, timeout: float = 60) -> fleet.Run:
    """`flux-monitor wait --format json ...`, calling react(record) on each JSON line as it comes (e.g. to cut
    the API off once the wait has started following)."""
    import threading
    import time

    started = time.monotonic()
    process = subprocess.Popen(fleet.command(*args), cwd=world.clone, env=dict(env or world.env()),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               bufsize=1)
    assert process.stdout is not None and process.stderr is not None
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            react(record)
        process.wait(timeout)
    finally:
        killer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(5)
    return fleet.Run(process.returncode, ''.join(lines), ''.join(stderr), time.monotonic() - started)


def once(action: Callable[[], None], when: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], None]:
    """A react callback that runs action the first time a record matches."""
    done = False

    def react(record: dict[str, Any]) -> None:
        nonlocal done
        if not done and when(record):
            done = True
            action()

    return react


def first_event(record: dict[str, Any]) -> bool:
    return record.get('type') == 'event'


# -- a clone with the pre-commit hooks, for the background follower ---------------------------------------

@pytest.fixture
def hook_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """tests/hooks' fleet, faster: the sandbox at SPEED, and a HOME of its own."""
    home = tmp_path / 'home'
    home.mkdir()
    with make_fleet(tmp_path, speed=SPEED, home=home) as fleet_:
        yield fleet_


def install_hooks(fleet: Fleet, *hook_types: str) -> None:
    args = [arg for hook_type in hook_types for arg in ('--hook-type', hook_type)]
    result = fleet.run(PRE_COMMIT, 'install', *args)
    assert result.returncode == 0, result.stdout + result.stderr


def results_for(fleet: Fleet, sha: str) -> list[dict[str, Any]]:
    directory = fleet.git_dir / 'flux-monitor' / 'results'
    found = []
    for path in sorted(directory.glob('*.json')) if directory.is_dir() else []:
        data = json.loads(path.read_text())
        if data.get('sha') == sha:
            found.append(data)
    return found

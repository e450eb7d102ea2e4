"""Background followers: their records, results and logs under the repository's git directory.

<git-dir>/flux-monitor/
    followers/<branch>.json   the running follower of a branch: pid, commit, log file
    results/<time>-<branch>.json   one per finished follow (the wait's JSON summary plus who/what/when)
    logs/<time>-<branch>.log       what the follower printed

Everything is created readable by the owner only (it can name clusters and URLs), and only the newest
KEEP results and logs are kept. This module is imported on the git hooks' fast path: standard library only.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import NamedTuple

KEEP = 20
DIRECTORY = 'flux-monitor'


def state_dir(git_dir: Path, *parts: str) -> Path:
    path = git_dir / DIRECTORY
    for part in ('', *parts):
        path = path / part if part else path
        path.mkdir(mode=0o700, exist_ok=True)  # each level, so none gets the umask's wider mode
    return path


def branch_key(branch: str) -> str:
    """A file name for a branch (or tag) name: slashes and anything unusual become '_'."""
    return re.sub(r'[^A-Za-z0-9._-]', '_', branch)[:100] or '_'


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, atomically."""
    partial = path.with_name(f'.{path.name}.{os.getpid()}.partial')
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, 'w') as stream:
        json.dump(data, stream, indent=2)
        stream.write('\n')
    os.replace(partial, path)


def open_private(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Follower(NamedTuple):  # not a dataclass: importing dataclasses costs git's hooks ~8 ms
    branch: str
    sha: str
    pid: int
    log: Path
    started: float  # when the hook queued it (time.time()): the later one supersedes the earlier

    def to_json(self) -> dict[str, Any]:
        return {'branch': self.branch, 'sha': self.sha, 'pid': self.pid, 'log': str(self.log),
                'started': self.started}


def running(git_dir: Path, branch: str) -> Follower | None:
    data = _read(git_dir / DIRECTORY / 'followers' / f'{branch_key(branch)}.json')
    if not data or not alive(int(data.get('pid', 0))):
        return None
    return Follower(str(data['branch']), str(data['sha']), int(data['pid']), Path(data['log']),
                    float(data.get('started', 0)))


def all_running(git_dir: Path) -> list[Follower]:
    directory = git_dir / DIRECTORY / 'followers'
    found = []
    for path in sorted(directory.glob('*.json')) if directory.is_dir() else []:
        data = _read(path)
        if data and alive(int(data.get('pid', 0))):
            found.append(Follower(str(data['branch']), str(data['sha']), int(data['pid']), Path(data['log']),
                                  float(data.get('started', 0))))
    return found


@contextlib.contextmanager
def branch_lock(git_dir: Path, branch: str) -> Iterator[None]:
    """Held while a follower looks for the branch's running follower and registers itself, so that two
    followers started at once cannot both miss each other."""
    path = state_dir(git_dir, 'followers') / f'.{branch_key(branch)}.lock'
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def register(git_dir: Path, follower: Follower) -> None:
    write_private(state_dir(git_dir, 'followers') / f'{branch_key(follower.branch)}.json', follower.to_json())


def unregister(git_dir: Path, branch: str, pid: int) -> None:
    path = git_dir / DIRECTORY / 'followers' / f'{branch_key(branch)}.json'
    data = _read(path)
    if data and int(data.get('pid', 0)) == pid:
        path.unlink(missing_ok=True)


def current_sha(git_dir: Path, branch: str) -> str | None:
    data = _read(git_dir / DIRECTORY / 'followers' / f'{branch_key(branch)}.json')
    return str(data['sha']) if data else None


def stop(follower: Follower) -> None:
    try:
        os.kill(follower.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def new_log(git_dir: Path, branch: str) -> Path:
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime()) + f'-{time.time_ns() % 1_000_000:06d}'
    path = state_dir(git_dir, 'logs') / f'{stamp}-{branch_key(branch)}.log'
    os.close(open_private(path))
    _prune(path.parent)
    return path


def record_result(git_dir: Path, branch: str, data: dict[str, Any]) -> Path:
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime()) + f'-{time.time_ns() % 1_000_000:06d}'
    path = state_dir(git_dir, 'results') / f'{stamp}-{branch_key(branch)}.json'
    write_private(path, {**data, 'branch': branch, 'finished_at': time.time()})
    _prune(path.parent)
    return path


def latest_results(git_dir: Path) -> dict[str, dict[str, Any]]:
    """The newest result per branch."""
    directory = git_dir / DIRECTORY / 'results'
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob('*.json')) if directory.is_dir() else []:
        data = _read(path)
        if data and data.get('branch'):
            latest[str(data['branch'])] = data
    return latest


def _prune(directory: Path) -> None:
    entries = sorted(p for p in directory.iterdir() if not p.name.startswith('.'))
    for old in entries[:-KEEP]:
        old.unlink(missing_ok=True)


def spawn(arguments: list[str], log: Path, *, terminal: int | None) -> int:
    """Start `flux-monitor follower ...` detached from git and pre-commit: its own session, no inherited pipes
    (pre-commit waits for its hook's output pipe to close, so holding it would hang the push). It gets the
    user's terminal as an extra descriptor, since a process in a new session cannot open /dev/tty."""
    descriptor = open_private(log)
    env = dict(os.environ, FLUX_MONITOR_FOLLOWER='1')
    # The order of the pushes, whatever order their followers come up in.
    extra = ['--queued-at', repr(time.time())]
    if terminal is not None:
        extra += ['--terminal-fd', str(terminal)]
    try:
        process = subprocess.Popen(
            [sys.executable, '-m', 'flux_monitor_hook', 'follower', *arguments, *extra],
            stdin=subprocess.DEVNULL, stdout=descriptor, stderr=descriptor, start_new_session=True,
            close_fds=True, pass_fds=(terminal,) if terminal is not None else (), env=env,
        )
    finally:
        os.close(descriptor)
    return process.pid

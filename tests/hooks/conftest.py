"""A GitOps repository the sandbox follows, a clone with the pre-commit hooks installed, and a terminal."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flux_monitor_hook.sandbox import Sandbox
from tests.sandbox.gitutil import commit
from tests.sandbox.gitutil import git
from tests.sandbox.gitutil import git_env
from tests.sandbox.gitutil import init_repo
from tests.sandbox.gitutil import write_files

PRE_COMMIT = str(Path(sys.executable).with_name('pre-commit'))

KUSTOMIZATION = '''apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: 10m
  path: ./apps
  prune: true
  wait: true
  timeout: 1m
  sourceRef:
    kind: GitRepository
    name: flux-system
'''


def deployment(selector: str = 'web', image: str = '1.0', *, never_ready: bool = False) -> str:
    marker = '  annotations:\n    sandbox.flux-monitor.io/rollout: never\n' if never_ready else ''
    return f'''apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
{marker}spec:
  selector:
    matchLabels:
      app: {selector}
  template:
    metadata:
      labels:
        app: {selector}
    spec:
      containers:
        - name: web
          image: nginx:{image}
'''


def hook_config(entry: str) -> str:
    return f'''repos:
  - repo: local
    hooks:
      - id: flux-monitor
        name: flux-monitor
        entry: {entry}
        language: system
        pass_filenames: false
        always_run: true
        require_serial: true
        stages: [pre-commit, pre-push, post-commit, manual]
'''


@dataclass
class Fleet:
    sandbox: Sandbox
    remote: Path
    clone: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        result = subprocess.run(['git', *args], cwd=self.clone, env=self.env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def commit(self, message: str, files: dict[str, str | None]) -> str:
        """Commit with this fleet's environment, so that the hooks git runs see its kubeconfig."""
        write_files(self.clone, files)
        self.git('add', '--all')
        self.git('commit', '--quiet', '-m', message)
        return self.git('rev-parse', 'HEAD')

    def run(self, *args: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=self.clone, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]

    def flux_monitor(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, '-m', 'flux_monitor_hook', *args, timeout=timeout)

    @property
    def git_dir(self) -> Path:
        return self.clone / '.git'

    def wait_until_following(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while 'following' not in self.flux_monitor('status').stdout:
            assert time.monotonic() < deadline, 'no follower started'
            time.sleep(0.1)

    def wait_for_result(self, sha: str, timeout: float = 30) -> dict:
        import json

        deadline = time.monotonic() + timeout
        results = self.git_dir / 'flux-monitor' / 'results'
        while time.monotonic() < deadline:
            for path in sorted(results.glob('*.json')) if results.is_dir() else []:
                data = json.loads(path.read_text())
                if data.get('sha') == sha:
                    return data
            time.sleep(0.1)
        raise AssertionError(f'no result for {sha} within {timeout}s')


@contextlib.contextmanager
def make_fleet(tmp_path: Path, *, speed: float, home: Path) -> Iterator[Fleet]:
    """A clone with the hook in .pre-commit-config.yaml and a sandbox following its remote; followers stopped
    and controller errors checked at the end."""
    seed = init_repo(tmp_path / 'seed')
    commit(seed, 'fleet', {
        'clusters/staging/apps.yaml': KUSTOMIZATION,
        'apps/web.yaml': deployment(),
        '.pre-commit-config.yaml': hook_config(f'{sys.executable} -m flux_monitor_hook hook'),
    })
    remote = tmp_path / 'fleet.git'
    git(tmp_path, 'clone', '--quiet', '--bare', str(seed), str(remote))
    clone = tmp_path / 'clone'
    git(tmp_path, 'clone', '--quiet', str(remote), str(clone))
    with Sandbox(repo=remote, cluster_path='clusters/staging', speed=speed, git_interval='10m') as sandbox:
        assert sandbox.wait_idle(30)
        env = dict(git_env(), KUBECONFIG=str(sandbox.kubeconfig_path), PRE_COMMIT_HOME=str(tmp_path / 'pre-commit'),
                   HOME=str(home))
        yield Fleet(sandbox, remote, clone, env)
        subprocess.run([sys.executable, '-m', 'flux_monitor_hook', 'stop'], cwd=clone, env=env, capture_output=True,
                       timeout=30, check=False)
        assert sandbox.controllers.errors == []


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with make_fleet(tmp_path, speed=30, home=tmp_path) as made:
        yield made


@dataclass
class Terminal:
    """A pseudo-terminal that outlives the command run in it, as a user's shell keeps its terminal open."""

    master: int
    slave: int
    output: bytes = b''

    def run(self, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        return subprocess.Popen(args, cwd=cwd, env=env, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                preexec_fn=controlling_terminal)

    def read_until(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    break
        return self.output.decode(errors='replace')


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    master, slave = pty.openpty()
    yield Terminal(master, slave)
    os.close(master)
    os.close(slave)

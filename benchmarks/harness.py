"""What the benchmarks share: statistics, tables, git, Flux objects written straight into a sandbox's store, and
`flux-monitor wait` run as a real subprocess whose output lines are timestamped as they arrive.

Every figure a benchmark reports is measured in the run that reports it; nothing here holds a result.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from flux_monitor_hook.commands.demo import write_files as demo_write_files  # noqa: E402 - needs the path above
from flux_monitor_hook.sandbox import Sandbox  # noqa: E402 - needs the path above

Obj = dict[str, Any]
GIT_API = 'source.toolkit.fluxcd.io/v1'
KS_API = 'kustomize.toolkit.fluxcd.io/v1'
HR_API = 'helm.toolkit.fluxcd.io/v2'


# -- statistics and tables ------------------------------------------------------------------------------

def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (as bench_explain.py): p95 of 60 values is the 57th smallest."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def ms(seconds: float) -> str:
    return f'{seconds * 1000:,.1f} ms' if seconds < 10 else f'{seconds:,.1f} s'


def secs(seconds: float) -> str:
    return f'{seconds:.2f} s'


def ratio(numerator: float, denominator: float) -> str:
    return f'{numerator / denominator:.2f}' if denominator > 0 else 'n/a'


@dataclass
class Table:
    """One benchmark's result: a markdown table plus what was measured and how."""

    key: str  # stable identifier, e.g. 'detection' (the smoke test looks for every key)
    title: str
    method: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f'<a id="{self.key}"></a>', f'## {self.title}', '', self.method, '',
                 '| ' + ' | '.join(self.columns) + ' |', '|' + '---|' * len(self.columns)]
        lines += ['| ' + ' | '.join(row) + ' |' for row in self.rows]
        for note in self.notes:
            lines += ['', note]
        return '\n'.join(lines) + '\n'


@dataclass
class Check:
    """A target and what was measured against it."""

    target: str
    measured: str
    met: bool | None  # None: not measured (e.g. kubectl missing)


# -- processes ------------------------------------------------------------------------------------------

def wall() -> float:
    return time.time()


def parse_time(text: str) -> float:
    """The `time` of a flux-monitor JSON line (UTC, microseconds) as a time.time() value."""
    return datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=timezone.utc).timestamp()


class Lines:
    """A running process whose stdout lines are read on a thread and stamped with time.time() on arrival."""

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.started = wall()
        self.process = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=dict(env) if env is not None else None, cwd=cwd, bufsize=1)
        self.lines: list[tuple[float, str]] = []
        self.stderr = ''
        self._cond = threading.Condition()
        self._done = False
        self.rusage: Any = None
        self.returncode: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errors = threading.Thread(target=self._read_errors, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            stamp = wall()
            with self._cond:
                self.lines.append((stamp, line.rstrip('\n')))
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    def wait_for(self, predicate: Callable[[list[tuple[float, str]]], Any], timeout: float) -> Any:
        """The first truthy predicate(lines) within timeout, else None (also when the process ended first)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = predicate(self.lines)
                if found or self._done:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.5))

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit and collect the child's own resource usage (os.wait4: CPU seconds, peak RSS)."""
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self.rusage = usage
                self.returncode = os.waitstatus_to_exitcode(status)
                self.process.returncode = self.returncode
                break
            if time.monotonic() > deadline:
                self._signal(signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.01)
        self._reader.join(10)
        self._errors.join(10)
        return self.returncode

    def _signal(self, signum: int) -> None:
        """os.kill, not Popen.send_signal: that polls, and a poll would reap the child before os.wait4 can."""
        if self.returncode is None:
            try:
                os.kill(self.process.pid, signum)
            except ProcessLookupError:
                pass

    def interrupt(self, timeout: float = 30) -> int:
        self._signal(signal.SIGINT)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.returncode is None:
            self._signal(signal.SIGKILL)
            self.finish(10)

    def describe(self) -> str:
        tail = '\n'.join(line for _, line in self.lines[-5:])
        return f'exit {self.returncode}; stdout tail:\n{tail}\nstderr:\n{self.stderr[-2000:]}'


# -- git ------------------------------------------------------------------------------------------------

# Bytecode is cached, as after `pip install` (which compiles it), but outside the source tree. An environment
# with PYTHONDONTWRITEBYTECODE would make every start-up compile every module again.
PYCACHE = Path(tempfile.gettempdir()) / f'flux-monitor-bench-pycache-{os.getuid()}'


def git_env(**extra: str) -> dict[str, str]:
    """The environment of every process a benchmark starts: no git, kube or pre-commit settings of ours."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(('GIT_', 'KUBE', 'PRE_COMMIT')) and key != 'PYTHONDONTWRITEBYTECODE'}
    env['PYTHONPYCACHEPREFIX'] = str(PYCACHE)
    env.update({'GIT_AUTHOR_NAME': 'flux-monitor bench', 'GIT_AUTHOR_EMAIL': 'bench@flux-monitor.invalid',
                'GIT_COMMITTER_NAME': 'flux-monitor bench', 'GIT_COMMITTER_EMAIL': 'bench@flux-monitor.invalid',
                'GIT_CONFIG_NOSYSTEM': '1', 'GIT_CONFIG_GLOBAL': os.devnull, 'GIT_TERMINAL_PROMPT': '0',
                'LC_ALL': 'C'})
    env.update(extra)
    return env


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(['git', *args], cwd=cwd, env=dict(env or git_env()), capture_output=True, text=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f'git {" ".join(args)} failed in {cwd}: {result.stderr.strip()}')
    return result.stdout.strip()


write_files = demo_write_files  # the demo's, so the benchmarks write files exactly as it does


@dataclass(frozen=True)
class Commits:
    """A repository with two commits: `old` (what Flux had) and `new` (the pushed commit, HEAD)."""

    root: Path
    old: str
    new: str


def two_commits(root: Path) -> Commits:
    root.mkdir(parents=True)
    git(root, 'init', '-q', '--initial-branch=main')
    write_files(root, {'README.md': 'bench\n'})
    git(root, 'add', '--all')
    git(root, 'commit', '-q', '-m', 'old')
    old = git(root, 'rev-parse', 'HEAD')
    write_files(root, {'README.md': 'bench, changed\n'})
    git(root, 'commit', '-q', '-am', 'new')
    return Commits(root, old, git(root, 'rev-parse', 'HEAD'))


# -- Flux objects written straight into the store ---------------------------------------------------------

def quiet_sandbox(**options: Any) -> Sandbox:
    """A started sandbox with no bootstrap and its simulated controllers stopped: only the benchmark writes
    status, so nothing but the flips it makes ever changes. The Flux controller Deployments are there (as
    `flux install` leaves them) so that flux-monitor's health line is the usual one."""
    from flux_monitor_hook.sandbox import bootstrap

    sandbox = Sandbox(**options)
    sandbox.start()
    sandbox.controllers.stop()
    namespace(sandbox, 'flux-system')
    for name in bootstrap.CONTROLLERS:
        bootstrap.install_controller(sandbox.store, name)
    return sandbox


def namespace(sandbox: Sandbox, name: str) -> None:
    types = sandbox.resource_type('v1', 'Namespace')
    if sandbox.store.try_get(types, None, name) is None:
        sandbox.store.create(types, {'metadata': {'name': name}})


def create(sandbox: Sandbox, obj: Obj, status: Obj | None = None) -> None:
    """Create an object, then write its status through the status subresource as a controller would."""
    resource_type = sandbox.resource_type(obj['apiVersion'], obj['kind'])
    created = sandbox.store.create(resource_type, obj)
    if status is not None:
        set_status(sandbox, created, status)


def set_status(sandbox: Sandbox, obj: Obj, status: Obj) -> None:
    resource_type = sandbox.resource_type(obj['apiVersion'], obj['kind'])
    metadata = obj['metadata']

    def mutate(current: Obj) -> None:
        current['status'] = {'observedGeneration': current['metadata'].get('generation', 1), **status}

    sandbox.store.set_status(resource_type, metadata.get('namespace'), metadata['name'], mutate)


def condition(kind: str, status: str, reason: str, message: str) -> Obj:
    return {'type': kind, 'status': status, 'reason': reason, 'message': message,
            'lastTransitionTime': datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}


def git_repository(namespace: str, name: str, url: str) -> Obj:
    return {'apiVersion': GIT_API, 'kind': 'GitRepository', 'metadata': {'name': name, 'namespace': namespace},
            'spec': {'interval': '1m0s', 'url': url, 'ref': {'branch': 'main'}}}


def source_ready(revision: str) -> Obj:
    return {'artifact': {'revision': revision, 'digest': 'sha256:' + '0' * 64, 'path': 'x', 'url': 'x',
                         'size': 1, 'lastUpdateTime': '2026-01-01T00:00:00Z'},
            'conditions': [condition('Ready', 'True', 'Succeeded', f"stored artifact for revision '{revision}'"),
                           condition('ArtifactInStorage', 'True', 'Succeeded', 'stored artifact')]}


def kustomization(namespace: str, name: str, source: tuple[str, str], **spec: Any) -> Obj:
    return {'apiVersion': KS_API, 'kind': 'Kustomization', 'metadata': {'name': name, 'namespace': namespace},
            'spec': {'interval': '10m', 'path': f'./apps/{name}', 'prune': True,
                     'sourceRef': {'kind': 'GitRepository', 'namespace': source[0], 'name': source[1]}, **spec}}


def inventory(namespace: str, name: str, entries: int) -> Obj:
    kinds = ('apps_Deployment', '_Service', '_ConfigMap', 'networking.k8s.io_Ingress', '_ServiceAccount')
    return {'entries': [{'id': f'{namespace}_{name}-{i}_{kinds[i % len(kinds)]}', 'v': 'v1'}
                        for i in range(entries)]}


def kustomization_pending(old: str, new: str, namespace: str = '', name: str = '', entries: int = 0) -> Obj:
    """Working on `new`, `old` still applied: what kustomize-controller shows while it applies and checks health."""
    status: Obj = {'lastAppliedRevision': old, 'lastAttemptedRevision': new, 'conditions': [
        condition('Reconciling', 'True', 'Progressing', f'Running health checks for revision {new} with a timeout '
                                                         'of 4m30s'),
        condition('Ready', 'Unknown', 'Progressing', 'Reconciliation in progress')]}
    if entries:
        status['inventory'] = inventory(namespace, name, entries)
    return status


def kustomization_ready(revision: str, namespace: str = '', name: str = '', entries: int = 0) -> Obj:
    status: Obj = {'lastAppliedRevision': revision, 'lastAttemptedRevision': revision, 'conditions': [
        condition('Ready', 'True', 'ReconciliationSucceeded', f'Applied revision: {revision}')]}
    if entries:
        status['inventory'] = inventory(namespace, name, entries)
    return status


def kustomization_failed(old: str, new: str) -> Obj:
    """A failure Flux reports without stalling: Ready=False for the attempted revision, Reconciling retries."""
    return {'lastAppliedRevision': old, 'lastAttemptedRevision': new, 'conditions': [
        condition('Reconciling', 'True', 'ProgressingWithRetry', f'Detecting drift for revision {new} with a '
                                                                  'timeout of 4m30s'),
        condition('Ready', 'False', 'ReconciliationFailed',
                  'Deployment/apps/web dry-run failed (Invalid): Deployment.apps "web" is invalid: spec.selector: '
                  'Invalid value: {"matchLabels":{"app":"web-v2"}}: field is immutable')]}


def helm_release(namespace: str, name: str, source: tuple[str, str, str]) -> Obj:
    return {'apiVersion': HR_API, 'kind': 'HelmRelease', 'metadata': {'name': name, 'namespace': namespace},
            'spec': {'interval': '10m', 'chart': {'spec': {
                'chart': f'./charts/{name}', 'reconcileStrategy': 'Revision',
                'sourceRef': {'kind': source[0], 'namespace': source[1], 'name': source[2]}}},
                'values': {'replicaCount': 2}}}


def helm_chart(release_namespace: str, release_name: str, source: tuple[str, str, str]) -> Obj:
    return {'apiVersion': GIT_API, 'kind': 'HelmChart',
            'metadata': {'name': f'{release_namespace}-{release_name}', 'namespace': source[1],
                         'labels': {'helm.toolkit.fluxcd.io/name': release_name,
                                    'helm.toolkit.fluxcd.io/namespace': release_namespace}},
            'spec': {'chart': f'./charts/{release_name}', 'reconcileStrategy': 'Revision', 'interval': '10m',
                     'sourceRef': {'kind': source[0], 'name': source[2]}}}


def helm_chart_ready(source_revision: str, version: str) -> Obj:
    return {'observedSourceArtifactRevision': source_revision, 'observedChartName': 'chart',
            'artifact': {'revision': version, 'digest': 'sha256:' + '1' * 64, 'path': 'x', 'url': 'x', 'size': 1,
                         'lastUpdateTime': '2026-01-01T00:00:00Z'},
            'conditions': [condition('Ready', 'True', 'ChartPackageSucceeded', f'packaged chart with version '
                                                                               f"'{version}'")]}


def helm_release_pending(old_version: str) -> Obj:
    return {'lastAttemptedRevision': old_version, 'history': [{'chartVersion': old_version, 'status': 'deployed',
                                                               'version': 1, 'name': 'r', 'namespace': 'n'}],
            'conditions': [condition('Reconciling', 'True', 'Progressing', "Running 'upgrade' action with timeout "
                                                                           'of 5m0s'),
                           condition('Ready', 'Unknown', 'Progressing', 'Fresh install in progress')]}


def helm_release_ready(version: str) -> Obj:
    return {'lastAttemptedRevision': version, 'lastAttemptedReleaseAction': 'upgrade',
            'history': [{'chartVersion': version, 'status': 'deployed', 'version': 2, 'name': 'r', 'namespace': 'n'}],
            'conditions': [condition('Ready', 'True', 'UpgradeSucceeded', f'Helm upgrade succeeded with chart '
                                                                          f'@{version}'),
                           condition('Released', 'True', 'UpgradeSucceeded', 'Helm upgrade succeeded')]}


# -- flux-monitor ---------------------------------------------------------------------------------------

def product_env(**extra: str) -> dict[str, str]:
    env = git_env()
    env['PYTHONPATH'] = str(REPO)
    env.pop('NO_COLOR', None)
    env.update(extra)
    return env


def wait_command(kubeconfig: Path, commits: Commits, sources: Iterable[str], *extra: str,
                 timeout: str = '10m') -> list[str]:
    """`flux-monitor wait` for the pushed commit of `commits`, following the named sources."""
    args = [sys.executable, '-m', 'flux_monitor_hook', 'wait', '--format', 'json', '--repo-path', str(commits.root),
            '--revision', commits.new, '--branch', 'main', '--kubeconfig', str(kubeconfig), '--scope', 'all',
            '--timeout', timeout]
    for source in sources:
        args += ['--source', source]
    return [*args, *extra]


def records(lines: list[tuple[float, str]]) -> list[tuple[float, Obj]]:
    import json

    found = []
    for stamp, line in lines:
        if line.startswith('{'):
            try:
                found.append((stamp, json.loads(line)))
            except ValueError:
                continue
    return found


def started_events(lines: list[tuple[float, str]]) -> int:
    """How many events of the first picture (previous: null) flux-monitor printed."""
    return sum(1 for _, record in records(lines) if record.get('type') == 'event' and record.get('previous') is None)


def summary(lines: list[tuple[float, str]]) -> tuple[float, Obj] | None:
    for stamp, record in records(lines):
        if record.get('type') == 'summary':
            return stamp, record
    return None


def events_for(lines: list[tuple[float, str]], name: str, state: str) -> list[Obj]:
    return [record for _, record in records(lines) if record.get('type') == 'event' and
            record.get('name') == name and record.get('state') == state]


def wait_json(kubeconfig: Path, commits: Commits, sources: Iterable[str], *extra: str,
              timeout: str = '10m') -> Lines:
    return Lines(wait_command(kubeconfig, commits, sources, *extra, timeout=timeout), env=product_env(),
                 cwd=commits.root)


def kubectl_available() -> bool:
    import shutil

    return shutil.which('kubectl') is not None


class Progress:
    """One line per step on stderr, so a long run shows where it is."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f'[{time.monotonic() - self.started:6.1f}s] {message}', file=sys.stderr, flush=True)

"""A GitOps repository, the bare remote a sandbox follows, a user's clone, and `flux-monitor wait` run as a
real subprocess from that clone.

`World` is what each test in tests/wait starts from: a small fleet repository (infrastructure, then apps
through dependsOn, and a HelmRelease from a chart in the repository) pushed to a bare repository that a
sandbox, started here, bootstraps from. `World.push` commits in the user's clone and runs `git push`, and
`World.wait` runs `python -m flux_monitor_hook wait` in that clone against the sandbox over real HTTP.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from flux_monitor_hook.sandbox import Sandbox
from flux_monitor_hook.sandbox.kubeconfig import kubeconfig_document
from flux_monitor_hook.sandbox.kubeconfig import write_kubeconfig
from tests.sandbox import gitutil

Obj = dict[str, Any]
Files = Mapping[str, str | None]

# Sandbox time runs this much faster than real time: a Kustomization's 1m health-check timeout or retry
# interval is 1.5 s, and its 10m interval (15 s) never fires in a test.
SPEED = 40.0
CLUSTER_PATH = 'clusters/test'
ROOT = Path(__file__).resolve().parents[2]

GIT = 'source.toolkit.fluxcd.io/v1'
KS = 'kustomize.toolkit.fluxcd.io/v1'
HR = 'helm.toolkit.fluxcd.io/v2'


# -- manifests ------------------------------------------------------------------------------------------

def dump(*documents: Obj) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def kustomization(name: str, path: str, *, depends_on: Sequence[str] = (), source: str = 'flux-system',
                  timeout: str = '1m', wait: bool = True, **spec: Any) -> str:
    body: Obj = {'interval': '10m', 'retryInterval': '1m', 'timeout': timeout, 'path': path, 'prune': True,
                 'wait': wait, 'sourceRef': {'kind': 'GitRepository', 'name': source}, **spec}
    if depends_on:
        body['dependsOn'] = [{'name': dependency} for dependency in depends_on]
    return dump({'apiVersion': KS, 'kind': 'Kustomization',
                 'metadata': {'name': name, 'namespace': 'flux-system'}, 'spec': body})


def deployment(name: str = 'web', *, image: str = 'nginx:1.27', app: str | None = None,
               annotations: Mapping[str, str] | None = None, namespace: str = 'demo') -> str:
    labels = {'app': app or name}
    metadata: Obj = {'name': name, 'namespace': namespace}
    if annotations:
        metadata['annotations'] = dict(annotations)
    return dump({'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': metadata,
                 'spec': {'replicas': 1, 'selector': {'matchLabels': labels},
                          'template': {'metadata': {'labels': labels},
                                       'spec': {'containers': [{'name': name, 'image': image}]}}}})


def helm_release(values: Mapping[str, Any] | None = None, **spec: Any) -> str:
    return dump({'apiVersion': HR, 'kind': 'HelmRelease', 'metadata': {'name': 'frontend', 'namespace': 'demo'},
                 'spec': {'interval': '10m', **spec, 'chart': {'spec': {
                     'chart': './charts/frontend', 'reconcileStrategy': 'Revision',
                     'sourceRef': {'kind': 'GitRepository', 'name': 'flux-system', 'namespace': 'flux-system'}}},
                     'values': {'replicaCount': 1, **(values or {})}}})


def git_repository(name: str, url: str, ref: Mapping[str, str], interval: str = '1m') -> str:
    return dump({'apiVersion': GIT, 'kind': 'GitRepository', 'metadata': {'name': name, 'namespace': 'flux-system'},
                 'spec': {'interval': interval, 'url': url, 'ref': dict(ref)}})


def fleet_files(cluster_path: str = CLUSTER_PATH) -> dict[str, str | None]:
    """Infrastructure (a namespace), then apps after it (a Deployment and a HelmRelease of a local chart)."""
    return {
        f'{cluster_path}/infra.yaml': kustomization('infra', './infra'),
        f'{cluster_path}/apps.yaml': kustomization('apps', './apps', depends_on=['infra']),
        'infra/namespace.yaml': dump({'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'demo'}}),
        'apps/web.yaml': deployment(),
        'apps/frontend.yaml': helm_release(),
        'charts/frontend/Chart.yaml': 'apiVersion: v2\nname: frontend\nversion: 1.0.0\nappVersion: "1.0.0"\n',
        'charts/frontend/values.yaml': 'replicaCount: 1\n',
    }


BROKEN_KUSTOMIZE = ('apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n'
                    '  - namespace.yaml\n  - missing.yaml\n')


# -- running flux-monitor ----------------------------------------------------------------------------------

@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def __repr__(self) -> str:  # what a failed assertion shows: everything the command printed
        return f'exit {self.code} after {self.seconds:.1f}s\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}'

    @property
    def records(self) -> list[Obj]:
        """The JSON Lines of --format json, each checked against the schema the README links."""
        records = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        validator = schema_validator()
        for record in records:
            errors = sorted(validator.iter_errors(record), key=lambda error: list(error.path))
            assert not errors, f'{record} does not match {SCHEMA}: {[e.message for e in errors]}'
        return records

    @property
    def summary(self) -> Obj:
        """The summary: exactly one, and the last line; its exit_code is the process's."""
        records = self.records
        summaries = [record for record in records if record.get('type') == 'summary']
        assert len(summaries) == 1 and records[-1] is summaries[0], self
        assert summaries[0]['exit_code'] == self.code, self
        return summaries[0]

    def resource(self, kind: str, name: str, cluster: str | None = None) -> Obj:
        found = [item for item in self.summary['sources'] + self.summary['resources']
                 if item['kind'] == kind and item['name'] == name and cluster in (None, item['cluster'])]
        assert len(found) == 1, f'{kind}/{name} ({cluster}) in {self.summary}'
        return found[0]


SCHEMA = ROOT / 'docs' / 'summary.schema.json'


@functools.lru_cache(maxsize=1)
def schema_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell, without what would leak from ours (colours, git, kubeconfig)."""
    dropped = ('KUBECONFIG', 'NO_COLOR', 'FORCE_COLOR', 'CLICOLOR_FORCE', 'TERM', 'PYTHONWARNINGS')
    env = {key: value for key, value in os.environ.items() if key not in dropped and not key.startswith('GIT_')}
    env.update(gitutil.git_env())
    env['TERM'] = 'xterm-256color'
    env['PYTHONPATH'] = str(ROOT)
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, '-m', 'flux_monitor_hook', 'wait', *args]


def run(args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 60) -> Run:
    started = time.monotonic()
    result = subprocess.run(command(*args), cwd=cwd, env=dict(env), capture_output=True, text=True,
                            timeout=timeout, check=False)
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def interrupt_when(args: Sequence[str], cwd: Path, env: Mapping[str, str], ready: str, timeout: float = 30) -> Run:
    """Start the wait, send SIGINT (Ctrl+C) once a stdout line contains `ready`, and collect the rest."""
    started = time.monotonic()
    process = subprocess.Popen(command(*args), cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1)
    assert process.stdout is not None and process.stderr is not None
    seen: list[str] = []
    try:
        for line in process.stdout:
            seen.append(line)
            if ready in line:
                process.send_signal(signal.SIGINT)
                break
            if time.monotonic() - started > timeout:
                break
        rest, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return Run(process.returncode, ''.join(seen) + rest, stderr, time.monotonic() - started)


def together(*calls: Callable[[], Run]) -> list[Run]:
    """Run several waits at once, for speed: each only reads the cluster (and at most asks Flux to fetch)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def run_in_terminal(args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 60) -> Run:
    """Run with stdout on a pseudo-terminal, as in an interactive shell (stderr stays a pipe)."""
    started = time.monotonic()
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command(*args), cwd=cwd, env=dict(env), stdout=terminal, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    os.close(terminal)
    output = bytearray()
    try:
        while time.monotonic() - started < timeout:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output.extend(chunk)
        stderr = process.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))[1]
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.communicate()
    text = output.decode('utf-8', errors='replace').replace('\r\n', '\n')
    return Run(process.returncode, text, stderr.decode('utf-8', errors='replace'), time.monotonic() - started)


# -- the world -------------------------------------------------------------------------------------------

@dataclass
class World:
    """The bare remote a sandbox follows, the user's clone of it, and the sandbox."""

    root: Path
    bare: Path
    clone: Path
    sandbox: Sandbox
    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.sandbox.kubeconfig_path

    @property
    def head(self) -> str:
        return gitutil.git(self.clone, 'rev-parse', 'HEAD')

    def commit(self, message: str, files: Files) -> str:
        return gitutil.commit(self.clone, message, files)

    def push(self, message: str, files: Files, *refspecs: str) -> str:
        """Commit in the user's clone and `git push` it, as a user would; the new commit's SHA."""
        sha = self.commit(message, files)
        gitutil.git(self.clone, 'push', '--quiet', 'origin', *(refspecs or ('main',)))
        return sha

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(**{'KUBECONFIG': str(self.kubeconfig), 'HOME': str(self.home), **self.extra_env, **extra})

    def wait(self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 60) -> Run:
        return run(args, cwd or self.clone, env if env is not None else self.env(), timeout)

    def wait_in_terminal(self, *args: str, env: Mapping[str, str] | None = None) -> Run:
        return run_in_terminal(args, self.clone, env if env is not None else self.env())

    def interrupt(self, *args: str, ready: str) -> Run:
        return interrupt_when(args, self.clone, self.env(), ready)

    def apply(self, document: str) -> None:
        for obj in yaml.safe_load_all(document):
            self.sandbox.apply(obj)

    def get(self, api_version: str, kind: str, name: str, namespace: str = 'flux-system') -> Obj:
        return self.sandbox.get(api_version, kind, namespace, name)

    def flux_fetches(self, sha: str, name: str = 'flux-system', timeout: float = 20) -> None:
        """Have Flux fetch now (as `flux reconcile source git` does) and wait until it has the commit."""
        resource_type = self.sandbox.resource_type(GIT, 'GitRepository')
        token = datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')

        def annotate(obj: Obj) -> Obj:
            obj['metadata'].setdefault('annotations', {})['reconcile.fluxcd.io/requestedAt'] = token
            return obj

        self.sandbox.store.patch(resource_type, 'flux-system', name, annotate)
        deadline = time.monotonic() + timeout
        while True:
            artifact = (self.get(GIT, 'GitRepository', name).get('status') or {}).get('artifact') or {}
            if str(artifact.get('revision', '')).endswith(sha):
                return
            assert time.monotonic() < deadline, f'Flux did not fetch {sha}: {artifact}'
            time.sleep(0.02)

    def settle(self, timeout: float = 30) -> None:
        assert self.sandbox.wait_idle(timeout), 'the sandbox did not settle'


BARE = '@BARE@'  # in a file's content: the bare repository's path, e.g. as another GitRepository's URL


def make_repositories(root: Path, files: Files, *, tags: Sequence[str] = ()) -> tuple[Path, Path]:
    """The bare remote holding one commit of `files` (and `tags` on it), and a clone tracking its main."""
    bare = root / 'fleet.git'
    seed = gitutil.init_repo(root / 'seed')
    gitutil.commit(seed, 'fleet: infrastructure, apps and a chart',
                   {name: None if content is None else content.replace(BARE, str(bare))
                    for name, content in files.items()})
    for name in tags:
        gitutil.tag(seed, name)
    gitutil.bare_clone(seed, bare)
    clone = root / 'clone'
    gitutil.git(root, 'clone', '--quiet', '--', str(bare), str(clone))
    return bare, clone


@contextlib.contextmanager
def world(root: Path, files: Files | None = None, *, tags: Sequence[str] = (), settle: bool = True,
          **sandbox: Any) -> Iterator[World]:
    """A fleet repository served to a running sandbox; the sandbox has applied its first commit."""
    bare, clone = make_repositories(root, fleet_files() if files is None else files, tags=tags)
    home = root / 'home'
    home.mkdir()
    sandbox.setdefault('speed', SPEED)
    # Flux fetches on its own only every hour: flux-monitor's trigger is what makes it fetch (unless a test
    # says otherwise), so that no wait can start after Flux already acted on the push.
    sandbox.setdefault('git_interval', '1h')
    sandbox.setdefault('repo', bare)
    sandbox.setdefault('cluster_path', CLUSTER_PATH)
    sandbox.setdefault('kubeconfig_path', root / 'kubeconfig')
    with Sandbox(**sandbox) as running:
        made = World(root, bare, clone, running, home)
        if settle:
            made.settle()
        yield made
        assert running.controllers.errors == [], ''.join(running.controllers.errors)


def merged_kubeconfig(path: Path, clusters: Mapping[str, Sandbox], current: str | None = None) -> Path:
    """One kubeconfig with a context per sandbox, named as given (what `kubectl config` merging makes)."""
    document: Obj = {'apiVersion': 'v1', 'kind': 'Config', 'clusters': [], 'users': [], 'contexts': [],
                     'current-context': current or next(iter(clusters)), 'preferences': {}}
    for name, sandbox in clusters.items():
        single = kubeconfig_document(sandbox.url, sandbox.token, sandbox.ca_pem)
        document['clusters'].append({'name': name, 'cluster': single['clusters'][0]['cluster']})
        document['users'].append({'name': name, 'user': single['users'][0]['user']})
        document['contexts'].append({'name': name, 'context': {'cluster': name, 'user': name,
                                                               'namespace': 'flux-system'}})
    write_kubeconfig(path, document)
    return path


def world_factory(tmp_path: Path, stack: contextlib.ExitStack, **defaults: Any) -> Callable[..., World]:
    """make(files, **world arguments): a World per call in its own directory, closed with the stack."""
    count = itertools.count(1)

    def make(files: Files | None = None, **kwargs: Any) -> World:
        root = tmp_path / f'world{next(count)}'
        root.mkdir()
        return stack.enter_context(world(root, files, **{**defaults, **kwargs}))

    return make

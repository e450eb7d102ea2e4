"""A fleet repository served to a sandbox, and small waiting helpers for the controller tests.

`Fleet` is a working clone plus the bare repository the sandbox fetches from; `push` commits and runs a real
`git push`, as a user would. `running` starts a sandbox and, when the test ends, insists that no simulated
controller raised.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any
from typing import TypeVar

import yaml

from flux_monitor_hook.sandbox import Sandbox
from tests.sandbox import gitutil

T = TypeVar('T')
Obj = dict[str, Any]

GIT = 'source.toolkit.fluxcd.io/v1'
KS = 'kustomize.toolkit.fluxcd.io/v1'
HR = 'helm.toolkit.fluxcd.io/v2'
AG = 'source.extensions.fluxcd.io/v1beta1'


@dataclass
class Fleet:
    work: Path
    bare: Path
    branch: str = 'main'

    @classmethod
    def create(cls, root: Path, files: Mapping[str, str | None], branch: str = 'main') -> Fleet:
        work = gitutil.init_repo(root / 'work', branch)
        gitutil.commit(work, 'initial commit', files)
        bare = gitutil.bare_clone(work, root / 'fleet.git')
        gitutil.git(work, 'remote', 'add', 'origin', str(bare))
        return cls(work, bare, branch)

    @classmethod
    def from_dir(cls, source: Path, root: Path, branch: str = 'main') -> Fleet:
        """A copy of a directory (one of ../shared/flux-examples) committed and served from a bare clone."""
        work, _ = gitutil.repo_from_dir(source, root / 'work', branch)
        bare = gitutil.bare_clone(work, root / 'fleet.git')
        gitutil.git(work, 'remote', 'add', 'origin', str(bare))
        return cls(work, bare, branch)

    @property
    def head(self) -> str:
        return gitutil.git(self.work, 'rev-parse', 'HEAD')

    def revision(self, sha: str | None = None) -> str:
        return f'{self.branch}@sha1:{sha or self.head}'

    def push(self, message: str, files: Mapping[str, str | None], *refspecs: str) -> str:
        """Commit the changes and `git push` them to the bare repository; the new commit's SHA."""
        sha = gitutil.commit(self.work, message, files)
        gitutil.git(self.work, 'push', '--quiet', 'origin', *(refspecs or (f'HEAD:refs/heads/{self.branch}',)))
        return sha


def manifests(*documents: Obj) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def configmap(name: str, namespace: str = 'default', **data: str) -> Obj:
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name, 'namespace': namespace},
            'data': dict(data)}


def deployment(name: str, namespace: str = 'default', *, labels: Mapping[str, str] | None = None,
               annotations: Mapping[str, str] | None = None, image: str = 'nginx:1') -> Obj:
    selector = dict(labels or {'app': name})
    metadata: Obj = {'name': name, 'namespace': namespace}
    if annotations:
        metadata['annotations'] = dict(annotations)
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': metadata,
            'spec': {'replicas': 1, 'selector': {'matchLabels': selector},
                     'template': {'metadata': {'labels': selector},
                                  'spec': {'containers': [{'name': name, 'image': image}]}}}}


def kustomization(name: str, path: str, namespace: str = 'flux-system', **spec: Any) -> Obj:
    return {'apiVersion': KS, 'kind': 'Kustomization', 'metadata': {'name': name, 'namespace': namespace},
            'spec': {'interval': '10m', 'path': path, 'prune': True,
                     'sourceRef': {'kind': 'GitRepository', 'name': 'flux-system'}, **spec}}


def git_repository(name: str, url: str | Path, ref: Mapping[str, str] | None = None, namespace: str = 'flux-system',
                   **spec: Any) -> Obj:
    body: Obj = {'interval': '1m', 'url': str(url), **spec}
    if ref is not None:
        body['ref'] = dict(ref)
    return {'apiVersion': GIT, 'kind': 'GitRepository', 'metadata': {'name': name, 'namespace': namespace},
            'spec': body}


# -- reading status ---------------------------------------------------------------------------------------

def condition(obj: Obj | None, condition_type: str = 'Ready') -> Obj | None:
    for found in ((obj or {}).get('status') or {}).get('conditions') or []:
        if found.get('type') == condition_type:
            return found
    return None


def reason(obj: Obj | None, condition_type: str = 'Ready') -> str | None:
    found = condition(obj, condition_type)
    return None if found is None else f'{found["status"]}/{found["reason"]}'


def status(obj: Obj | None) -> Obj:
    return (obj or {}).get('status') or {}


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 10.0,
             describe: Callable[[], object] | None = None) -> T:
    """Poll check until it returns something truthy; fail with what was last seen after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = describe() if describe else value
            raise AssertionError(f'timed out after {timeout}s waiting for {what}; last seen: {seen!r}')
        time.sleep(0.02)


def now_token() -> str:
    """A `reconcile.fluxcd.io/requestedAt` value in the RFC3339Nano form the flux CLI writes."""
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f') + '000Z'


class Cluster:
    """A running sandbox with the shortcuts the controller tests keep needing."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    def get(self, api_version: str, kind: str, name: str, namespace: str = 'flux-system') -> Obj | None:
        try:
            return self.sb.get(api_version, kind, namespace, name)
        except Exception:
            return None

    def ks(self, name: str = 'flux-system', namespace: str = 'flux-system') -> Obj | None:
        return self.get(KS, 'Kustomization', name, namespace)

    def git(self, name: str = 'flux-system', namespace: str = 'flux-system') -> Obj | None:
        return self.get(GIT, 'GitRepository', name, namespace)

    def hr(self, name: str, namespace: str = 'default') -> Obj | None:
        return self.get(HR, 'HelmRelease', name, namespace)

    def request_reconcile(self, api_version: str, kind: str, name: str, namespace: str = 'flux-system') -> str:
        """What `flux reconcile` does: set reconcile.fluxcd.io/requestedAt to a fresh token."""
        token = now_token()
        resource_type = self.sb.resource_type(api_version, kind)

        def annotate(obj: Obj) -> Obj:
            obj['metadata'].setdefault('annotations', {})['reconcile.fluxcd.io/requestedAt'] = token
            return obj

        self.sb.store.patch(resource_type, namespace, name, annotate)
        return token

    def fetch(self, name: str = 'flux-system', namespace: str = 'flux-system') -> str:
        return self.request_reconcile(GIT, 'GitRepository', name, namespace)

    def wait_applied(self, revision: str, name: str = 'flux-system', namespace: str = 'flux-system',
                     timeout: float = 10.0) -> Obj:
        def landed() -> Obj | None:
            obj = self.ks(name, namespace)
            ok = status(obj).get('lastAppliedRevision') == revision and reason(obj) == 'True/ReconciliationSucceeded'
            return obj if ok else None

        return wait_for(landed, f'Kustomization {namespace}/{name} to apply {revision}', timeout,
                        lambda: status(self.ks(name, namespace)))

    def wait_ready_reason(self, fetch: Callable[[], Obj | None], expected: str, what: str,
                          timeout: float = 10.0) -> Obj:
        def check() -> Obj | None:
            obj = fetch()
            return obj if reason(obj) == expected else None

        return wait_for(check, f'{what} Ready {expected}', timeout, lambda: status(fetch()))

    def events(self, kind: str, name: str, namespace: str = 'flux-system') -> list[Obj]:
        found = self.sb.list('v1', 'Event', namespace)
        return [e for e in found if e['involvedObject']['kind'] == kind and e['involvedObject']['name'] == name]


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[Cluster]:
    """A sandbox for the duration of a test; a controller exception fails the test."""
    kwargs.setdefault('speed', 50)
    sandbox = Sandbox(**kwargs)
    with sandbox:
        yield Cluster(sandbox)
    # Stopping joins the controller thread, so a reconcile still running has finished (or failed) by now.
    assert sandbox.controllers.errors == [], ''.join(sandbox.controllers.errors)

"""What every simulated controller shares: the store, sandbox time, the work queue, events and artifacts."""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from flux_monitor_hook.durations import parse_duration
from flux_monitor_hook.sandbox.errors import ApiError
from flux_monitor_hook.sandbox.kinds import ResourceType
from flux_monitor_hook.sandbox.recorder import Recorder
from flux_monitor_hook.sandbox.scheduler import Clock
from flux_monitor_hook.sandbox.scheduler import Scheduler
from flux_monitor_hook.sandbox.store import Store
from flux_monitor_hook.sandbox.store import now_rfc3339

Obj = dict[str, Any]

# The API versions the simulated controllers read and write (the storage versions of Flux 2.7+).
API_VERSIONS = {
    'GitRepository': 'source.toolkit.fluxcd.io/v1',
    'OCIRepository': 'source.toolkit.fluxcd.io/v1',
    'Bucket': 'source.toolkit.fluxcd.io/v1',
    'HelmRepository': 'source.toolkit.fluxcd.io/v1',
    'HelmChart': 'source.toolkit.fluxcd.io/v1',
    'ExternalArtifact': 'source.toolkit.fluxcd.io/v1',
    'ArtifactGenerator': 'source.extensions.fluxcd.io/v1beta1',
    'Kustomization': 'kustomize.toolkit.fluxcd.io/v1',
    'HelmRelease': 'helm.toolkit.fluxcd.io/v2',
    'FluxInstance': 'fluxcd.controlplane.io/v1',
    'Deployment': 'apps/v1',
    'StatefulSet': 'apps/v1',
    'DaemonSet': 'apps/v1',
    'Namespace': 'v1',
    'Secret': 'v1',
    'ConfigMap': 'v1',
}

SOURCE_HOST = 'http://source-controller.flux-system.svc.cluster.local.'
FINALIZER = 'finalizers.fluxcd.io'
MARKER_PREFIX = 'sandbox.flux-monitor.io/'


@dataclass
class Artifact:
    """An artifact in the simulated source-controller storage."""

    revision: str
    digest: str
    directory: Path | None  # None until materialised (git trees are exported on first use)
    repo: str | None = None  # for git artifacts: where to export the commit from
    commit: str | None = None
    origin_revision: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Runtime:
    store: Store
    clock: Clock
    scheduler: Scheduler
    recorder: Recorder
    workdir: Path
    use_kubectl: bool
    remotes: dict[str, str] = field(default_factory=dict)  # URL -> local repository, like git's insteadOf
    artifacts: dict[tuple[str, str, str], Artifact] = field(default_factory=dict)

    def type(self, kind: str) -> ResourceType:
        return self.store.resource_type_for(API_VERSIONS[kind], kind)

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        return self.store.try_get(self.type(kind), namespace, name)

    def list(self, kind: str) -> list[Obj]:
        return self.store.objects(self.type(kind))

    def write_status(self, obj: Obj) -> Obj | None:
        """Store obj's status (as the controller computed it); None when the object went away."""
        metadata = obj['metadata']
        status = obj.get('status') or {}

        def replace(current: Obj) -> None:
            # A copy: the store keeps what it is given, and the caller goes on changing its status dict
            # (a later write would then compare equal to the stored object and be dropped as a no-op).
            current['status'] = copy.deepcopy(status)

        try:
            return self.store.set_status(self.type(obj['kind']), metadata.get('namespace'), metadata['name'],
                                         replace)
        except ApiError:
            return None

    def ensure_finalizer(self, obj: Obj) -> Obj:
        if FINALIZER in (obj['metadata'].get('finalizers') or []):
            return obj

        def add(current: Obj) -> Obj:
            current['metadata'].setdefault('finalizers', []).append(FINALIZER)
            return current

        return self.store.patch(self.type(obj['kind']), obj['metadata'].get('namespace'), obj['metadata']['name'],
                                add)

    def remove_finalizer(self, obj: Obj) -> None:
        def remove(current: Obj) -> Obj:
            finalizers = [f for f in current['metadata'].get('finalizers') or [] if f != FINALIZER]
            current['metadata']['finalizers'] = finalizers
            return current

        try:
            self.store.patch(self.type(obj['kind']), obj['metadata'].get('namespace'), obj['metadata']['name'],
                             remove)
        except ApiError:
            pass

    def requeue(self, kind: str, namespace: str, name: str, seconds: float, *, periodic: bool = True) -> None:
        self.scheduler.enqueue((kind, namespace, name), self.clock.scale(seconds), periodic=periodic)

    def event(self, obj: Obj, event_type: str, reason: str, message: str, component: str,
              annotations: dict[str, str] | None = None) -> None:
        self.recorder.event(obj, event_type, reason, message, component=component, annotations=annotations)


def interval_of(obj: Obj, key: str = 'interval', default: str = '10m') -> float:
    try:
        return parse_duration((obj.get('spec') or {}).get(key) or default)
    except ValueError:
        return parse_duration(default)


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): 5m0s, 1h0m0s, 1.5s, 350ms, as Flux messages print durations."""
    if seconds < 1:
        milliseconds = seconds * 1000
        return f'{milliseconds:.0f}ms' if milliseconds >= 1 else '0s'
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f'{secs:.3f}'.rstrip('0').rstrip('.') + 's'
    if hours >= 1:
        return f'{int(hours)}h{int(minutes)}m{secs_text}'
    if minutes >= 1:
        return f'{int(minutes)}m{secs_text}'
    return secs_text


def object_id(obj: Obj) -> str:
    """Kind/namespace/name as Flux (ssa) prints an object, Kind/name when cluster-scoped."""
    metadata = obj.get('metadata') or {}
    if metadata.get('namespace'):
        return f'{obj.get("kind")}/{metadata["namespace"]}/{metadata.get("name")}'
    return f'{obj.get("kind")}/{metadata.get("name")}'


def sha256_digest(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def artifact_status(kind: str, namespace: str, name: str, artifact: Artifact, filename: str) -> Obj:
    path = f'{kind.lower()}/{namespace}/{name}/{filename}'
    status: Obj = {
        'digest': artifact.digest,
        'lastUpdateTime': now_rfc3339(),
        'path': path,
        'revision': artifact.revision,
        'size': 1024,
        'url': f'{SOURCE_HOST}/{path}',
    }
    if artifact.metadata:
        status['metadata'] = dict(artifact.metadata)
    return status


def marker(obj: Obj, name: str) -> str | None:
    annotations = (obj.get('metadata') or {}).get('annotations') or {}
    value = annotations.get(MARKER_PREFIX + name)
    return None if value is None else str(value)


def requested_at(obj: Obj) -> str | None:
    annotations = (obj.get('metadata') or {}).get('annotations') or {}
    value = annotations.get('reconcile.fluxcd.io/requestedAt')
    return None if value is None else str(value)

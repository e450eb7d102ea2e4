"""kstatus-style readiness of applied objects, as kustomize-controller's health checks assess them."""
from __future__ import annotations

from typing import Any

from flux_monitor_hook.sandbox import conditions
from flux_monitor_hook.sandbox.runtime import API_VERSIONS
from flux_monitor_hook.sandbox.runtime import Runtime

Obj = dict[str, Any]

_WORKLOADS = ('Deployment', 'StatefulSet', 'DaemonSet')
_FLUX = ('Kustomization', 'HelmRelease', 'GitRepository', 'OCIRepository', 'HelmRepository', 'HelmChart',
         'Bucket', 'ExternalArtifact')


def has_readiness(kind: str) -> bool:
    return kind in _WORKLOADS or kind in _FLUX


def status_of(rt: Runtime, kind: str, namespace: str, name: str) -> str:
    """Current, InProgress, Failed or NotFound (the kstatus words that appear in Flux's messages)."""
    api_version = API_VERSIONS.get(kind)
    resource_type = rt.store.registry.by_kind(api_version, kind) if api_version else None
    if resource_type is None:
        resource_type = next((t for t in rt.store.registry.all() if t.kind == kind), None)
    if resource_type is None:
        return 'NotFound'
    obj = rt.store.try_get(resource_type, namespace or None, name)
    if obj is None:
        return 'NotFound'
    return compute_status(obj)


def compute_status(obj: Obj) -> str:
    kind = obj.get('kind')
    status = obj.get('status') or {}
    generation = obj['metadata'].get('generation')
    if kind in _WORKLOADS:
        if status.get('observedGeneration') != generation:
            return 'InProgress'
        if kind == 'DaemonSet':
            desired = status.get('desiredNumberScheduled', 0)
            ready = status.get('numberAvailable', 0) >= desired and status.get('updatedNumberScheduled', 0) >= desired
            return 'Current' if ready and desired > 0 else 'InProgress'
        replicas = (obj.get('spec') or {}).get('replicas', 1)
        progressing = conditions.find(obj, 'Progressing')
        if progressing and progressing.get('reason') == 'ProgressDeadlineExceeded':
            return 'Failed'
        ready_field = 'availableReplicas' if kind == 'Deployment' else 'readyReplicas'
        if status.get('updatedReplicas', 0) >= replicas and status.get(ready_field, 0) >= replicas:
            return 'Current'
        return 'InProgress'
    if kind in _FLUX:
        if conditions.is_true(obj, 'Stalled'):
            return 'Failed'
        if status.get('observedGeneration') != generation or not conditions.is_true(obj, 'Ready'):
            return 'InProgress'
        return 'Current'
    return 'Current'

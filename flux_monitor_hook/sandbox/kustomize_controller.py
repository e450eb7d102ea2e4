"""Simulated kustomize-controller: build at the source revision, apply, prune, health-check, report.

Follows kustomize-controller v1 (../shared/flux-status-reference.md §2, §5): the order of the status
messages, which revision fields move when, the dependency gate, and the wording of failures. Health checks
do not block the single controller thread: a reconcile that reaches them records what it waits for and is
woken again when a watched workload changes or the timeout passes.
"""
from __future__ import annotations

import base64
import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flux_monitor_hook.sandbox import build
from flux_monitor_hook.sandbox import conditions
from flux_monitor_hook.sandbox import gitsource
from flux_monitor_hook.sandbox import health
from flux_monitor_hook.sandbox.errors import ApiError
from flux_monitor_hook.sandbox.runtime import Artifact
from flux_monitor_hook.sandbox.runtime import Runtime
from flux_monitor_hook.sandbox.runtime import go_duration
from flux_monitor_hook.sandbox.runtime import interval_of
from flux_monitor_hook.sandbox.runtime import object_id
from flux_monitor_hook.sandbox.runtime import requested_at
from flux_monitor_hook.sandbox.runtime import sha256_digest
from flux_monitor_hook.sandbox.store import now_rfc3339

Obj = dict[str, Any]
COMPONENT = 'kustomize-controller'
NAME_LABEL = 'kustomize.toolkit.fluxcd.io/name'
NAMESPACE_LABEL = 'kustomize.toolkit.fluxcd.io/namespace'
REQUEUE_DEPENDENCY = 30.0  # kustomize-controller's --requeue-dependency default
SOURCE_KINDS = ('GitRepository', 'OCIRepository', 'Bucket', 'ExternalArtifact')
_SOURCE_PLURALS = {'GitRepository': 'gitrepositories', 'OCIRepository': 'ocirepositories', 'Bucket': 'buckets',
                   'ExternalArtifact': 'externalartifacts'}

# Server-side apply stages: definitions and namespaces before what lives in them (pkg ssa ApplyAllStaged).
_STAGE_FIRST = ('CustomResourceDefinition', 'Namespace')
_STAGE_SECOND = ('ClusterRole', 'ClusterRoleBinding', 'ServiceAccount', 'Role', 'RoleBinding')


@dataclass
class PendingHealth:
    revision: str
    generation: int
    started: float
    deadline: float
    objects: list[tuple[str, str, str]]  # kind, namespace, name
    changed: bool  # whether the apply changed anything, for the events at the end
    inventory: list[Obj]
    digest: str
    origin_revision: str | None


class ReconcileFailure(Exception):
    def __init__(self, reason: str, message: str, *, attempted: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.attempted = attempted  # whether lastAttemptedRevision moved before the failure


class KustomizeController:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.pending: dict[tuple[str, str], PendingHealth] = {}

    # -- entry point -----------------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str) -> None:
        rt = self.rt
        obj = rt.get('Kustomization', namespace, name)
        if obj is None:
            self.pending.pop((namespace, name), None)
            return
        if obj['metadata'].get('deletionTimestamp'):
            self._finalize(obj)
            return
        spec = obj.get('spec') or {}
        if spec.get('suspend'):
            return
        obj = rt.ensure_finalizer(obj)
        pending = self.pending.get((namespace, name))
        source = self._source(obj)
        revision = ((source or {}).get('status') or {}).get('artifact', {}).get('revision')
        if pending and pending.revision == revision and pending.generation == obj['metadata'].get('generation'):
            self._check_health(obj, pending)
            return
        self.pending.pop((namespace, name), None)
        self._reconcile(obj, source)

    def health_changed(self) -> None:
        """A workload changed: every Kustomization waiting on health checks takes another look."""
        for namespace, name in list(self.pending):
            self.rt.requeue('Kustomization', namespace, name, 0, periodic=False)

    # -- the reconcile ---------------------------------------------------------------------------------

    def _source(self, obj: Obj) -> Obj | None:
        source_ref = (obj.get('spec') or {}).get('sourceRef') or {}
        kind = source_ref.get('kind', '')
        if kind not in SOURCE_KINDS:
            return None
        namespace = source_ref.get('namespace') or obj['metadata']['namespace']
        return self.rt.get(kind, namespace, source_ref.get('name', ''))

    def _reconcile(self, obj: Obj, source: Obj | None) -> None:
        rt = self.rt
        started = time.monotonic()
        spec = obj.get('spec') or {}
        metadata = obj['metadata']
        source_ref = spec.get('sourceRef') or {}
        timeout = _timeout(obj)
        if source is None:
            # Ready carries the API server's NotFound; "Source '...' not found" only goes to the log, no event.
            kind, name = source_ref.get('kind', ''), source_ref.get('name', '')
            message = f'{_SOURCE_PLURALS[kind]}.source.toolkit.fluxcd.io "{name}" not found' \
                if kind in _SOURCE_PLURALS else f"source `{name}` kind '{kind}' not supported"
            self._gate_failure(obj, 'ArtifactFailed', message, event=False)
            return
        artifact_status = (source.get('status') or {}).get('artifact')
        artifact = rt.artifacts.get((source['kind'], source['metadata']['namespace'], source['metadata']['name']))
        if not artifact_status or artifact is None:
            self._gate_failure(obj, 'ArtifactFailed', 'Source artifact not found, retrying in '
                               f'{go_duration(REQUEUE_DEPENDENCY)}', event=False)
            return
        revision = artifact_status['revision']
        origin_revision = (artifact_status.get('metadata') or {}).get('org.opencontainers.image.revision')
        try:
            self._check_dependencies(obj, source)
        except ReconcileFailure as failure:
            self._gate_failure(obj, failure.reason, failure.message, requeue=REQUEUE_DEPENDENCY,
                               info=f'Dependencies do not meet ready condition, retrying in '
                                    f'{go_duration(REQUEUE_DEPENDENCY)}', revision=revision)
            return

        self._progress(obj, f'Fetching manifests for revision {revision} with a timeout of {go_duration(timeout)}')
        try:
            root = self._materialise(artifact)
            try:
                build.resolve_path(root, str(spec.get('path') or ''))
            except build.PathNotFoundError as error:
                raise ReconcileFailure('ArtifactFailed', error.message, attempted=False) from error
            obj['status']['lastAttemptedRevision'] = revision
            self._progress(obj, f'Building manifests for revision {revision} with a timeout of {go_duration(timeout)}')
            manifests = self._build(obj, root)
            self._progress(obj, f'Detecting drift for revision {revision} with a timeout of {go_duration(timeout)}')
            inventory, change_set = self._apply(obj, manifests)
            self._prune(obj, inventory)
        except ReconcileFailure as failure:
            self._fail(obj, failure, revision, origin_revision)
            return
        digest = sha256_digest(json.dumps(manifests, sort_keys=True, default=str))
        obj['status']['inventory'] = {'entries': inventory}
        if change_set:
            rt.event(obj, 'Normal', 'Progressing', '\n'.join(change_set), COMPONENT,
                     _annotations(revision, origin_revision))
        health_objects = self._health_objects(obj, inventory)
        pending = PendingHealth(revision=revision, generation=metadata.get('generation', 1), started=started,
                                deadline=time.monotonic() + rt.clock.scale(timeout), objects=health_objects,
                                changed=bool(change_set), inventory=inventory, digest=digest,
                                origin_revision=origin_revision)
        if health_objects or spec.get('wait') or spec.get('healthChecks'):
            self._progress(obj, f'Running health checks for revision {revision} with a timeout of '
                                f'{go_duration(timeout)}')
            self.pending[(metadata['namespace'], metadata['name'])] = pending
            self._check_health(obj, pending)
            return
        self._succeed(obj, pending)

    def _progress(self, obj: Obj, message: str) -> None:
        conditions.set_condition(obj, 'Reconciling', 'True', 'Progressing', message)
        conditions.set_condition(obj, 'Ready', 'Unknown', 'Progressing', 'Reconciliation in progress')
        written = self.rt.write_status(obj)
        if written is not None:
            obj['metadata'] = written['metadata']

    def _gate_failure(self, obj: Obj, reason: str, message: str, *, requeue: float | None = None,
                      info: str | None = None, revision: str | None = None, event: bool = True) -> None:
        """Failures before the build: neither revision field moves and Reconciling is not set."""
        conditions.set_condition(obj, 'Ready', 'False', reason, message)
        _handled(obj)
        self.rt.write_status(obj)
        if info:
            self.rt.event(obj, 'Normal', reason, info, COMPONENT, _annotations(revision, None))
        elif event:
            self.rt.event(obj, 'Warning', reason, message, COMPONENT, _annotations(revision, None))
        metadata = obj['metadata']
        retry = requeue if requeue is not None else interval_of(obj, 'retryInterval', (obj.get('spec') or {}).get(
            'interval') or '10m')
        # A dependency wait ends as soon as the dependency is ready, so it keeps the sandbox busy (wait_idle);
        # retries after failures are periodic, or a broken object would keep it busy for ever.
        self.rt.requeue('Kustomization', metadata['namespace'], metadata['name'], retry,
                        periodic=requeue is None)

    def _check_dependencies(self, obj: Obj, source: Obj) -> None:
        metadata = obj['metadata']
        for dependency in (obj.get('spec') or {}).get('dependsOn') or []:
            namespace = dependency.get('namespace') or metadata['namespace']
            name = dependency.get('name', '')
            dependency_id = f'{namespace}/{name}'
            found = self.rt.get('Kustomization', namespace, name)
            if found is None:
                raise ReconcileFailure('DependencyNotReady', f"dependency '{dependency_id}' not found: "
                                       f'kustomizations.kustomize.toolkit.fluxcd.io "{name}" not found')
            status = found.get('status') or {}
            if status.get('observedGeneration') != found['metadata'].get('generation') or \
                    not conditions.is_true(found, 'Ready'):
                raise ReconcileFailure('DependencyNotReady', f"dependency '{dependency_id}' is not ready")
            same_source = (found.get('spec') or {}).get('sourceRef', {}).get('name') == \
                (obj.get('spec') or {}).get('sourceRef', {}).get('name') and \
                (found.get('spec') or {}).get('sourceRef', {}).get('kind') == source['kind']
            artifact_revision = (source.get('status') or {}).get('artifact', {}).get('revision')
            if same_source and status.get('lastAppliedRevision') != artifact_revision:
                raise ReconcileFailure('DependencyNotReady', f"dependency '{dependency_id}' revision is not up to date")

    def _materialise(self, artifact: Artifact) -> Path:
        if artifact.directory is not None:
            return artifact.directory
        if artifact.repo and artifact.commit:
            return gitsource.export_tree(artifact.repo, artifact.commit, self.rt.workdir / 'git')
        # An assumed artifact with no content (an OCI artifact no registry serves here).
        empty = self.rt.workdir / 'empty'
        empty.mkdir(parents=True, exist_ok=True)
        return empty

    def _build(self, obj: Obj, root: Path) -> list[Obj]:
        try:
            manifests = build.build_manifests(root, obj.get('spec') or {}, use_kubectl=self.rt.use_kubectl)
        except build.PathNotFoundError as error:
            raise ReconcileFailure('ArtifactFailed', error.message, attempted=False) from error
        except build.BuildError as error:
            raise ReconcileFailure('BuildFailed', error.message) from error
        result = []
        for manifest in manifests:
            manifest = copy.deepcopy(manifest)
            labels = manifest.setdefault('metadata', {}).setdefault('labels', {})
            labels[NAME_LABEL] = obj['metadata']['name']
            labels[NAMESPACE_LABEL] = obj['metadata']['namespace']
            result.append(manifest)
        return result

    def _apply(self, obj: Obj, manifests: list[Obj]) -> tuple[list[Obj], list[str]]:
        store = self.rt.store

        def stage(manifest: Obj) -> int:
            kind = manifest['kind']
            return 0 if kind in _STAGE_FIRST else 1 if kind in _STAGE_SECOND else 2

        ordered = sorted(manifests, key=stage)
        planned = []
        for manifest in ordered:
            object_name = object_id(manifest)
            try:
                resource_type = store.resource_type_for(str(manifest.get('apiVersion', '')), manifest['kind'])
            except ApiError:
                raise ReconcileFailure('ReconciliationFailed', f'{object_name} dry-run failed: no matches for kind '
                                       f'"{manifest["kind"]}" in version "{manifest.get("apiVersion")}"') from None
            metadata = manifest['metadata']
            if resource_type.namespaced and not metadata.get('namespace'):
                raise ReconcileFailure('ReconciliationFailed', f'{object_name} namespace not specified: the server '
                                       'could not find the requested resource')
            if not resource_type.namespaced:
                metadata.pop('namespace', None)
            planned.append((resource_type, _normalise(manifest)))
        # Dry-run every object before changing any, as server-side apply does.
        namespaces = {m['metadata']['name'] for rt_, m in planned if m['kind'] == 'Namespace'}
        for resource_type, manifest in planned:
            namespace = manifest['metadata'].get('namespace')
            if namespace and namespace not in namespaces and \
                    self.rt.get('Namespace', None, namespace) is None:
                raise ReconcileFailure('ReconciliationFailed', f'{object_id(manifest)} namespace not specified: '
                                       f'namespaces "{namespace}" not found')
            current = store.try_get(resource_type, namespace, manifest['metadata']['name'])
            if current is not None:
                problem = immutable_field_error(current, manifest)
                if problem and not _force(obj, manifest):
                    raise ReconcileFailure('ReconciliationFailed', f'{object_id(manifest)} dry-run failed (Invalid): '
                                           f'{problem}')
                if problem:
                    store.delete(resource_type, namespace, manifest['metadata']['name'])
        inventory = []
        change_set = []
        for resource_type, manifest in planned:
            try:
                _, action = store.apply(resource_type, manifest)
            except ApiError as error:
                raise ReconcileFailure('ReconciliationFailed', f'{object_id(manifest)} apply failed '
                                       f'({error.reason}): {error.message}') from error
            if action != 'unchanged':
                change_set.append(f'{object_id(manifest)} {action}')
            inventory.append({'id': _inventory_id(resource_type.group, manifest), 'v': resource_type.version})
        return sorted(inventory, key=lambda entry: entry['id']), change_set

    def _prune(self, obj: Obj, inventory: list[Obj]) -> None:
        if not (obj.get('spec') or {}).get('prune'):
            return
        keep = {entry['id'] for entry in inventory}
        deleted = []
        for entry in ((obj.get('status') or {}).get('inventory') or {}).get('entries') or []:
            if entry['id'] in keep:
                continue
            namespace, name, group, kind = _parse_inventory_id(entry['id'])
            api_version = f'{group}/{entry["v"]}' if group else entry['v']
            resource_type = self.rt.store.registry.by_kind(api_version, kind)
            if resource_type is None:
                continue
            current = self.rt.store.try_get(resource_type, namespace or None, name)
            if current is None or (current['metadata'].get('annotations') or {}).get(
                    'kustomize.toolkit.fluxcd.io/prune') == 'disabled':
                continue
            try:
                self.rt.store.delete(resource_type, namespace or None, name)
                deleted.append(f'{kind}/{namespace + "/" if namespace else ""}{name} deleted')
            except ApiError as error:
                raise ReconcileFailure('PruneFailed', f'{kind}/{name} prune failed: {error.message}') from error
        if deleted:
            self.rt.event(obj, 'Normal', 'Progressing', '\n'.join(deleted), COMPONENT)

    def _health_objects(self, obj: Obj, inventory: list[Obj]) -> list[tuple[str, str, str]]:
        spec = obj.get('spec') or {}
        found = []
        if spec.get('wait'):
            for entry in inventory:
                namespace, name, _, kind = _parse_inventory_id(entry['id'])
                if health.has_readiness(kind):
                    found.append((kind, namespace, name))
        for check in spec.get('healthChecks') or []:
            found.append((check.get('kind', ''), check.get('namespace') or obj['metadata']['namespace'],
                          check.get('name', '')))
        return found

    def _check_health(self, obj: Obj, pending: PendingHealth) -> None:
        rt = self.rt
        metadata = obj['metadata']
        not_ready = []
        for kind, namespace, name in pending.objects:
            state = health.status_of(rt, kind, namespace, name)
            if state != 'Current':
                not_ready.append(f"{kind}/{namespace + '/' if namespace else ''}{name} status: '{state}'")
        if not not_ready:
            self.pending.pop((metadata['namespace'], metadata['name']), None)
            obj['status']['inventory'] = {'entries': pending.inventory}
            self._succeed(obj, pending, health_checked=True)
            return
        now = time.monotonic()
        stalled = [entry for entry in not_ready if entry.endswith("status: 'Failed'")]
        if stalled:
            # pkg/ssa's wait fails fast as soon as an object has failed (kstatus Failed), as kc runs it.
            self.pending.pop((metadata['namespace'], metadata['name']), None)
            elapsed = (now - pending.started) * rt.clock.speed
            message = f"health check failed after {go_duration(elapsed)}: failed early due to stalled resources: " \
                      f"[{', '.join(stalled)}]"
            conditions.set_condition(obj, 'Healthy', 'False', 'HealthCheckFailed', message)
            obj['status']['inventory'] = {'entries': pending.inventory}
            self._fail(obj, ReconcileFailure('HealthCheckFailed', message), pending.revision, pending.origin_revision)
            return
        if now < pending.deadline:
            # Woken by workload changes; this is only the backstop for the timeout.
            rt.scheduler.enqueue(('Kustomization', metadata['namespace'], metadata['name']), pending.deadline - now)
            return
        self.pending.pop((metadata['namespace'], metadata['name']), None)
        elapsed = (now - pending.started) * rt.clock.speed
        message = f"health check failed after {go_duration(elapsed)}: timeout waiting for: [{', '.join(not_ready)}]"
        conditions.set_condition(obj, 'Healthy', 'False', 'HealthCheckFailed', message)
        obj['status']['inventory'] = {'entries': pending.inventory}
        self._fail(obj, ReconcileFailure('HealthCheckFailed', message), pending.revision, pending.origin_revision)

    def _succeed(self, obj: Obj, pending: PendingHealth, *, health_checked: bool = False) -> None:
        rt = self.rt
        metadata = obj['metadata']
        status = obj['status']
        elapsed = (time.monotonic() - pending.started) * rt.clock.speed
        status['lastAppliedRevision'] = pending.revision
        status['lastAttemptedRevision'] = pending.revision
        if pending.origin_revision:
            status['lastAppliedOriginRevision'] = pending.origin_revision
        else:
            status.pop('lastAppliedOriginRevision', None)
        status['observedGeneration'] = metadata.get('generation', 1)
        _record_history(status, pending, 'ReconciliationSucceeded', elapsed)
        conditions.delete(obj, 'Reconciling')
        conditions.delete(obj, 'Stalled')
        if health_checked:
            conditions.set_condition(obj, 'Healthy', 'True', 'Succeeded',
                                     f'Health check passed in {go_duration(elapsed)}')
        conditions.set_condition(obj, 'Ready', 'True', 'ReconciliationSucceeded',
                                 f'Applied revision: {pending.revision}')
        _handled(obj)
        rt.write_status(obj)
        interval = interval_of(obj)
        rt.event(obj, 'Normal', 'ReconciliationSucceeded', f'Reconciliation finished in {go_duration(elapsed)}, next '
                 f'run in {go_duration(interval)}', COMPONENT, _annotations(pending.revision, pending.origin_revision))
        rt.requeue('Kustomization', metadata['namespace'], metadata['name'], interval)

    def _fail(self, obj: Obj, failure: ReconcileFailure, revision: str, origin_revision: str | None) -> None:
        rt = self.rt
        metadata = obj['metadata']
        if failure.attempted:
            obj['status']['lastAttemptedRevision'] = revision
            conditions.set_condition(obj, 'Reconciling', 'True', 'ProgressingWithRetry',
                                     _reconciling_message(obj) or f'Fetching manifests for revision {revision}')
        else:
            conditions.delete(obj, 'Reconciling')
        conditions.set_condition(obj, 'Ready', 'False', failure.reason, failure.message)
        _handled(obj)
        rt.write_status(obj)
        rt.event(obj, 'Warning', failure.reason, failure.message, COMPONENT, _annotations(revision, origin_revision))
        retry = interval_of(obj, 'retryInterval', (obj.get('spec') or {}).get('interval') or '10m')
        rt.requeue('Kustomization', metadata['namespace'], metadata['name'], retry)

    def _finalize(self, obj: Obj) -> None:
        metadata = obj['metadata']
        self.pending.pop((metadata['namespace'], metadata['name']), None)
        if (obj.get('spec') or {}).get('prune') and not (obj.get('spec') or {}).get('suspend'):
            for entry in ((obj.get('status') or {}).get('inventory') or {}).get('entries') or []:
                namespace, name, group, kind = _parse_inventory_id(entry['id'])
                api_version = f'{group}/{entry["v"]}' if group else entry['v']
                resource_type = self.rt.store.registry.by_kind(api_version, kind)
                if resource_type is not None and self.rt.store.try_get(resource_type, namespace or None, name):
                    try:
                        self.rt.store.delete(resource_type, namespace or None, name)
                    except ApiError:
                        pass
        self.rt.remove_finalizer(obj)


# -- helpers --------------------------------------------------------------------------------------------

def _timeout(obj: Obj) -> float:
    """kustomize-controller's GetTimeout: spec.timeout, else interval - 30s; never under 30s."""
    spec = obj.get('spec') or {}
    duration = interval_of(obj) - 30
    if spec.get('timeout'):
        duration = interval_of(obj, 'timeout')
    return max(duration, 30.0)


def _handled(obj: Obj) -> None:
    requested = requested_at(obj)
    if requested is not None:
        obj['status']['lastHandledReconcileAt'] = requested


def _reconciling_message(obj: Obj) -> str:
    condition = conditions.find(obj, 'Reconciling')
    return str(condition.get('message', '')) if condition else ''


def _annotations(revision: str | None, origin_revision: str | None) -> dict[str, str]:
    annotations = {}
    if revision:
        annotations['kustomize.toolkit.fluxcd.io/revision'] = revision
    if origin_revision:
        annotations['kustomize.toolkit.fluxcd.io/originRevision'] = origin_revision
    return annotations


def _record_history(status: Obj, pending: PendingHealth, outcome: str, elapsed: float) -> None:
    history: list[Obj] = status.setdefault('history', [])
    now = now_rfc3339()
    metadata = {'revision': pending.revision}
    if pending.origin_revision:
        metadata['originRevision'] = pending.origin_revision
    for entry in history:
        if entry['digest'] == pending.digest:
            entry.update(lastReconciled=now, lastReconciledDuration=go_duration(elapsed), lastReconciledStatus=outcome,
                         totalReconciliations=entry['totalReconciliations'] + 1, metadata=metadata)
            history.remove(entry)
            history.insert(0, entry)
            break
    else:
        history.insert(0, {'digest': pending.digest, 'firstReconciled': now, 'lastReconciled': now,
                           'lastReconciledDuration': go_duration(elapsed), 'lastReconciledStatus': outcome,
                           'totalReconciliations': 1, 'metadata': metadata})
    del history[5:]


def _inventory_id(group: str, manifest: Obj) -> str:
    metadata = manifest['metadata']
    return f"{metadata.get('namespace') or ''}_{metadata['name']}_{group}_{manifest['kind']}"


def _parse_inventory_id(entry_id: str) -> tuple[str, str, str, str]:
    """`<ns>_<name>_<group>_<kind>`; names cannot hold underscores, so splitting from both ends is safe."""
    namespace, rest = entry_id.split('_', 1)
    rest, kind = rest.rsplit('_', 1)
    name, group = rest.rsplit('_', 1)
    return namespace, name, group, kind


def _normalise(manifest: Obj) -> Obj:
    """What the API server would store: Secret stringData folded into base64 data."""
    if manifest.get('kind') == 'Secret' and manifest.get('stringData'):
        data = dict(manifest.get('data') or {})
        for key, value in manifest.pop('stringData').items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        manifest['data'] = data
    return manifest


def _force(obj: Obj, manifest: Obj) -> bool:
    annotations = manifest['metadata'].get('annotations') or {}
    forced_here = annotations.get('kustomize.toolkit.fluxcd.io/force') == 'enabled'
    return bool((obj.get('spec') or {}).get('force')) or forced_here


def immutable_field_error(current: Obj, desired: Obj) -> str | None:
    """The API server's message when desired changes a field that cannot change, else None."""
    kind = desired['kind']
    name = desired['metadata']['name']
    current_spec = current.get('spec') or {}
    desired_spec = desired.get('spec') or {}
    if kind in ('Deployment', 'StatefulSet', 'DaemonSet') and \
            current_spec.get('selector') != desired_spec.get('selector'):
        return (f'{kind}.apps "{name}" is invalid: spec.selector: Invalid value: '
                f'{_go_label_selector(desired_spec.get("selector") or {})}: field is immutable')
    if kind == 'Service' and desired_spec.get('clusterIP') and current_spec.get('clusterIP') and \
            desired_spec['clusterIP'] != current_spec['clusterIP']:
        return (f'Service "{name}" is invalid: spec.clusterIPs[0]: Invalid value: '
                f'[]string{{"{desired_spec["clusterIP"]}"}}: may not change once set')
    if kind == 'Job' and current_spec.get('template') != desired_spec.get('template'):
        return (f'Job.batch "{name}" is invalid: spec.template: Invalid value: core.PodTemplateSpec{{...}}: '
                'field is immutable')
    if kind in ('Secret', 'ConfigMap') and current.get('immutable') and (
            current.get('data') != desired.get('data') or current.get('binaryData') != desired.get('binaryData')):
        return f'{kind} "{name}" is invalid: data: Forbidden: field is immutable when `immutable` is set'
    return None


def _go_label_selector(selector: Obj) -> str:
    labels = ', '.join(f'"{k}":"{v}"' for k, v in sorted((selector.get('matchLabels') or {}).items()))
    return (f'v1.LabelSelector{{MatchLabels:map[string]string{{{labels}}}, '
            'MatchExpressions:[]v1.LabelSelectorRequirement(nil)}')

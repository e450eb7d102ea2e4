"""Wires the simulated controllers to the store: which change wakes which reconcile, as the real watches do."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from flux_monitor_hook.sandbox import artifact_generator
from flux_monitor_hook.sandbox import source_controller
from flux_monitor_hook.sandbox.helm_controller import HelmController
from flux_monitor_hook.sandbox.kustomize_controller import SOURCE_KINDS
from flux_monitor_hook.sandbox.kustomize_controller import KustomizeController
from flux_monitor_hook.sandbox.recorder import Recorder
from flux_monitor_hook.sandbox.runtime import Runtime
from flux_monitor_hook.sandbox.scheduler import Clock
from flux_monitor_hook.sandbox.scheduler import Key
from flux_monitor_hook.sandbox.scheduler import Scheduler
from flux_monitor_hook.sandbox.store import Change
from flux_monitor_hook.sandbox.store import Store
from flux_monitor_hook.sandbox.workloads import RolloutController

Obj = dict[str, Any]
_WORKLOADS = ('Deployment', 'StatefulSet', 'DaemonSet')
_FLUX_GROUPS = ('source.toolkit.fluxcd.io', 'source.extensions.fluxcd.io', 'kustomize.toolkit.fluxcd.io',
                'helm.toolkit.fluxcd.io')


def _revision(obj: Obj | None) -> str | None:
    if not obj:
        return None
    return ((obj.get('status') or {}).get('artifact') or {}).get('revision')


def _ready(obj: Obj | None) -> bool:
    for condition in ((obj or {}).get('status') or {}).get('conditions') or []:
        if condition.get('type') == 'Ready':
            return bool(condition.get('status') == 'True')
    return False


def _requested(obj: Obj | None) -> str | None:
    return (((obj or {}).get('metadata') or {}).get('annotations') or {}).get('reconcile.fluxcd.io/requestedAt')


def _needs_reconcile(change: Change) -> bool:
    """The Flux controllers' predicates: a new generation, a request annotation, deletion, creation."""
    old, metadata = change.old, change.obj.get('metadata') or {}
    if change.type in ('ADDED', 'DELETED') or old is None:
        return True
    old_metadata = old['metadata']
    old_annotations = old_metadata.get('annotations') or {}
    annotations = metadata.get('annotations') or {}
    return old_metadata.get('generation') != metadata.get('generation') or \
        _requested(old) != _requested(change.obj) or \
        bool(old_metadata.get('deletionTimestamp')) != bool(metadata.get('deletionTimestamp')) or \
        old_annotations.get('reconcile.fluxcd.io/resetAt') != annotations.get('reconcile.fluxcd.io/resetAt')


class Controllers:
    def __init__(self, store: Store, *, speed: float, workdir: Path, use_kubectl: bool,
                 remotes: dict[str, str] | None = None) -> None:
        self.store = store
        self.errors: list[str] = []
        self.scheduler = Scheduler(self._dispatch, self._on_error)
        self.rt = Runtime(store=store, clock=Clock(speed), scheduler=self.scheduler, recorder=Recorder(store),
                          workdir=workdir, use_kubectl=use_kubectl, remotes=dict(remotes or {}))
        workdir.mkdir(parents=True, exist_ok=True)
        self.kustomize = KustomizeController(self.rt)
        self.helm = HelmController(self.rt)
        self.rollouts = RolloutController(self.rt)
        self._handlers = {
            'GitRepository': lambda ns, name: source_controller.reconcile_git_repository(self.rt, ns, name),
            'HelmRepository': lambda ns, name: source_controller.reconcile_helm_repository(self.rt, ns, name),
            'OCIRepository': lambda ns, name: source_controller.reconcile_oci_repository(self.rt, ns, name),
            'Bucket': lambda ns, name: source_controller.reconcile_bucket(self.rt, ns, name),
            'HelmChart': lambda ns, name: source_controller.reconcile_helm_chart(self.rt, ns, name),
            'ArtifactGenerator': lambda ns, name: artifact_generator.reconcile(self.rt, ns, name),
            'Kustomization': self.kustomize.reconcile,
            'HelmRelease': self.helm.reconcile,
        }
        store.subscribe(self._on_change)

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()

    def wait_idle(self, timeout: float) -> bool:
        return self.scheduler.wait_idle(timeout)

    def _dispatch(self, key: Key) -> None:
        kind, namespace, name = key
        if kind in _WORKLOADS:
            self.rollouts.reconcile(kind, namespace, name)
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(namespace, name)

    def _on_error(self, key: Key, error: BaseException) -> None:
        text = ''.join(traceback.format_exception(type(error), error, error.__traceback__))
        self.errors.append(f'{"/".join(key)}: {text}')
        print(f'flux-sandbox: controller error in {"/".join(key)}: {error}', file=sys.stderr)

    def _enqueue(self, kind: str, namespace: str, name: str) -> None:
        self.scheduler.enqueue((kind, namespace, name))

    # -- the watches -----------------------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        """Runs with the store locked: decide what to wake, nothing more."""
        obj, old = change.obj, change.old
        kind = obj.get('kind', '')
        metadata = obj.get('metadata') or {}
        namespace, name = metadata.get('namespace') or '', metadata.get('name', '')
        group = str(obj.get('apiVersion', '')).rpartition('/')[0]
        if kind in _WORKLOADS and group == 'apps':
            if change.type == 'DELETED' or old is None or \
                    old['metadata'].get('generation') != metadata.get('generation'):
                self._enqueue(kind, namespace, name)
            if change.type == 'DELETED' or (old or {}).get('status') != obj.get('status'):
                self.kustomize.health_changed()
            return
        if group not in _FLUX_GROUPS:
            return
        if kind in self._handlers and _needs_reconcile(change):
            self._enqueue(kind, namespace, name)
        # No early return for kinds without a reconciler here (ExternalArtifact, written by the generator):
        # their consumers still watch them.
        revision_moved = _revision(old) != _revision(obj) and _revision(obj) is not None
        became_ready = _ready(obj) and not _ready(old)
        if kind in SOURCE_KINDS and revision_moved:
            self._wake_kustomizations(kind, namespace, name)
            self._wake_generators(kind, namespace, name)
        if kind in ('GitRepository', 'HelmRepository', 'Bucket') and (revision_moved or became_ready):
            self._wake_helm_charts(kind, namespace, name)
        if kind in ('HelmChart', 'OCIRepository', 'ExternalArtifact') and (revision_moved or became_ready):
            self._wake_helm_releases(kind, namespace, name, obj)
        if kind in ('Kustomization', 'HelmRelease') and (old or {}).get('status') != obj.get('status'):
            self.kustomize.health_changed()

    def _wake_kustomizations(self, kind: str, namespace: str, name: str) -> None:
        for ks in self.rt.list('Kustomization'):
            ref = (ks.get('spec') or {}).get('sourceRef') or {}
            ks_namespace = ks['metadata']['namespace']
            if (ref.get('kind'), ref.get('name'), ref.get('namespace') or ks_namespace) == (kind, name, namespace):
                self._enqueue('Kustomization', ks_namespace, ks['metadata']['name'])

    def _wake_generators(self, kind: str, namespace: str, name: str) -> None:
        for generator in self.rt.list('ArtifactGenerator'):
            generator_namespace = generator['metadata']['namespace']
            for source in (generator.get('spec') or {}).get('sources') or []:
                if source.get('kind') == kind and source.get('name') == name and \
                        (source.get('namespace') or generator_namespace) == namespace:
                    self._enqueue('ArtifactGenerator', generator_namespace, generator['metadata']['name'])

    def _wake_helm_charts(self, kind: str, namespace: str, name: str) -> None:
        for chart in self.rt.list('HelmChart'):
            ref = (chart.get('spec') or {}).get('sourceRef') or {}
            if ref.get('kind') == kind and ref.get('name') == name and chart['metadata']['namespace'] == namespace:
                self._enqueue('HelmChart', namespace, chart['metadata']['name'])

    def _wake_helm_releases(self, kind: str, namespace: str, name: str, obj: Obj) -> None:
        if kind == 'HelmChart':
            labels = obj['metadata'].get('labels') or {}
            owner = labels.get('helm.toolkit.fluxcd.io/name')
            if owner:
                self._enqueue('HelmRelease', labels.get('helm.toolkit.fluxcd.io/namespace', namespace), owner)
        for release in self.rt.list('HelmRelease'):
            ref = (release.get('spec') or {}).get('chartRef') or {}
            release_namespace = release['metadata']['namespace']
            if ref.get('kind') == kind and ref.get('name') == name and \
                    (ref.get('namespace') or release_namespace) == namespace:
                self._enqueue('HelmRelease', release_namespace, release['metadata']['name'])

"""Simulated helm-controller (HelmRelease v2): HelmChart management, install/upgrade, remediation, status.

No chart is rendered: a release "installs" after a short delay. Values markers script the outcome:
`sandboxFail: "<error>"` makes the install or upgrade fail with that error, and `sandboxTimeout: true` makes it
fail with "context deadline exceeded" after spec.timeout (scaled by --speed). See docs/sandbox.md.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from flux_monitor_hook.sandbox import conditions
from flux_monitor_hook.sandbox.runtime import Runtime
from flux_monitor_hook.sandbox.runtime import go_duration
from flux_monitor_hook.sandbox.runtime import interval_of
from flux_monitor_hook.sandbox.runtime import requested_at
from flux_monitor_hook.sandbox.runtime import sha256_digest
from flux_monitor_hook.sandbox.store import now_rfc3339

Obj = dict[str, Any]
COMPONENT = 'helm-controller'
ACTION_SECONDS = 1.0  # how long a simulated install or upgrade takes
REQUEUE_DEPENDENCY = 30.0  # helm-controller's --requeue-dependency default


@dataclass
class Action:
    kind: str  # install or upgrade
    chart_name: str
    chart_version: str
    app_version: str
    config_digest: str
    generation: int
    finishes: float
    error: str | None


class HelmController:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.running: dict[tuple[str, str], Action] = {}
        self.retrying: set[tuple[str, str]] = set()  # failed, with remediation retries left

    def reconcile(self, namespace: str, name: str) -> None:
        rt = self.rt
        obj = rt.get('HelmRelease', namespace, name)
        if obj is None:
            self.running.pop((namespace, name), None)
            return
        if obj['metadata'].get('deletionTimestamp'):
            self.running.pop((namespace, name), None)
            rt.remove_finalizer(obj)
            return
        spec = obj.get('spec') or {}
        if spec.get('suspend'):
            return
        obj = rt.ensure_finalizer(obj)
        action = self.running.get((namespace, name))
        if action is not None:
            self._finish_if_due(obj, action)
            return
        self._reconcile(obj)

    def _reconcile(self, obj: Obj) -> None:
        rt = self.rt
        metadata = obj['metadata']
        spec = obj.get('spec') or {}
        status = obj.setdefault('status', {})
        try:
            # helm-controller writes the HelmChart template before it looks at dependencies.
            chart_template = self._reconcile_chart_template(obj)
            self._check_dependencies(obj)
            chart_name, chart_version = self._chart(obj, chart_template)
        except _Gate as gate:
            conditions.set_condition(obj, 'Ready', 'False', gate.reason, gate.message)
            _handled(obj)
            rt.write_status(obj)
            if gate.event_type:
                rt.event(obj, gate.event_type, gate.reason, gate.message, COMPONENT)
            retry = gate.requeue if gate.requeue is not None else interval_of(obj, default='10m')
            rt.requeue('HelmRelease', metadata['namespace'], metadata['name'], retry)
            return
        values = spec.get('values') or {}
        config_digest = sha256_digest(json.dumps(values, sort_keys=True, separators=(',', ':')))
        history = status.get('history') or []
        latest = history[0] if history else None
        generation = metadata.get('generation', 1)
        unchanged = latest is not None and latest.get('chartVersion') == chart_version and \
            latest.get('configDigest') == config_digest and status.get('lastAttemptedGeneration') == generation
        reset = _reset_requested(obj)
        retry = (metadata['namespace'], metadata['name']) in self.retrying
        self.retrying.discard((metadata['namespace'], metadata['name']))
        if unchanged and not reset and not retry:
            assert latest is not None
            if conditions.is_true(obj, 'Stalled') or latest.get('status') == 'deployed':
                _handled(obj)
                status['observedGeneration'] = generation
                rt.write_status(obj)
                rt.requeue('HelmRelease', metadata['namespace'], metadata['name'], interval_of(obj, default='10m'))
                return
        if reset:
            status['lastHandledResetAt'] = reset
            status.pop('failures', None)
            status.pop('installFailures', None)
            status.pop('upgradeFailures', None)
        elif not unchanged:
            # A new chart, new values or a new spec clear the failure counts, un-stalling the release.
            for key in ('failures', 'installFailures', 'upgradeFailures'):
                status.pop(key, None)
            conditions.delete(obj, 'Stalled')
        kind = 'upgrade' if any(entry.get('status') in ('deployed', 'superseded') for entry in history) else 'install'
        timeout = interval_of(obj, 'timeout', '5m')
        error = None
        duration = ACTION_SECONDS
        if values.get('sandboxTimeout'):
            error = 'context deadline exceeded'
            duration = timeout
        elif values.get('sandboxFail'):
            error = str(values['sandboxFail'])
        action = Action(kind, chart_name, chart_version, str(values.get('sandboxAppVersion') or chart_version),
                        config_digest, generation, time.monotonic() + rt.clock.scale(duration), error)
        self.running[(metadata['namespace'], metadata['name'])] = action
        status['lastAttemptedRevision'] = chart_version
        status['lastAttemptedConfigDigest'] = config_digest
        status['lastAttemptedGeneration'] = generation
        status['lastAttemptedReleaseAction'] = kind
        status['storageNamespace'] = spec.get('storageNamespace') or metadata['namespace']
        message = f"Running '{kind}' action with timeout of {go_duration(timeout)}"
        conditions.set_condition(obj, 'Reconciling', 'True', 'Progressing', message)
        conditions.set_condition(obj, 'Ready', 'Unknown', 'Progressing', message)
        rt.write_status(obj)
        rt.scheduler.enqueue(('HelmRelease', metadata['namespace'], metadata['name']),
                             rt.clock.scale(duration))

    def _finish_if_due(self, obj: Obj, action: Action) -> None:
        rt = self.rt
        metadata = obj['metadata']
        now = time.monotonic()
        if now < action.finishes:
            rt.scheduler.enqueue(('HelmRelease', metadata['namespace'], metadata['name']), action.finishes - now)
            return
        del self.running[(metadata['namespace'], metadata['name'])]
        status = obj.setdefault('status', {})
        history: list[Obj] = status.setdefault('history', [])
        release_name = (obj.get('spec') or {}).get('releaseName') or metadata['name']
        target_namespace = (obj.get('spec') or {}).get('targetNamespace') or metadata['namespace']
        version = (history[0]['version'] + 1) if history else 1
        now_text = now_rfc3339()
        entry = {
            'name': release_name, 'namespace': target_namespace, 'version': version,
            'status': 'failed' if action.error else 'deployed', 'chartName': action.chart_name,
            'chartVersion': action.chart_version, 'appVersion': action.app_version,
            'configDigest': action.config_digest, 'digest': sha256_digest(f'{release_name}.v{version}'),
            'firstDeployed': history[-1]['firstDeployed'] if history else now_text, 'lastDeployed': now_text,
        }
        if not action.error:
            for previous in history:
                if previous.get('status') == 'deployed':
                    previous['status'] = 'superseded'
        history.insert(0, entry)
        del history[5:]
        release = f'{target_namespace}/{release_name}'
        chart = f'{action.chart_name}@{action.chart_version}'
        verb = action.kind.capitalize()
        interval = interval_of(obj, default='10m')
        if action.error is None:
            message = f'Helm {action.kind} succeeded for release {release}.v{version} with chart {chart}'
            reason = f'{verb}Succeeded'
            for key in ('failures', 'installFailures', 'upgradeFailures'):
                status.pop(key, None)
            conditions.delete(obj, 'Reconciling')
            conditions.delete(obj, 'Stalled')
            conditions.delete(obj, 'Remediated')
            conditions.set_condition(obj, 'Released', 'True', reason, message)
            conditions.set_condition(obj, 'Ready', 'True', reason, message)
            status['observedGeneration'] = action.generation
            _handled(obj)
            rt.write_status(obj)
            rt.event(obj, 'Normal', reason, message, COMPONENT, _annotations(action))
            rt.requeue('HelmRelease', metadata['namespace'], metadata['name'], interval)
            return
        message = f'Helm {action.kind} failed for release {release} with chart {chart}: {action.error}'
        reason = f'{verb}Failed'
        status['failures'] = status.get('failures', 0) + 1
        counter = f'{action.kind}Failures'
        status[counter] = status.get(counter, 0) + 1
        remediation = ((obj.get('spec') or {}).get(action.kind) or {}).get('remediation') or {}
        retries = int(remediation.get('retries', 0))
        conditions.set_condition(obj, 'Released', 'False', reason, message)
        conditions.set_condition(obj, 'Ready', 'False', reason, message)
        rt.event(obj, 'Warning', reason, message, COMPONENT, _annotations(action))
        if status[counter] > retries:
            conditions.delete(obj, 'Reconciling')
            conditions.set_condition(obj, 'Stalled', 'True', 'RetriesExceeded',
                                     f'Failed to {action.kind} after {status[counter]} attempt(s)')
            status['observedGeneration'] = action.generation
            _handled(obj)
            rt.write_status(obj)
            rt.requeue('HelmRelease', metadata['namespace'], metadata['name'], interval)
            return
        conditions.set_condition(obj, 'Reconciling', 'True', 'ProgressingWithRetry', message)
        _handled(obj)
        rt.write_status(obj)
        self.retrying.add((metadata['namespace'], metadata['name']))
        rt.requeue('HelmRelease', metadata['namespace'], metadata['name'], ACTION_SECONDS)

    def _check_dependencies(self, obj: Obj) -> None:
        for dependency in (obj.get('spec') or {}).get('dependsOn') or []:
            namespace = dependency.get('namespace') or obj['metadata']['namespace']
            name = dependency.get('name', '')
            found = self.rt.get('HelmRelease', namespace, name)
            if found is None or not conditions.is_true(found, 'Ready') or \
                    (found.get('status') or {}).get('observedGeneration') != found['metadata'].get('generation'):
                raise _Gate('DependencyNotReady', f"dependency '{namespace}/{name}' is not ready",
                            event_type='Normal', requeue=REQUEUE_DEPENDENCY)

    def _chart(self, obj: Obj, chart_template: tuple[str, str] | None) -> tuple[str, str]:
        """Chart name and version from the HelmChart this release owns, or from spec.chartRef."""
        rt = self.rt
        spec = obj.get('spec') or {}
        metadata = obj['metadata']
        if chart_template is None:
            ref = spec.get('chartRef') or {}
            kind = ref.get('kind', '')
            namespace = ref.get('namespace') or metadata['namespace']
            source = rt.get(kind, namespace, ref.get('name', '')) if kind in (
                'OCIRepository', 'HelmChart', 'ExternalArtifact') else None
            if source is None:
                raise _Gate('ArtifactFailed', f'could not get Source object: {_plural(kind)}.source.toolkit.fluxcd.io '
                                              f'"{ref.get("name")}" not found')
            _check_source_ready(source)
            artifact = (source.get('status') or {}).get('artifact') or {}
            revision = str(artifact['revision'])
            version = revision.split('@')[0] if kind == 'OCIRepository' else revision
            return str(ref.get('name')), version
        chart_namespace, chart_name = chart_template
        chart = rt.get('HelmChart', chart_namespace, chart_name)
        if chart is None:
            raise _Gate('ArtifactFailed', f'could not get Source object: helmcharts.source.toolkit.fluxcd.io '
                                          f'"{chart_name}" not found')
        _check_source_ready(chart)
        artifact = (chart.get('status') or {}).get('artifact') or {}
        chart_spec = (spec.get('chart') or {}).get('spec') or {}
        return str((chart.get('status') or {}).get('observedChartName') or chart_spec.get('chart')), \
            str(artifact['revision'])

    def _reconcile_chart_template(self, obj: Obj) -> tuple[str, str] | None:
        """Create or update the HelmChart `<ns>-<name>` for spec.chart; its namespace and name (None with chartRef)."""
        rt = self.rt
        spec = obj.get('spec') or {}
        metadata = obj['metadata']
        if spec.get('chartRef'):
            return None
        chart_spec = (spec.get('chart') or {}).get('spec') or {}
        source_ref = chart_spec.get('sourceRef') or {}
        chart_namespace = source_ref.get('namespace') or metadata['namespace']
        chart_name = f"{metadata['namespace']}-{metadata['name']}"
        chart_object_spec: Obj = {
            'chart': chart_spec.get('chart', ''),
            'version': chart_spec.get('version') or '*',
            'sourceRef': {'kind': source_ref.get('kind', ''), 'name': source_ref.get('name', '')},
            'interval': chart_spec.get('interval') or spec.get('interval') or '10m',
            'reconcileStrategy': chart_spec.get('reconcileStrategy') or 'ChartVersion',
        }
        if chart_spec.get('valuesFiles'):
            chart_object_spec['valuesFiles'] = list(chart_spec['valuesFiles'])
        desired = {
            'apiVersion': 'source.toolkit.fluxcd.io/v1', 'kind': 'HelmChart',
            'metadata': {'name': chart_name, 'namespace': chart_namespace,
                         'labels': {'helm.toolkit.fluxcd.io/name': metadata['name'],
                                    'helm.toolkit.fluxcd.io/namespace': metadata['namespace']}},
            'spec': chart_object_spec,
        }
        rt.store.apply(rt.type('HelmChart'), desired)
        obj.setdefault('status', {})['helmChart'] = f'{chart_namespace}/{chart_name}'
        return chart_namespace, chart_name


class _Gate(Exception):
    """A prerequisite is missing: Ready=False before any Helm action, with or without an event."""

    def __init__(self, reason: str, message: str, *, event_type: str | None = None,
                 requeue: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.event_type = event_type
        self.requeue = requeue


def _plural(kind: str) -> str:
    return {'OCIRepository': 'ocirepositories', 'HelmChart': 'helmcharts',
            'ExternalArtifact': 'externalartifacts'}.get(kind, kind.lower() + 's')


def _check_source_ready(source: Obj) -> None:
    """helm-controller's isSourceReady: the observed generation, not Stalled, an artifact. A source that is
    Ready=False but still has an artifact (its last good one) is used, as helm-controller does."""
    kind, metadata = source['kind'], source['metadata']
    status = source.get('status') or {}
    prefix = f"{kind} '{metadata['namespace']}/{metadata['name']}' is not ready: "
    problem = None
    if kind == 'ExternalArtifact':
        problem = None if status.get('artifact') else 'does not have an artifact'
    elif status.get('observedGeneration') != metadata.get('generation'):
        ready = conditions.find(source, 'Ready')
        failed = ready is not None and ready.get('status') == 'False'
        problem = ready['message'] if failed and ready else 'latest generation of object has not been reconciled'
    elif conditions.is_true(source, 'Stalled'):
        problem = (conditions.find(source, 'Stalled') or {}).get('message', '')
    elif not status.get('artifact'):
        problem = 'does not have an artifact'
    if problem is not None:
        # No event: the source's own watch wakes the release when it gets an artifact.
        raise _Gate('SourceNotReady', prefix + problem, requeue=REQUEUE_DEPENDENCY)


def _handled(obj: Obj) -> None:
    requested = requested_at(obj)
    if requested is not None:
        obj['status']['lastHandledReconcileAt'] = requested


def _reset_requested(obj: Obj) -> str | None:
    """`flux reconcile hr --reset`: resetAt acts only when it equals requestedAt (HandleAnnotationRequest)."""
    annotations = obj['metadata'].get('annotations') or {}
    reset = annotations.get('reconcile.fluxcd.io/resetAt')
    if reset and reset == annotations.get('reconcile.fluxcd.io/requestedAt') and \
            reset != (obj.get('status') or {}).get('lastHandledResetAt'):
        return str(reset)
    return None


def _annotations(action: Action) -> dict[str, str]:
    return {'helm.toolkit.fluxcd.io/revision': action.chart_version,
            'helm.toolkit.fluxcd.io/app-version': action.app_version}

"""Follow a target revision in one or more clusters until a verdict: the I/O loop around the tracker.

Watch threads (one per kind, per cluster) put API events on one queue; this loop hands each event to the
tracker at once and renders what changed. Nothing sleeps in the decision path: the loop only blocks on the
queue, with a timeout set by the next trigger retry, the redraw tick or the overall deadline.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from flux_monitor_hook import cluster as kube
from flux_monitor_hook import exit_codes
from flux_monitor_hook import objects
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.explain import explain
from flux_monitor_hook.git_urls import redact_text
from flux_monitor_hook.git_urls import redact_url
from flux_monitor_hook.render import Renderer
from flux_monitor_hook.summary import Failure
from flux_monitor_hook.summary import Summary
from flux_monitor_hook.tracker import State
from flux_monitor_hook.tracker import Status
from flux_monitor_hook.tracker import Target
from flux_monitor_hook.tracker import Tracker

WATCHED_KINDS = ('GitRepository', 'OCIRepository', 'ArtifactGenerator', 'ExternalArtifact', 'HelmChart',
                 'Kustomization', 'HelmRelease')
TRIGGER_BACKOFF_MAX = 30.0
TICK = 1.0
STOP_GRACE = 2.0  # how long the watch threads get to finish once the verdict is in


@dataclass
class Options:
    timeout: float
    trigger: bool = True
    fail_fast: bool = False
    namespaces: tuple[str, ...] = ()  # fallback when listing across namespaces is forbidden
    retry: kube.RetryPolicy = field(default_factory=kube.RetryPolicy)
    kustomizations: bool = True
    helmreleases: bool = True
    # With --scope affected: given a cluster's name and the tracker, which resources the change touches.
    scope_for: Callable[[str, Tracker], Callable[[objects.ObjectKey], bool]] | None = None


@dataclass
class _Trigger:
    next_at: float
    backoff: float = 1.0
    allowed: bool = True
    sent: bool = False  # a request was patched in


class Session:
    def __init__(self, clusters: list[kube.Cluster], target: Target, contains: Callable[[str], bool | None],
                 renderer: Renderer, options: Options, *, branch: str | None, started: float) -> None:
        self.clusters = clusters
        self.target = target
        self.renderer = renderer
        self.options = options
        self.branch = branch
        self.started = started  # every duration shown counts from here, the start of the command
        self.deadline = started + options.timeout
        self.tracker = Tracker(target, contains, started_at=self.started,
                               follow_kustomizations=options.kustomizations,
                               follow_helmreleases=options.helmreleases)
        self.events: queue.Queue[kube.WatchEvent | kube.ApiFailure] = queue.Queue()
        self.stop = threading.Event()
        self.streams = kube.Streams()
        self._threads: list[threading.Thread] = []
        self.notes: list[str] = []
        self._triggers: dict[objects.ObjectKey, _Trigger] = {}
        self._unsynced: set[tuple[str, str, str]] = set()
        self._trigger_token = kube.now_rfc3339_nano()
        self._retry_notes: set[str] = set()
        self._announced = False

    # -- set-up ----------------------------------------------------------------------------------------

    def check_flux(self) -> None:
        """Say whether Flux itself is healthy in each cluster before following anything."""
        for cluster in self.clusters:
            if 'Kustomization' not in cluster.apis and 'HelmRelease' not in cluster.apis:
                raise UserError(f'Flux is not installed in cluster {cluster.name}: no Flux APIs are served '
                                '(install Flux with flux bootstrap or flux install)', exit_codes.UNAVAILABLE)
            line, ok = flux_health(cluster, self.options.retry)
            prefix = f'[{cluster.name}] ' if len(self.clusters) > 1 else ''
            self.renderer.header(prefix + line, ok)

    def _start_watches(self) -> None:
        policy = kube.RetryPolicy(self.options.retry.attempts, self.options.retry.delay, self.deadline)
        for cluster in self.clusters:
            for kind in WATCHED_KINDS:
                api = cluster.apis.get(kind)
                if api is None:
                    continue
                for namespace in self._namespaces(cluster, api, policy):
                    self._unsynced.add((cluster.name, kind, namespace or ''))
                    thread = threading.Thread(
                        target=kube.follow, args=(cluster, api, namespace, self.events, self.stop, policy,
                                                  self._on_retry, self.streams),
                        name=f'watch-{cluster.name}-{kind}-{namespace or "all"}', daemon=True)
                    thread.start()
                    self._threads.append(thread)

    def _namespaces(self, cluster: kube.Cluster, api: kube.Api, policy: kube.RetryPolicy) -> list[str | None]:
        """All namespaces at once when allowed, else the configured ones (a namespaced Role is common)."""
        try:
            kube.call(lambda: cluster.custom().list_cluster_custom_object(
                api.group, api.version, api.plural, limit=1, _request_timeout=kube.request_timeout(policy, 15)),
                      f'listing {api.plural}', policy, self._on_retry)  # retries are said, wherever they happen
            return [None]
        except kube.ApiFailure as failure:
            if failure.status != 403:
                raise kube.unavailable(cluster, failure) from None
            if not self.options.namespaces:
                raise UserError(f'cluster {cluster.name}: not allowed to list {api.plural} in all namespaces; pass '
                                '--namespace NS (or cluster.namespaces in .flux-monitor.yaml) for the namespaces '
                                'to watch', exit_codes.UNAVAILABLE) from None
            self._note_once(f'listing across namespaces is forbidden in {cluster.name}; watching '
                            f'{", ".join(self.options.namespaces)}')
            return list(self.options.namespaces)

    def _on_retry(self, message: str) -> None:
        self.events.put(kube.WatchEvent('', '', 'RETRY', {'message': message}))

    def _note_once(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)
            self.renderer.note(note)

    # -- the loop --------------------------------------------------------------------------------------

    def run(self) -> Summary:
        try:
            self._start_watches()  # inside: a kind that may not be listed must stop the watches already started
            result = self._loop()
        except KeyboardInterrupt:
            result = 'interrupted'
        finally:
            self._stop_watches()
        summary = self._summary(result)
        if result == 'timeout':
            summary.notes.extend(self._health_at_timeout())
        return summary

    def _health_at_timeout(self) -> list[str]:
        """Flux health is checked before following; a controller that went down meanwhile (so that nothing
        moved) is said with the timeout."""
        notes = []
        for cluster in self.clusters:
            line, ok = flux_health(cluster, kube.RetryPolicy(1, 0.2, time.monotonic() + 5))
            if not ok:
                prefix = f'[{cluster.name}] ' if len(self.clusters) > 1 else ''
                notes.append(f'{prefix}at the timeout: {line}')
        return notes

    def _stop_watches(self) -> None:
        """End the watch threads before the verdict is printed and the process exits: a daemon thread
        still reading a socket while the interpreter shuts down can make it abort (SIGABRT)."""
        self.stop.set()
        self.streams.close_all()
        give_up = time.monotonic() + STOP_GRACE
        for thread in self._threads:
            thread.join(max(0.0, give_up - time.monotonic()))

    def _loop(self) -> str:
        next_tick = time.monotonic() + TICK
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                # A failure already seen is the verdict on this revision; waiting longer would not change it.
                return 'failed' if self.tracker.verdict(fail_fast=True) == 'failed' else 'timeout'
            wake = min(self.deadline, next_tick, *(t.next_at for t in self._triggers.values() if t.allowed))
            try:
                event = self.events.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                event = None
            if isinstance(event, kube.ApiFailure):
                raise self._fatal(event)
            if event is not None:
                self._handle(event)
                while True:  # drain what else arrived, then decide once
                    try:
                        more = self.events.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(more, kube.ApiFailure):
                        raise self._fatal(more)
                    self._handle(more)
            if self._unsynced:
                continue
            if not self._announced:
                self._check_named_sources()
            if not self.tracker.sources():
                return 'no-sources'
            if not self._announced:
                self._announced = True
                self._apply_scope()
                self.renderer.start(self.tracker.statuses())
            self._trigger_due()
            verdict = self.tracker.verdict(fail_fast=self.options.fail_fast)
            if verdict is not None:
                return verdict
            if time.monotonic() >= next_tick:
                self.renderer.tick(self.tracker.statuses())
                next_tick = time.monotonic() + TICK

    def _check_named_sources(self) -> None:
        """--source names objects: one that exists nowhere is a mistake to report, not 'nothing to wait for'."""
        named = self.target.explicit_sources
        if not named:
            return
        found = {(key.cluster, *key.ref) for key in (status.key for status in self.tracker.sources())}
        missing = [(cluster.name, ref) for cluster in self.clusters for ref in named
                   if (cluster.name, *ref) not in found]
        if len(missing) == len(named) * len(self.clusters):
            names = ', '.join('/'.join(ref) for ref in named)
            where = ', '.join(cluster.name for cluster in self.clusters)
            raise UserError(f'--source {names}: not found in {where}; check the kind, namespace and name (e.g. with '
                            'flux get sources all -A)')
        for cluster, ref in missing:
            self._note_once(f'--source {"/".join(ref)} is not in cluster {cluster}')

    def _apply_scope(self) -> None:
        scope_for = self.options.scope_for
        if scope_for is None:
            return
        scopes = {cluster.name: scope_for(cluster.name, self.tracker) for cluster in self.clusters}
        before = len(self.tracker.resources())
        self.tracker.set_scope(lambda key: scopes[key.cluster](key), time.monotonic())
        after = len(self.tracker.resources())
        if after == 0:
            self._note_once('the change touches nothing Flux builds: confirming that Flux fetched the commit')
        elif after < before:
            self._note_once(f'following the {after} of {before} resources this change affects (--scope all follows '
                            'every one)')

    def _fatal(self, failure: kube.ApiFailure) -> UserError:
        cluster = next((c for c in self.clusters if c.name == failure.cluster), self.clusters[0])
        return kube.unavailable(cluster, failure)

    def _handle(self, event: kube.WatchEvent) -> None:
        if event.type == 'RETRY':
            message = redact_text(str(event.obj.get('message', '')))
            if message not in self._retry_notes:
                self._retry_notes.add(message)
                self.renderer.note(f'retrying after a transient API error: {message}')
            return
        if event.type == 'SYNCED':
            self._unsynced = {u for u in self._unsynced if u[:2] != (event.cluster, event.kind)}
            return
        at = time.monotonic()
        for transition in self.tracker.observe(event.cluster, event.type, event.obj, at):
            status = transition.status
            if status.role == 'source' and status.key not in self._triggers and self.options.trigger:
                self._triggers[status.key] = _Trigger(next_at=at)
            if self._announced:
                self.renderer.transition(transition, self.tracker.statuses())
        for note in self.tracker.notes:
            self._note_once(note)

    # -- triggering ------------------------------------------------------------------------------------

    def _trigger_due(self) -> None:
        now = time.monotonic()
        for key, trigger in self._triggers.items():
            if not trigger.allowed or now < trigger.next_at:
                continue
            status = next((s for s in self.tracker.sources() if s.key == key), None)
            if status is None or status.state is not State.PENDING:
                trigger.allowed = False
                continue
            cluster = next(c for c in self.clusters if c.name == key.cluster)
            api = cluster.apis.get(key.kind)
            if api is None or key.kind not in ('GitRepository', 'OCIRepository', 'Bucket'):
                trigger.allowed = False
                continue
            obj = self.tracker.object(key)
            if trigger.sent and obj is not None and _request_pending(obj):
                # Flux has yet to handle the last request (it is busy, or down): another would only replace it.
                # Asking again is for when Flux fetched and the commit was not there yet.
                trigger.next_at = now + trigger.backoff
                trigger.backoff = min(trigger.backoff * 2, TRIGGER_BACKOFF_MAX)
                continue
            policy = kube.RetryPolicy(1, self.options.retry.delay, self.deadline)
            try:
                kube.request_reconcile(cluster, api, key.namespace, key.name, kube.now_rfc3339_nano(), policy)
                trigger.sent = True
            except kube.ApiFailure as failure:
                if failure.status == 401:  # the credentials were revoked or expired: reads will fail too
                    failure.cluster = key.cluster
                    raise self._fatal(failure) from None
                if failure.status == 403:
                    self._note_once(f'not allowed to patch {key} (403): waiting for its interval instead of '
                                    'triggering reconciliation')
                    for other in self._triggers.values():
                        other.allowed = False
                    return
                self._note_once(f'could not request reconciliation of {key}: {failure}')
            trigger.next_at = now + trigger.backoff
            trigger.backoff = min(trigger.backoff * 2, TRIGGER_BACKOFF_MAX)

    # -- the verdict -----------------------------------------------------------------------------------

    def _summary(self, result: str) -> Summary:
        duration = time.monotonic() - self.started
        summary = Summary(result=result, revision=self.target.sha, branch=self.branch,
                          repository=redact_url(self.target.repository), duration=duration,
                          sources=self.tracker.sources(), resources=self.tracker.resources(),
                          notes=[n for n in self.tracker.notes if n not in self.notes])
        if result == 'failed':
            summary.failures = [self._failure(s) for s in summary.sources + summary.resources
                                if s.state is State.FAILED]
        for status in summary.resources:
            obj = self.tracker.object(status.key)
            if status.key.kind == 'Kustomization' and obj is not None:
                summary.inventories[str(status.key)] = [
                    f'{kind}/{namespace}/{name}' if namespace else f'{kind}/{name}'
                    for _, kind, namespace, name in objects.inventory_refs(obj)]
        return summary

    def _failure(self, status: Status) -> Failure:
        key = status.key
        diagnosis = explain(status.message, kind=key.kind, reason=status.reason, namespace=key.namespace,
                            name=key.name)
        cluster = next(c for c in self.clusters if c.name == status.key.cluster)
        return Failure(status, diagnosis, tuple(self._warnings(cluster, status)), tuple(next_steps(status)))

    def _warnings(self, cluster: kube.Cluster, status: Status) -> list[str]:
        key = status.key
        selector = f'regarding.kind={key.kind},regarding.name={key.name},type=Warning'
        try:
            events = kube.list_group(cluster, 'events.k8s.io', 'v1', 'events', key.namespace,
                                     kube.RetryPolicy(1, 0.2, time.monotonic() + 5), field_selector=selector)
        except kube.ApiFailure:
            return []

        def newest(event: dict[str, Any]) -> str:
            return str(event.get('deprecatedLastTimestamp') or event.get('eventTime') or '')

        events.sort(key=newest, reverse=True)
        return [f'{e.get("reason")}: {redact_text(str(e.get("note", "")))}'.splitlines()[0][:300]
                for e in events[:3]]


def _request_pending(obj: objects.Obj) -> bool:
    """Is a reconciliation request (the requestedAt annotation) newer than what Flux last handled?"""
    requested = ((obj.get('metadata') or {}).get('annotations') or {}).get(kube.REQUESTED_AT)
    return bool(requested) and requested != objects.status(obj).get('lastHandledReconcileAt')


def next_steps(status: Status) -> list[str]:
    key = status.key
    short = {'Kustomization': 'kustomization', 'HelmRelease': 'helmrelease', 'GitRepository': 'source git',
             'OCIRepository': 'source oci', 'ExternalArtifact': 'source external'}.get(key.kind, key.kind.lower())
    steps = [f'flux get {short} {key.name} -n {key.namespace}',
             f'flux events --for {key.kind}/{key.name} -n {key.namespace}']
    if key.kind == 'HelmRelease' and status.reason in ('RetriesExceeded', 'UpgradeFailed', 'InstallFailed'):
        steps.append(f'flux reconcile helmrelease {key.name} -n {key.namespace} --reset')
    elif key.kind == 'Kustomization':
        steps.append(f'flux reconcile kustomization {key.name} -n {key.namespace} --with-source')
    return steps


def flux_health(cluster: kube.Cluster, policy: kube.RetryPolicy) -> tuple[str, bool]:
    """From the FluxInstance when there is one, else from the controller Deployments in flux-system."""
    deadline = time.monotonic() + 10
    short_policy = kube.RetryPolicy(min(policy.attempts, 2), policy.delay,
                                    deadline if policy.deadline is None else min(deadline, policy.deadline))
    instance_api = cluster.apis.get('FluxInstance')
    if instance_api is not None:
        try:
            instances, _ = kube.list_objects(cluster, instance_api, None, short_policy)
        except kube.ApiFailure:
            instances = []
        if instances:
            instance = instances[0]
            ready = objects.condition(instance, 'Ready') or {}
            name = f'{instance["metadata"].get("namespace")}/{instance["metadata"].get("name")}'
            version = objects.status(instance).get('lastAppliedRevision') or ''
            if ready.get('status') == 'True':
                return f'Flux system healthy (FluxInstance {name} {str(version).split("@")[0]})'.rstrip(), True
            return f'Flux system not ready: FluxInstance {name}: {ready.get("message", "no Ready condition")}', False
    try:
        deployments = kube.list_group(cluster, 'apps', 'v1', 'deployments', 'flux-system', short_policy,
                                      label_selector='app.kubernetes.io/part-of=flux')
    except kube.ApiFailure as failure:
        return f'could not read the Flux controllers in flux-system: {failure}', False
    if not deployments:
        return 'no Flux controller Deployments found in flux-system (labelled app.kubernetes.io/part-of=flux)', False
    unavailable = [d['metadata']['name'] for d in deployments if not _deployment_ready(d)]
    if unavailable:
        return f'Flux controllers not ready: {", ".join(sorted(unavailable))}', False
    return f'Flux system healthy ({len(deployments)} controllers ready)', True


def _deployment_ready(deployment: Any) -> bool:
    status = deployment.get('status') or {}
    replicas = (deployment.get('spec') or {}).get('replicas', 1)
    return bool(status.get('availableReplicas', 0) >= replicas and
                status.get('observedGeneration') == deployment['metadata'].get('generation'))

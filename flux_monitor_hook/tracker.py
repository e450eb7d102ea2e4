"""The watch loop's state machine: fed API events, it decides what has landed, failed or is still pending.

Pure: no I/O. Git ancestry comes from an injected `contains(commit)` function (is the target that commit or
one of its ancestors?), which answers None when it cannot be known; then only the exact commit counts.
The landing rules follow ../shared/flux-status-reference.md §8 and are explained in the README.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from enum import Enum

from flux_monitor_hook import objects
from flux_monitor_hook.git_urls import normalize_repo_url
from flux_monitor_hook.git_urls import redact_text
from flux_monitor_hook.objects import Obj
from flux_monitor_hook.objects import ObjectKey
from flux_monitor_hook.revisions import extract_hash


class State(str, Enum):
    PENDING = 'pending'
    LANDED = 'landed'
    FAILED = 'failed'
    BLOCKED = 'blocked'
    SUSPENDED = 'suspended'
    SKIPPED = 'skipped'

    @property
    def terminal(self) -> bool:
        return self is not State.PENDING


# Ready=False reasons that are a verdict on the attempted revision, not a wait.
KUSTOMIZATION_FAILURES = frozenset({
    'BuildFailed', 'ReconciliationFailed', 'HealthCheckFailed', 'PruneFailed', 'InvalidCELExpression',
    'AccessDenied', 'FeatureGateDisabled', 'DecryptionFailed', 'HealthCheckCanceled',
})
# Kustomization failures that come after its objects were applied.
APPLIED_FAILURES = frozenset({'HealthCheckFailed', 'HealthCheckCanceled', 'PruneFailed'})
HELM_WAITS = frozenset({'Progressing', 'ProgressingWithRetry', 'DependencyNotReady', 'ArtifactFailed',
                        'SourceNotReady', 'Unknown'})
SOURCE_FAILURES = frozenset({
    'GitOperationFailed', 'AuthenticationFailed', 'URLInvalid', 'EmptyGitRepository',
    'InvalidProviderConfiguration', 'IncludeUnavailable', 'OCIArtifactPullFailed', 'BucketOperationFailed',
    'VerificationError', 'StorageOperationFailed', 'ChartPullError', 'ChartPackageError', 'IndexationFailed',
})
_FAILING_CONDITIONS = ('FetchFailed', 'IncludeUnavailable', 'BuildFailed', 'StorageOperationFailed')
_REVISION_TEXT = re.compile(r'(?:[\w./-]+@)?(?:sha1|sha256):[0-9a-f]{7,64}|\b[0-9a-f]{40}\b')

Contains = Callable[[str], 'bool | None']


@dataclass(frozen=True)
class Target:
    """What we follow: a commit of a repository, pushed to a branch (or as a tag)."""

    sha: str
    repository: str  # the git remote URL (any form; compared after normalisation)
    branch: str | None = None
    tag: str | None = None
    explicit_sources: tuple[tuple[str, str, str], ...] = ()  # (kind, namespace, name): skip URL matching
    also_known_as: tuple[str, ...] = ()  # other URLs of the same repository (the local clone, for post-commit)

    @property
    def normalized_repositories(self) -> frozenset[str]:
        found = set()
        for url in (self.repository, *self.also_known_as):
            try:
                found.add(normalize_repo_url(url))
            except ValueError:
                found.add(url)
        return frozenset(found)


@dataclass
class Status:
    key: ObjectKey
    role: str  # source, kustomization or helmrelease
    state: State = State.PENDING
    revision: str = ''
    reason: str = ''
    message: str = ''
    detail: str = ''  # what it waits for, in words
    preexisting: bool = False
    unchanged: bool = False
    depends_on: tuple[ObjectKey, ...] = ()
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else max(0.0, self.finished_at - self.started_at)


@dataclass(frozen=True)
class Transition:
    status: Status  # a snapshot
    previous: State | None
    at: float


@dataclass
class _Entry:
    obj: Obj
    first_failure: tuple[str, str] | None  # (reason, message) when first seen failing: pre-existing


def _normalize_message(message: str) -> str:
    return _REVISION_TEXT.sub('<revision>', message)


def _ref_follows(obj: Obj, target: Target) -> bool:
    """Does this GitRepository's spec.ref follow the pushed branch (or tag)?"""
    ref = objects.spec(obj).get('ref') or {}
    if not isinstance(ref, dict):
        ref = {}
    if ref.get('commit') and not ref.get('branch'):
        return False
    if ref.get('name'):
        name = str(ref['name'])
        return (target.branch is not None and name == f'refs/heads/{target.branch}') or \
            (target.tag is not None and name == f'refs/tags/{target.tag}')
    if ref.get('semver'):
        return target.tag is not None
    if ref.get('tag'):
        return target.tag is not None and ref['tag'] == target.tag
    branch = ref.get('branch') or 'master'
    return target.branch is not None and branch == target.branch


@dataclass
class Tracker:
    target: Target
    contains: Contains
    started_at: float = 0.0
    follow_kustomizations: bool = True
    follow_helmreleases: bool = True
    # With --scope affected: which Kustomizations and HelmReleases the change touches (None: all of them).
    in_scope: Callable[[ObjectKey], bool] | None = None
    _objects: dict[ObjectKey, _Entry] = field(default_factory=dict)
    _statuses: dict[ObjectKey, Status] = field(default_factory=dict)
    # Reverse edges: an object's key -> keys whose state depends on it.
    _watchers: dict[tuple[str, str, str, str], set[ObjectKey]] = field(default_factory=dict)
    _edges: dict[ObjectKey, list[tuple[str, str, str, str]]] = field(default_factory=dict)
    _fresh: set[ObjectKey] = field(default_factory=set)  # changed after their source landed
    notes: list[str] = field(default_factory=list)

    # -- input -----------------------------------------------------------------------------------------

    def observe(self, cluster: str, event_type: str, obj: Obj, at: float) -> list[Transition]:
        """Take one ADDED/MODIFIED/DELETED event (or a listed object as ADDED); what changed state."""
        key = objects.key_of(cluster, obj)
        if not key.kind or not key.name:
            return []
        if event_type == 'DELETED':
            self._objects.pop(key, None)
            self._set_edges(key, [])
        else:
            previous = self._objects.get(key)
            if previous is not None:
                first_failure = previous.first_failure
            elif self._attempted_target(obj):
                first_failure = None  # already a verdict on this very commit: not from before it
            else:
                first_failure = self._failure_of(obj)
            self._objects[key] = _Entry(obj, first_failure)
            self._set_edges(key, self._edges_of(key, obj))
            source_status = self._source_status_for(key, obj)
            if source_status is not None and source_status.state is State.LANDED:
                self._fresh.add(key)
        return self._propagate([key], at)

    def observe_all(self, cluster: str, items: Iterable[Obj], at: float) -> list[Transition]:
        transitions = []
        for obj in items:
            transitions.extend(self.observe(cluster, 'ADDED', obj, at))
        return transitions

    # -- output ----------------------------------------------------------------------------------------

    def statuses(self) -> list[Status]:
        """Followed objects in display order: sources, then resources in dependency order."""
        return _dependency_order([s for s in self._statuses.values()])

    def sources(self) -> list[Status]:
        return [s for s in self.statuses() if s.role == 'source']

    def resources(self) -> list[Status]:
        return [s for s in self.statuses() if s.role != 'source']

    def verdict(self, *, fail_fast: bool = False) -> str | None:
        """'succeeded' or 'failed' once decided, None while anything is pending."""
        statuses = list(self._statuses.values())
        if fail_fast and any(s.state is State.FAILED for s in statuses):
            return 'failed'
        if not statuses or any(s.state is State.PENDING for s in statuses):
            return None
        if any(s.state in (State.FAILED, State.BLOCKED) for s in statuses):
            return 'failed'
        return 'succeeded'

    def objects_of(self, cluster: str, kind: str) -> list[Obj]:
        return [entry.obj for key, entry in self._objects.items() if key.cluster == cluster and key.kind == kind]

    def set_scope(self, in_scope: Callable[[ObjectKey], bool], at: float) -> list[Transition]:
        """Follow only the resources in scope from now on; everything is assessed again."""
        self.in_scope = in_scope
        return self._propagate(sorted(self._objects), at)

    def object(self, key: ObjectKey) -> Obj | None:
        entry = self._objects.get(key)
        return entry.obj if entry else None

    # -- edges -----------------------------------------------------------------------------------------

    def _set_edges(self, key: ObjectKey, edges: list[tuple[str, str, str, str]]) -> None:
        for old in self._edges.pop(key, []):
            self._watchers.get(old, set()).discard(key)
        self._edges[key] = edges
        for edge in edges:
            self._watchers.setdefault(edge, set()).add(key)

    def _edges_of(self, key: ObjectKey, obj: Obj) -> list[tuple[str, str, str, str]]:
        cluster = key.cluster
        edges: list[tuple[str, str, str, str]] = []
        if key.kind == 'Kustomization':
            ref = objects.source_ref(obj)
            if ref:
                edges.append((cluster, *ref))
            edges.extend((cluster, 'Kustomization', ns, name) for ns, name in objects.depends_on(obj))
        elif key.kind == 'HelmRelease':
            chart = objects.helm_chart_name(obj)
            if chart:
                edges.append((cluster, 'HelmChart', *chart))
            chart_ref = objects.spec(obj).get('chartRef')
            if isinstance(chart_ref, dict) and chart_ref.get('name'):
                edges.append((cluster, str(chart_ref.get('kind', '')),
                              str(chart_ref.get('namespace') or key.namespace), str(chart_ref['name'])))
            applier = objects.applied_by(obj)
            if applier:
                edges.append((cluster, 'Kustomization', *applier))
            edges.extend((cluster, 'HelmRelease', ns, name) for ns, name in objects.depends_on(obj))
        elif key.kind == 'HelmChart':
            ref = objects.source_ref(obj)
            if ref:
                edges.append((cluster, *ref))
        elif key.kind == 'ExternalArtifact':
            ref = objects.source_ref(obj)
            if ref:
                edges.append((cluster, *ref))
        elif key.kind == 'ArtifactGenerator':
            for source in objects.spec(obj).get('sources') or []:
                if isinstance(source, dict) and source.get('name'):
                    edges.append((cluster, str(source.get('kind', '')), str(source.get('namespace') or key.namespace),
                                  str(source['name'])))
        return edges

    def _propagate(self, keys: list[ObjectKey], at: float) -> list[Transition]:
        transitions = []
        queue = list(keys)
        seen: set[ObjectKey] = set()
        while queue:
            key = queue.pop(0)
            if key in seen:
                continue
            seen.add(key)
            before = self._statuses.get(key)
            before_snapshot = dataclasses.replace(before) if before else None
            after = self._evaluate(key, at)
            changed = (before_snapshot is None) != (after is None) or (
                after is not None and before_snapshot is not None and _visible(before_snapshot) != _visible(after))
            if after is None:
                self._statuses.pop(key, None)
            else:
                self._statuses[key] = after
            if after is not None and (before_snapshot is None or before_snapshot.state != after.state or
                                      _visible(before_snapshot) != _visible(after)):
                if after.state.terminal and after.finished_at is None:
                    after.finished_at = at
                if not after.state.terminal:
                    after.finished_at = None
                transitions.append(Transition(dataclasses.replace(after),
                                              before_snapshot.state if before_snapshot else None, at))
            if changed or key in keys:
                queue.extend(sorted(self._watchers.get((key.cluster, *key.ref), set())))
        return transitions

    # -- assessment ------------------------------------------------------------------------------------

    def _evaluate(self, key: ObjectKey, at: float) -> Status | None:
        entry = self._objects.get(key)
        previous = self._statuses.get(key)
        if entry is None:
            if previous is None:
                return None
            gone = dataclasses.replace(previous, state=State.SKIPPED, reason='Deleted',
                                       message=f'{key} was deleted while waiting', detail='deleted')
            return gone
        obj = entry.obj
        if key.kind in objects.SOURCE_KINDS:
            status = self._assess_source(key, obj)
        elif self.in_scope is not None and not self.in_scope(key) and key.kind in ('Kustomization', 'HelmRelease'):
            status = None
        elif key.kind == 'Kustomization' and self.follow_kustomizations:
            status = self._assess_kustomization(key, obj)
        elif key.kind == 'HelmRelease' and self.follow_helmreleases:
            status = self._assess_helmrelease(key, obj)
        else:
            status = None
        if status is None:
            return None
        # Messages come from the cluster: a URL in one may carry credentials (`https://user:token@host`).
        status.message, status.detail = redact_text(status.message), redact_text(status.detail)
        if previous is not None and previous.state is State.LANDED and status.state is State.PENDING:
            # Landed is a fact about the commit: Flux reconciling the object again afterwards (an interval
            # re-sync is Ready=Unknown while it runs) is no step back, and must not be reported twice.
            return previous
        status.started_at = previous.started_at if previous else self.started_at
        status.finished_at = previous.finished_at if previous and previous.state == status.state else None
        if status.state is State.FAILED and entry.first_failure is not None:
            status.preexisting = entry.first_failure == (status.reason, _normalize_message(status.message))
        return status

    def _failure_of(self, obj: Obj) -> tuple[str, str] | None:
        ready = objects.condition(obj, 'Ready')
        stalled = objects.condition(obj, 'Stalled')
        if stalled and stalled.get('status') == 'True':
            ready = ready if ready and ready.get('status') == 'False' else stalled
        if ready and ready.get('status') == 'False' and ready.get('reason') not in HELM_WAITS:
            return (str(ready.get('reason', '')), _normalize_message(redact_text(str(ready.get('message', '')))))
        return None

    def _attempted_target(self, obj: Obj) -> bool:
        if obj.get('kind') != 'Kustomization':
            return False
        return bool(self._lands(str(objects.status(obj).get('lastAttemptedRevision') or '')))

    def _lands(self, revision: str | None) -> bool | None:
        """Does an artifact or applied revision contain the target commit? None: cannot tell."""
        if not revision:
            return False
        digest = extract_hash(revision)
        if digest.lower() == self.target.sha.lower():
            return True
        if not re.fullmatch(r'[0-9a-fA-F]{40}', digest):
            return False
        return self.contains(digest.lower())

    # sources ------------------------------------------------------------------------------------------

    def _is_followed_source(self, key: ObjectKey, obj: Obj) -> bool:
        if self.target.explicit_sources:
            return key.ref in self.target.explicit_sources
        if key.kind == 'GitRepository':
            url = str(objects.spec(obj).get('url') or '')
            try:
                same = normalize_repo_url(url) in self.target.normalized_repositories
            except ValueError:
                same = False
            return same and _ref_follows(obj, self.target)
        if key.kind == 'ExternalArtifact':
            ref = objects.source_ref(obj)
            if not ref or ref[0] != 'ArtifactGenerator':
                return False
            generator = self._objects.get(ObjectKey(key.cluster, *ref))
            if generator is None:
                return False
            return any(self._is_followed_source(k, e.obj) for k, e in self._source_entries(key.cluster, generator.obj))
        if key.kind == 'OCIRepository':
            origin = objects.artifact_metadata(obj).get(objects.ORIGIN_SOURCE)
            try:
                return bool(origin) and normalize_repo_url(str(origin)) in self.target.normalized_repositories
            except ValueError:
                return False
        return False

    def _source_entries(self, cluster: str, generator: Obj) -> list[tuple[ObjectKey, _Entry]]:
        found = []
        namespace = (generator.get('metadata') or {}).get('namespace') or ''
        for source in objects.spec(generator).get('sources') or []:
            if not isinstance(source, dict):
                continue
            key = ObjectKey(cluster, str(source.get('kind', '')), str(source.get('namespace') or namespace),
                            str(source.get('name', '')))
            entry = self._objects.get(key)
            if entry is not None and key.kind == 'GitRepository':
                found.append((key, entry))
        return found

    def _assess_source(self, key: ObjectKey, obj: Obj) -> Status | None:
        if not self._is_followed_source(key, obj):
            return None
        status = Status(key, 'source', revision=objects.artifact_revision(obj) or '')
        if objects.suspended(obj):
            status.state, status.detail = State.SUSPENDED, 'suspended'
            return status
        if key.kind == 'GitRepository':
            landed = self._lands(status.revision)
        else:
            origin = objects.artifact_metadata(obj).get(objects.ORIGIN_REVISION)
            if not origin:
                status.state = State.SKIPPED
                status.detail = 'its artifact carries no origin revision, so the commit cannot be traced'
                return status
            landed = self._lands(origin)
        if landed:
            status.state, status.detail = State.LANDED, 'fetched'
            return status
        if landed is None:
            self._note_once('ancestry of the artifact revision is unknown here (shallow clone?): '
                            'only the exact commit counts')
        ready = objects.condition(obj, 'Ready')
        failing = any(objects.is_true(obj, c) for c in _FAILING_CONDITIONS) or (
            ready is not None and ready.get('status') == 'False' and ready.get('reason') in SOURCE_FAILURES)
        if failing and ready is not None and ready.get('status') == 'False':
            status.state = State.FAILED
            status.reason = str(ready.get('reason', ''))
            status.message = str(ready.get('message', ''))
            return status
        status.detail = 'waiting for Flux to fetch the commit'
        return status

    def _source_status_for(self, key: ObjectKey, obj: Obj) -> Status | None:
        """The followed source upstream of a Kustomization or of a HelmRelease's chart."""
        if key.kind == 'Kustomization':
            ref = objects.source_ref(obj)
        elif key.kind == 'HelmRelease':
            ref = objects.chart_source_ref(obj)
        else:
            ref = None
        return self._statuses.get(ObjectKey(key.cluster, *ref)) if ref else None

    # kustomizations -----------------------------------------------------------------------------------

    def _assess_kustomization(self, key: ObjectKey, obj: Obj) -> Status | None:
        ref = objects.source_ref(obj)
        source = self._statuses.get(ObjectKey(key.cluster, *ref)) if ref else None
        if source is None:
            return None
        status = Status(key, 'kustomization', depends_on=tuple(
            ObjectKey(key.cluster, 'Kustomization', ns, name) for ns, name in objects.depends_on(obj)))
        state = objects.status(obj)
        applied = str(state.get('lastAppliedRevision') or '')
        attempted = str(state.get('lastAttemptedRevision') or '')
        status.revision = applied
        if objects.suspended(obj):
            status.state, status.detail = State.SUSPENDED, 'suspended: Flux does not apply it'
            return status
        ready = objects.condition(obj, 'Ready') or {}
        reason = str(ready.get('reason', ''))
        message = str(ready.get('message', ''))
        source_obj = self._objects.get(source.key)
        source_revision = objects.artifact_revision(source_obj.obj) if source_obj else None
        if source.key.kind == 'GitRepository':
            applied_target = bool(self._lands(applied))
            attempted_target = bool(self._lands(attempted))
        else:
            applied_target = source.state is State.LANDED and bool(source_revision) and applied == source_revision
            attempted_target = source.state is State.LANDED and bool(source_revision) and attempted == source_revision
        healthy = objects.condition(obj, 'Healthy')
        if applied_target and ready.get('status') == 'True' and objects.generation_observed(obj) and \
                (healthy is None or healthy.get('status') == 'True'):
            status.state, status.detail = State.LANDED, 'applied'
            if source.key.kind != 'GitRepository':
                origin = state.get('lastAppliedOriginRevision')
                status.unchanged = not (origin and self._lands(str(origin)))
                if status.unchanged:
                    status.detail = 'unchanged: its artifact content did not change, nothing to apply'
            return status
        if objects.is_true(obj, 'Stalled') and key in self._fresh:
            stalled = objects.condition(obj, 'Stalled') or {}
            status.state, status.reason, status.message = State.FAILED, str(stalled.get('reason', '')), str(
                stalled.get('message', ''))
            return status
        if ready.get('status') == 'False':
            if reason in KUSTOMIZATION_FAILURES and attempted_target:
                status.state, status.reason, status.message = State.FAILED, reason, message
                status.revision = attempted
                return status
            if reason == 'ArtifactFailed' and 'path not found' in message and key in self._fresh and \
                    source.state is State.LANDED:
                status.state, status.reason, status.message = State.FAILED, reason, message
                return status
            if reason == 'DependencyNotReady':
                return self._dependency_wait(status, obj, key, 'Kustomization', reason, message)
        if source.state in (State.FAILED, State.BLOCKED):
            status.state, status.reason = State.BLOCKED, 'SourceNotReady'
            status.message = f'source {source.key} failed: {source.message}'
            return status
        if source.state is not State.LANDED:
            status.detail = f'waiting for {source.key}'
            return status
        reconciling = objects.condition(obj, 'Reconciling')
        status.detail = str(reconciling.get('message')) if reconciling and reconciling.get('status') == 'True' \
            else 'waiting for Flux to apply the commit'
        return status

    def _dependency_wait(self, status: Status, obj: Obj, key: ObjectKey, kind: str, reason: str,
                         message: str) -> Status:
        for namespace, name in objects.depends_on(obj):
            dependency_key = ObjectKey(key.cluster, kind, namespace, name)
            dependency = self._statuses.get(dependency_key)
            failed = dependency is not None and dependency.state in (State.FAILED, State.BLOCKED)
            if dependency is None:
                entry = self._objects.get(dependency_key)
                failed = entry is not None and self._failure_of(entry.obj) is not None
            if failed:
                status.state, status.reason = State.BLOCKED, reason
                status.message = f'{message} ({dependency_key} failed)'
                return status
        status.detail = message or 'waiting for dependencies'
        return status

    # helm releases ------------------------------------------------------------------------------------

    def _assess_helmrelease(self, key: ObjectKey, obj: Obj) -> Status | None:
        chart_key = self._followed_chart(key, obj)
        applier = objects.applied_by(obj)
        applier_status = self._statuses.get(ObjectKey(key.cluster, 'Kustomization', *applier)) if applier else None
        if chart_key is None and applier_status is None:
            return None
        status = Status(key, 'helmrelease', depends_on=tuple(
            ObjectKey(key.cluster, 'HelmRelease', ns, name) for ns, name in objects.depends_on(obj)))
        state = objects.status(obj)
        status.revision = str(state.get('lastAttemptedRevision') or '')
        if objects.suspended(obj):
            status.state, status.detail = State.SUSPENDED, 'suspended: Flux does not release it'
            return status
        if applier_status is not None and applier_status.state is State.LANDED and \
                self._pruned(key, applier_status.key):
            # Its deletion comes on another watch than the Kustomization's status: it may not be here yet.
            status.state, status.reason, status.detail = State.SKIPPED, 'Deleted', 'pruned'
            status.message = f'{key} was pruned: {applier_status.key} no longer applies it'
            return status
        chart_version = None
        if chart_key is not None:
            chart = self._objects.get(chart_key)
            chart_status = objects.status(chart.obj) if chart else {}
            if not chart or not self._lands(str(chart_status.get('observedSourceArtifactRevision') or '')):
                chart_source = self._source_status_for(key, obj)
                if chart_source is not None and chart_source.state in (State.FAILED, State.BLOCKED):
                    status.state, status.reason = State.BLOCKED, 'SourceNotReady'
                    status.message = f'source {chart_source.key} failed: {chart_source.message}'
                    return status
                chart_failure = self._failure_of(chart.obj) if chart else None
                if chart_failure and chart is not None and key in self._fresh:
                    status.state, status.reason, status.message = State.FAILED, *chart_failure
                    return status
                status.detail = f'waiting for HelmChart {chart_key.namespace}/{chart_key.name}'
                return status
            chart_version = objects.artifact_revision(chart.obj)
        ready = objects.condition(obj, 'Ready') or {}
        reason = str(ready.get('reason', ''))
        current = (not chart_version or status.revision == chart_version) and objects.generation_observed(obj)
        # Its own failure counts once its status is about this commit: the chart it attempted came from the
        # commit, or the Kustomization that applies it has acted on the commit.
        applied = applier_status is None or applier_status.state is State.LANDED or (
            applier_status.state is State.FAILED and applier_status.reason in APPLIED_FAILURES)
        failure = self._release_failure(obj, ready) if current and (chart_version or applied) else None
        if failure is not None:
            status.state, status.reason, status.message = State.FAILED, *failure
            return status
        if applier_status is not None and applier_status.state is not State.LANDED and \
                not (applier_status.state is State.FAILED and applier_status.reason in APPLIED_FAILURES):
            # Its spec may change in this commit too: wait until the Kustomization has applied it. (A Kustomization
            # that failed after applying, e.g. its health check, did apply it: the release is judged on its own.)
            if applier_status.state in (State.FAILED, State.BLOCKED):
                status.state, status.reason = State.BLOCKED, 'DependencyNotReady'
                status.message = f'{applier_status.key} did not apply: {applier_status.reason}'
            else:
                status.detail = f'waiting for {applier_status.key}'
            return status
        if ready.get('status') == 'True' and current:
            status.state, status.detail = State.LANDED, 'released'
            history = state.get('history') or []
            if history and isinstance(history[0], dict):
                status.revision = str(history[0].get('chartVersion') or status.revision)
            return status
        if reason == 'DependencyNotReady':
            return self._dependency_wait(status, obj, key, 'HelmRelease', reason, str(ready.get('message', '')))
        reconciling = objects.condition(obj, 'Reconciling')
        status.detail = str(reconciling.get('message')) if reconciling and reconciling.get('status') == 'True' \
            else 'waiting for helm-controller'
        return status

    def _pruned(self, key: ObjectKey, applier: ObjectKey) -> bool:
        """Has the Kustomization that applied this object left it out of its inventory (pruned it)?"""
        entry = self._objects.get(applier)
        inventory = objects.status(entry.obj).get('inventory') if entry else None
        if entry is None or not isinstance(inventory, dict) or not isinstance(inventory.get('entries'), list):
            return False  # no inventory to tell
        applied = {(kind, namespace, name) for _, kind, namespace, name in objects.inventory_refs(entry.obj)}
        return (key.kind, key.namespace, key.name) not in applied

    @staticmethod
    def _release_failure(obj: Obj, ready: Obj) -> tuple[str, str] | None:
        """(reason, message) when the release failed: stalled, or Ready=False for a reason that is no wait."""
        stalled = objects.condition(obj, 'Stalled')
        if stalled and stalled.get('status') == 'True':
            return (str(ready.get('reason') or stalled.get('reason', '')),
                    str(ready.get('message') or stalled.get('message', '')))
        if ready.get('status') == 'False' and ready.get('reason') not in HELM_WAITS:
            return str(ready.get('reason', '')), str(ready.get('message', ''))
        return None

    def _followed_chart(self, key: ObjectKey, obj: Obj) -> ObjectKey | None:
        ref = objects.chart_source_ref(obj)
        chart = objects.helm_chart_name(obj)
        if ref is None or chart is None:
            return None
        source = self._statuses.get(ObjectKey(key.cluster, *ref))
        if source is None:
            return None
        return ObjectKey(key.cluster, 'HelmChart', *chart)

    def _note_once(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)


def _visible(status: Status) -> tuple[object, ...]:
    return (status.state, status.revision, status.reason, status.message, status.detail, status.unchanged,
            status.preexisting)


def _dependency_order(statuses: list[Status]) -> list[Status]:
    """Sources first; then resources so that each comes after what it depends on (stable by name)."""
    by_key = {status.key: status for status in statuses}
    ordered: list[Status] = []
    placed: set[ObjectKey] = set()

    def place(status: Status, trail: frozenset[ObjectKey]) -> None:
        if status.key in placed or status.key in trail:
            return
        for dependency in status.depends_on:
            if dependency in by_key:
                place(by_key[dependency], trail | {status.key})
        placed.add(status.key)
        ordered.append(status)

    role_rank = {'source': 0, 'kustomization': 1, 'helmrelease': 2}
    for status in sorted(statuses, key=lambda s: (role_rank.get(s.role, 3), s.key)):
        place(status, frozenset())
    return ordered

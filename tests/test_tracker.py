"""The landing state machine, fed hand-written Flux objects: no server, no git."""
from __future__ import annotations

from typing import Any

import pytest

from flux_monitor_hook.objects import ObjectKey
from flux_monitor_hook.tracker import State
from flux_monitor_hook.tracker import Target
from flux_monitor_hook.tracker import Tracker

OLD = 'a' * 40
NEW = 'b' * 40
NEWER = 'c' * 40
URL = 'https://github.com/org/fleet'
CLUSTER = 'staging'


def ancestry(commit: str) -> bool | None:
    """NEW is contained in NEWER (a later commit); OLD is not; anything else is unknown."""
    return {NEW: True, NEWER: True, OLD: False}.get(commit)


def condition(kind: str, status: str, reason: str = '', message: str = '') -> dict[str, Any]:
    return {'type': kind, 'status': status, 'reason': reason, 'message': message}


def git_repository(sha: str, *, url: str = URL, ref: dict | None = None, conditions: list | None = None,
                   name: str = 'flux-system') -> dict[str, Any]:
    return {
        'apiVersion': 'source.toolkit.fluxcd.io/v1', 'kind': 'GitRepository',
        'metadata': {'name': name, 'namespace': 'flux-system', 'generation': 1},
        'spec': {'url': url, 'ref': ref if ref is not None else {'branch': 'main'}},
        'status': {'artifact': {'revision': f'main@sha1:{sha}'}, 'observedGeneration': 1,
                   'conditions': conditions or [condition('Ready', 'True', 'Succeeded')]},
    }


def kustomization(name: str, *, applied: str = OLD, attempted: str | None = None, ready: str = 'True',
                  reason: str = 'ReconciliationSucceeded', message: str = '', generation: int = 1,
                  observed: int = 1, depends_on: list[str] | None = None, suspend: bool = False,
                  extra_conditions: list | None = None, source: str = 'flux-system') -> dict[str, Any]:
    return {
        'apiVersion': 'kustomize.toolkit.fluxcd.io/v1', 'kind': 'Kustomization',
        'metadata': {'name': name, 'namespace': 'flux-system', 'generation': generation},
        'spec': {'sourceRef': {'kind': 'GitRepository', 'name': source}, 'suspend': suspend,
                 'dependsOn': [{'name': d} for d in depends_on or []]},
        'status': {
            'lastAppliedRevision': f'main@sha1:{applied}',
            'lastAttemptedRevision': f'main@sha1:{attempted or applied}',
            'observedGeneration': observed,
            'conditions': [condition('Ready', ready, reason, message), *(extra_conditions or [])],
        },
    }


def tracker() -> Tracker:
    return Tracker(Target(sha=NEW, repository='git@github.com:org/fleet.git', branch='main'), ancestry)


def state(t: Tracker, kind: str, name: str) -> State:
    return next(s.state for s in t.statuses() if s.key == ObjectKey(CLUSTER, kind, 'flux-system', name))


def status_of(t: Tracker, kind: str, name: str):
    return next(s for s in t.statuses() if s.key == ObjectKey(CLUSTER, kind, 'flux-system', name))


def test_source_matching_by_normalised_url_and_branch() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(OLD), 0)
    t.observe(CLUSTER, 'ADDED', git_repository(OLD, url='https://github.com/org/other', name='other'), 0)
    t.observe(CLUSTER, 'ADDED', git_repository(OLD, ref={'branch': 'dev'}, name='dev'), 0)
    t.observe(CLUSTER, 'ADDED', git_repository(OLD, ref={'name': 'refs/heads/main'}, name='by-name'), 0)
    t.observe(CLUSTER, 'ADDED', git_repository(OLD, ref={}, name='no-ref'), 0)
    assert sorted(s.key.name for s in t.sources()) == ['by-name', 'flux-system']


def test_no_ref_means_master() -> None:
    t = Tracker(Target(sha=NEW, repository=URL, branch='master'), ancestry)
    t.observe(CLUSTER, 'ADDED', git_repository(OLD, ref={}, name='no-ref'), 0)
    assert [s.key.name for s in t.sources()] == ['no-ref']


def test_happy_path_source_then_kustomization() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(OLD), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps'), 0)
    assert state(t, 'GitRepository', 'flux-system') is State.PENDING
    assert state(t, 'Kustomization', 'apps') is State.PENDING
    assert t.verdict() is None
    transitions = t.observe(CLUSTER, 'MODIFIED', git_repository(NEW), 1.0)
    assert (transitions[0].status.key.kind, transitions[0].status.state) == ('GitRepository', State.LANDED)
    t.observe(CLUSTER, 'MODIFIED', kustomization('apps', applied=NEW), 2.5)
    apps = status_of(t, 'Kustomization', 'apps')
    assert apps.state is State.LANDED and apps.duration == 2.5
    assert t.verdict() == 'succeeded'


def test_a_descendant_counts_as_landed_and_unknown_ancestry_does_not() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEWER), 0)
    assert state(t, 'GitRepository', 'flux-system') is State.LANDED
    t2 = tracker()
    t2.observe(CLUSTER, 'ADDED', git_repository('d' * 40), 0)
    assert state(t2, 'GitRepository', 'flux-system') is State.PENDING
    assert t2.notes and 'only the exact commit counts' in t2.notes[0]


def test_observed_generation_and_health_gate_landing() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps', applied=NEW, generation=2, observed=1), 0)
    assert state(t, 'Kustomization', 'apps') is State.PENDING
    t.observe(CLUSTER, 'MODIFIED', kustomization('apps', applied=NEW, extra_conditions=[
        condition('Healthy', 'False', 'HealthCheckFailed')]), 0)
    assert state(t, 'Kustomization', 'apps') is State.PENDING


def test_failure_for_the_attempted_revision() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    message = 'Deployment/apps/web dry-run failed (Invalid): field is immutable'
    t.observe(CLUSTER, 'ADDED', kustomization('apps', applied=OLD, attempted=NEW, ready='False',
                                              reason='ReconciliationFailed', message=message), 1)
    apps = status_of(t, 'Kustomization', 'apps')
    assert apps.state is State.FAILED and apps.reason == 'ReconciliationFailed' and apps.message == message
    assert t.verdict() == 'failed'


def test_a_failure_on_the_old_revision_is_still_pending() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps', applied=OLD, attempted=OLD, ready='False',
                                              reason='BuildFailed', message='old breakage'), 1)
    assert state(t, 'Kustomization', 'apps') is State.PENDING


def test_preexisting_failure_is_flagged() -> None:
    t = tracker()
    broken = 'kustomize build failed: missing.yaml: no such file or directory'
    t.observe(CLUSTER, 'ADDED', git_repository(OLD), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps', applied=OLD, attempted=OLD, ready='False',
                                              reason='BuildFailed', message=broken), 0)
    t.observe(CLUSTER, 'MODIFIED', git_repository(NEW), 1)
    t.observe(CLUSTER, 'MODIFIED', kustomization('apps', applied=OLD, attempted=NEW, ready='False',
                                                 reason='BuildFailed', message=broken), 2)
    apps = status_of(t, 'Kustomization', 'apps')
    assert apps.state is State.FAILED and apps.preexisting


def test_new_failure_is_not_preexisting() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(OLD), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps'), 0)
    t.observe(CLUSTER, 'MODIFIED', git_repository(NEW), 1)
    t.observe(CLUSTER, 'MODIFIED', kustomization('apps', attempted=NEW, ready='False', reason='BuildFailed',
                                                 message='new breakage'), 2)
    assert not status_of(t, 'Kustomization', 'apps').preexisting


def test_dependency_wait_then_blocked_by_failure() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('infra', applied=OLD), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps', ready='False', reason='DependencyNotReady',
                                              message="dependency 'flux-system/infra' is not ready",
                                              depends_on=['infra']), 0)
    apps = status_of(t, 'Kustomization', 'apps')
    assert apps.state is State.PENDING and 'infra' in apps.detail
    t.observe(CLUSTER, 'MODIFIED', kustomization('infra', attempted=NEW, ready='False', reason='BuildFailed',
                                                 message='boom'), 1)
    assert state(t, 'Kustomization', 'apps') is State.BLOCKED
    assert t.verdict() == 'failed'


def test_failed_source_blocks_its_kustomizations() -> None:
    t = tracker()
    failing = [condition('Ready', 'False', 'AuthenticationFailed', "failed to get secret 'flux-system/x'"),
               condition('FetchFailed', 'True', 'AuthenticationFailed', '')]
    t.observe(CLUSTER, 'ADDED', git_repository(OLD, conditions=failing), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps'), 0)
    assert state(t, 'GitRepository', 'flux-system') is State.FAILED
    assert state(t, 'Kustomization', 'apps') is State.BLOCKED
    assert t.verdict() == 'failed'


def test_suspended_is_reported_not_waited_for() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('frozen', suspend=True), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps', applied=NEW), 0)
    assert state(t, 'Kustomization', 'frozen') is State.SUSPENDED
    assert t.verdict() == 'succeeded'


def test_fail_fast_decides_at_the_first_failure() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('slow'), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps', attempted=NEW, ready='False', reason='HealthCheckFailed',
                                              message='timeout'), 0)
    assert t.verdict() is None
    assert t.verdict(fail_fast=True) == 'failed'


def test_deleted_kustomization_is_skipped() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('old-app'), 0)
    t.observe(CLUSTER, 'DELETED', kustomization('old-app'), 1)
    assert state(t, 'Kustomization', 'old-app') is State.SKIPPED
    assert t.verdict() == 'succeeded'


def test_kustomizations_of_other_sources_are_not_followed() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('tenant', source='other-repo'), 0)
    assert [s.key.name for s in t.resources()] == []


def test_dependency_order_puts_dependencies_first() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps', depends_on=['infra-configs']), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('infra-configs', depends_on=['infra-controllers']), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('infra-controllers'), 0)
    assert [s.key.name for s in t.resources()] == ['infra-controllers', 'infra-configs', 'apps']


# -- HelmReleases --------------------------------------------------------------------------------------

def helm_chart(source_revision: str, version: str) -> dict[str, Any]:
    return {'apiVersion': 'source.toolkit.fluxcd.io/v1', 'kind': 'HelmChart',
            'metadata': {'name': 'apps-web', 'namespace': 'flux-system', 'generation': 1},
            'spec': {'sourceRef': {'kind': 'GitRepository', 'name': 'flux-system'}},
            'status': {'observedSourceArtifactRevision': f'main@sha1:{source_revision}',
                       'artifact': {'revision': version}, 'observedGeneration': 1,
                       'conditions': [condition('Ready', 'True', 'ChartPackageSucceeded')]}}


def helm_release(attempted: str, *, ready: str = 'True', reason: str = 'UpgradeSucceeded', message: str = '',
                 stalled: bool = False) -> dict[str, Any]:
    conditions = [condition('Ready', ready, reason, message)]
    if stalled:
        conditions.insert(0, condition('Stalled', 'True', 'RetriesExceeded', 'Failed to upgrade after 1 attempt(s)'))
    return {'apiVersion': 'helm.toolkit.fluxcd.io/v2', 'kind': 'HelmRelease',
            'metadata': {'name': 'web', 'namespace': 'apps', 'generation': 1},
            'spec': {'chart': {'spec': {'chart': './charts/web', 'sourceRef': {
                'kind': 'GitRepository', 'name': 'flux-system', 'namespace': 'flux-system'}}}},
            'status': {'lastAttemptedRevision': attempted, 'observedGeneration': 1, 'conditions': conditions,
                       'history': [{'chartVersion': attempted, 'status': 'deployed'}]}}


def hr_state(t: Tracker) -> State:
    return next(s.state for s in t.statuses() if s.key.kind == 'HelmRelease')


def test_helm_release_follows_its_chart_from_the_source() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', helm_chart(OLD, '1.0.0+aaaaaaaaaaaa'), 0)
    t.observe(CLUSTER, 'ADDED', helm_release('1.0.0+aaaaaaaaaaaa'), 0)
    assert hr_state(t) is State.PENDING
    t.observe(CLUSTER, 'MODIFIED', helm_chart(NEW, '1.0.0+bbbbbbbbbbbb'), 1)
    assert hr_state(t) is State.PENDING, 'the release still shows the old chart'
    t.observe(CLUSTER, 'MODIFIED', helm_release('1.0.0+bbbbbbbbbbbb'), 2)
    assert hr_state(t) is State.LANDED
    assert t.verdict() == 'succeeded'


@pytest.mark.parametrize('stalled', [True, False])
def test_helm_release_failure_on_the_new_chart(stalled: bool) -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', helm_chart(NEW, '1.0.0+bbbbbbbbbbbb'), 0)
    t.observe(CLUSTER, 'ADDED', helm_release('1.0.0+bbbbbbbbbbbb', ready='False', reason='UpgradeFailed',
                                             message='Helm upgrade failed for release apps/web', stalled=stalled), 1)
    release = next(s for s in t.statuses() if s.key.kind == 'HelmRelease')
    assert release.state is State.FAILED and release.reason == 'UpgradeFailed'


def test_external_artifact_unchanged_content_counts_as_landed() -> None:
    """Flux 2.7: the ExternalArtifact keeps its revision when its content did not change, only its origin
    moves, and kustomize-controller does not re-apply."""
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', {
        'apiVersion': 'source.extensions.fluxcd.io/v1beta1', 'kind': 'ArtifactGenerator',
        'metadata': {'name': 'gen', 'namespace': 'flux-system'},
        'spec': {'sources': [{'alias': 'repo', 'kind': 'GitRepository', 'name': 'flux-system'}]}}, 0)
    t.observe(CLUSTER, 'ADDED', {
        'apiVersion': 'source.toolkit.fluxcd.io/v1', 'kind': 'ExternalArtifact',
        'metadata': {'name': 'app', 'namespace': 'flux-system'},
        'spec': {'sourceRef': {'kind': 'ArtifactGenerator', 'name': 'gen'}},
        'status': {'artifact': {'revision': 'latest@sha256:1234', 'metadata': {
            'org.opencontainers.image.revision': f'main@sha1:{NEW}'}}}}, 0)
    ks = kustomization('app')
    ks['spec']['sourceRef'] = {'kind': 'ExternalArtifact', 'name': 'app'}
    ks['status']['lastAppliedRevision'] = 'latest@sha256:1234'
    ks['status']['lastAppliedOriginRevision'] = f'main@sha1:{OLD}'
    t.observe(CLUSTER, 'ADDED', ks, 0)
    app = status_of(t, 'Kustomization', 'app')
    assert app.state is State.LANDED and app.unchanged
    assert t.verdict() == 'succeeded'


def test_explicit_sources_skip_url_matching() -> None:
    t = Tracker(Target(sha=NEW, repository='', explicit_sources=(('GitRepository', 'flux-system', 'other'),)),
                ancestry)
    t.observe(CLUSTER, 'ADDED', git_repository(NEW, url='https://example.com/x', name='other'), 0)
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    assert [s.key.name for s in t.sources()] == ['other']

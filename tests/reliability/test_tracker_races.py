"""Orderings the fault scenarios can produce but not force, replayed into the tracker: events of different kinds
come on different watches, and Flux keeps reconciling what has landed."""
from __future__ import annotations

from typing import Any

from flux_monitor_hook.tracker import State
from tests.test_tracker import CLUSTER
from tests.test_tracker import NEW
from tests.test_tracker import OLD
from tests.test_tracker import condition
from tests.test_tracker import git_repository
from tests.test_tracker import kustomization
from tests.test_tracker import state
from tests.test_tracker import tracker


def helm_release(name: str = 'frontend') -> dict[str, Any]:
    """A release applied by the Kustomization apps, Ready at its generation (it has nothing of its own to do)."""
    return {
        'apiVersion': 'helm.toolkit.fluxcd.io/v2', 'kind': 'HelmRelease',
        'metadata': {'name': name, 'namespace': 'flux-system', 'generation': 1,
                     'labels': {'kustomize.toolkit.fluxcd.io/name': 'apps',
                                'kustomize.toolkit.fluxcd.io/namespace': 'flux-system'}},
        'spec': {'chartRef': {'kind': 'OCIRepository', 'name': 'charts'}},
        'status': {'observedGeneration': 1, 'conditions': [condition('Ready', 'True', 'UpgradeSucceeded')]},
    }


def with_inventory(obj: dict[str, Any], *releases: str) -> dict[str, Any]:
    obj['status']['inventory'] = {'entries': [
        {'id': f'flux-system_{name}_helm.toolkit.fluxcd.io_HelmRelease', 'v': 'v2'} for name in releases]}
    return obj


def test_a_landed_kustomization_stays_landed_while_flux_reconciles_it_again() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps'), 0)
    landed = t.observe(CLUSTER, 'MODIFIED', kustomization('apps', applied=NEW), 1)
    assert [tr.status.state for tr in landed] == [State.LANDED]

    # The interval re-sync: Ready=Unknown with Reconciling=True, then Ready=True again.
    resync = t.observe(CLUSTER, 'MODIFIED', kustomization('apps', applied=NEW, ready='Unknown', reason='Progressing',
                                                          extra_conditions=[condition('Reconciling', 'True')]), 2)
    again = t.observe(CLUSTER, 'MODIFIED', kustomization('apps', applied=NEW), 3)

    assert resync == [] and again == []  # nothing to report: it had landed
    assert state(t, 'Kustomization', 'apps') is State.LANDED


def test_a_release_pruned_by_the_change_is_not_landed_when_its_deletion_comes_late() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', with_inventory(kustomization('apps'), 'frontend', 'backend'), 0)
    t.observe(CLUSTER, 'ADDED', helm_release('frontend'), 0)
    t.observe(CLUSTER, 'ADDED', helm_release('backend'), 0)
    assert state(t, 'HelmRelease', 'frontend') is State.PENDING

    # apps applied the commit, which removed frontend: its status comes before frontend's DELETED event.
    t.observe(CLUSTER, 'MODIFIED', with_inventory(kustomization('apps', applied=NEW), 'backend'), 1)

    assert state(t, 'HelmRelease', 'backend') is State.LANDED
    assert state(t, 'HelmRelease', 'frontend') is State.SKIPPED
    t.observe(CLUSTER, 'DELETED', helm_release('frontend'), 2)
    assert state(t, 'HelmRelease', 'frontend') is State.SKIPPED
    assert t.verdict() == 'succeeded'


def test_without_an_inventory_nothing_is_taken_as_pruned() -> None:
    t = tracker()
    t.observe(CLUSTER, 'ADDED', git_repository(NEW), 0)
    t.observe(CLUSTER, 'ADDED', kustomization('apps', applied=OLD), 0)
    t.observe(CLUSTER, 'ADDED', helm_release('frontend'), 0)
    t.observe(CLUSTER, 'MODIFIED', kustomization('apps', applied=NEW), 1)
    assert state(t, 'HelmRelease', 'frontend') is State.LANDED

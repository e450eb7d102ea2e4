"""The simulated Flux controllers against real git: what a cluster would report after each push.

Every test builds a fleet repository in tmp_path, serves its bare clone to a sandbox (bootstrapped like
`flux bootstrap`: GitRepository and Kustomization `flux-system/flux-system` on `clusters/test`) and pushes new
commits with `git push`. Expected values come from ../shared/flux-status-reference.md.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from kubernetes import client

from tests.sandbox import gitutil
from tests.sandbox.fleet import AG
from tests.sandbox.fleet import GIT
from tests.sandbox.fleet import HR
from tests.sandbox.fleet import KS
from tests.sandbox.fleet import Cluster
from tests.sandbox.fleet import Fleet
from tests.sandbox.fleet import condition
from tests.sandbox.fleet import configmap
from tests.sandbox.fleet import deployment
from tests.sandbox.fleet import git_repository
from tests.sandbox.fleet import kustomization
from tests.sandbox.fleet import manifests
from tests.sandbox.fleet import reason
from tests.sandbox.fleet import running
from tests.sandbox.fleet import status
from tests.sandbox.fleet import wait_for
from tests.sandbox.kube import api_client

CLUSTER = 'clusters/test'


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet.create(tmp_path, {f'{CLUSTER}/config.yaml': manifests(configmap('settings', colour='blue')),
                                   'README.md': 'fleet\n'})


def _git_ready(cluster: Cluster, name: str) -> dict:
    return cluster.wait_ready_reason(lambda: cluster.git(name), 'True/Succeeded', f'GitRepository {name}')


# -- GitRepository -------------------------------------------------------------------------------------

def test_git_repository_revision_forms(fleet: Fleet) -> None:
    first = fleet.head
    gitutil.tag(fleet.work, 'v1.0.0')
    second = fleet.push('second', {'README.md': 'second\n'})
    gitutil.tag(fleet.work, 'v1.1.0', message='release 1.1.0')  # annotated: peeled to the commit
    fleet.push('third', {'README.md': 'third\n'}, 'HEAD:refs/heads/main', '--tags')
    third = fleet.head
    forms = {
        'branch': ({'branch': 'main'}, f'main@sha1:{third}'),
        'tag': ({'tag': 'v1.0.0'}, f'v1.0.0@sha1:{first}'),
        'semver': ({'semver': '>=1.0.0 <2.0.0'}, f'v1.1.0@sha1:{second}'),
        'name': ({'name': 'refs/heads/main'}, f'refs/heads/main@sha1:{third}'),
        'commit': ({'commit': first}, f'sha1:{first}'),
        'branch-commit': ({'branch': 'main', 'commit': second}, f'main@sha1:{second}'),
    }
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        for name, (ref, _) in forms.items():
            cluster.sb.apply(git_repository(name, fleet.bare, ref))
        for name, (_, revision) in forms.items():
            obj = _git_ready(cluster, name)
            artifact = status(obj)['artifact']
            assert artifact['revision'] == revision, name
            assert reason(obj, 'ArtifactInStorage') == 'True/Succeeded'
            assert condition(obj)['message'] == f"stored artifact for revision '{revision}'"
            assert status(obj)['observedGeneration'] == obj['metadata']['generation']
            assert artifact['digest'].startswith('sha256:') and artifact['url'].startswith('http://source-controller.')
            assert 'finalizers.fluxcd.io' in obj['metadata']['finalizers']


def test_missing_branch_keeps_the_last_good_artifact(fleet: Fleet) -> None:
    fleet.push('feature work', {'README.md': 'feature\n'}, 'HEAD:refs/heads/feature')
    feature = fleet.head
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        cluster.sb.apply(git_repository('feature', fleet.bare, {'branch': 'feature'}))
        good = _git_ready(cluster, 'feature')
        assert status(good)['artifact']['revision'] == f'feature@sha1:{feature}'
        gitutil.git(fleet.work, 'push', '--quiet', 'origin', ':refs/heads/feature')
        cluster.fetch('feature')
        failed = cluster.wait_ready_reason(lambda: cluster.git('feature'), 'False/GitOperationFailed', 'feature')
        message = condition(failed)['message']
        assert message == ("failed to checkout and determine revision: unable to clone "
                           f"'{fleet.bare}': couldn't find remote ref \"refs/heads/feature\"")
        assert condition(failed, 'FetchFailed') == {**condition(failed, 'FetchFailed'), 'status': 'True',
                                                    'reason': 'GitOperationFailed', 'message': message}
        assert status(failed)['artifact']['revision'] == f'feature@sha1:{feature}', 'the last good artifact stays'
        assert reason(failed, 'ArtifactInStorage') == 'True/Succeeded'
        assert status(failed)['lastHandledReconcileAt']
        warnings = [e for e in cluster.events('GitRepository', 'feature') if e['type'] == 'Warning']
        assert [e['reason'] for e in warnings] == ['GitOperationFailed']


def test_a_network_url_is_unreachable(fleet: Fleet) -> None:
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        cluster.sb.apply(git_repository('remote', 'https://github.com/example/fleet', {'branch': 'main'}))
        failed = cluster.wait_ready_reason(lambda: cluster.git('remote'), 'False/GitOperationFailed', 'remote')
        assert condition(failed)['message'] == (
            "failed to checkout and determine revision: unable to clone 'https://github.com/example/fleet': "
            'Get "https://github.com/example/fleet/info/refs?service=git-upload-pack": dial tcp: lookup github.com: '
            'no such host')
        assert 'artifact' not in status(failed)
        assert 'observedGeneration' not in status(failed), 'observedGeneration moves only on Ready or Stalled'


def test_credentials_missing_or_rejected(fleet: Fleet) -> None:
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        cluster.sb.apply(git_repository('no-secret', fleet.bare, {'branch': 'main'}, secretRef={'name': 'auth'}))
        missing = cluster.wait_ready_reason(lambda: cluster.git('no-secret'), 'False/AuthenticationFailed', 'secret')
        expected = "failed to get secret 'flux-system/auth': secrets \"auth\" not found"
        assert condition(missing)['message'] == expected
        assert reason(missing, 'FetchFailed') == 'True/AuthenticationFailed'
        cluster.sb.apply({'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
                          'metadata': {'name': 'bad-auth', 'namespace': 'flux-system',
                                       'annotations': {'sandbox.flux-monitor.io/reject-credentials': 'true'}},
                          'data': {'username': 'Z2l0', 'password': 'bm9wZQ=='}})
        cluster.sb.apply(git_repository('rejected', fleet.bare, {'branch': 'main'}, secretRef={'name': 'bad-auth'}))
        rejected = cluster.wait_ready_reason(lambda: cluster.git('rejected'), 'False/GitOperationFailed', 'rejected')
        assert condition(rejected)['message'] == ("failed to checkout and determine revision: unable to clone "
                                                  f"'{fleet.bare}': authentication required")
        # A good Secret (the same repository) fetches.
        cluster.sb.apply({'apiVersion': 'v1', 'kind': 'Secret', 'data': {'username': 'Z2l0'},
                          'metadata': {'name': 'auth', 'namespace': 'flux-system'}})
        cluster.fetch('no-secret')
        _git_ready(cluster, 'no-secret')  # once the Secret exists


def test_requested_at_fetches_at_once_and_is_acknowledged(fleet: Fleet) -> None:
    with running(repo=fleet.bare, cluster_path=CLUSTER, git_interval='24h') as cluster:
        cluster.wait_applied(fleet.revision())
        before = fleet.revision()
        pushed = fleet.push('change the colour', {f'{CLUSTER}/config.yaml': manifests(configmap('settings',
                                                                                               colour='red'))})
        cluster.sb.wait_idle()
        assert status(cluster.git())['artifact']['revision'] == before, 'no poll within a 24h interval'
        # Through the official client, as `flux reconcile source git` does.
        custom = client.CustomObjectsApi(api_client(cluster.sb))
        token = '2026-07-30T10:02:03.918273645Z'
        custom.patch_namespaced_custom_object('source.toolkit.fluxcd.io', 'v1', 'flux-system', 'gitrepositories',
                                              'flux-system', {'metadata': {'annotations': {
                                                  'reconcile.fluxcd.io/requestedAt': token}}})
        fetched = wait_for(lambda: (obj := cluster.git()) and status(obj).get('lastHandledReconcileAt') == token
                           and obj, 'lastHandledReconcileAt')
        assert status(fetched)['artifact']['revision'] == f'main@sha1:{pushed}'
        applied = cluster.wait_applied(f'main@sha1:{pushed}')
        assert 'lastHandledReconcileAt' not in status(applied), 'only the annotated object acknowledges'
        settings = cluster.sb.get('v1', 'ConfigMap', 'default', 'settings')
        assert settings['data'] == {'colour': 'red'}


# -- Kustomization: a push, step by step ---------------------------------------------------------------

def test_kustomization_status_after_a_push(fleet: Fleet) -> None:
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        first = fleet.revision()
        cluster.wait_applied(first)
        since = cluster.sb.store.resource_version
        pushed = fleet.push('add an app', {f'{CLUSTER}/config.yaml': manifests(
            configmap('settings', colour='red'),
            {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'apps'}},
            deployment('web', 'apps'),
            {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRole', 'metadata': {'name': 'reader'},
             'rules': []})})
        second = f'main@sha1:{pushed}'
        cluster.fetch()
        applied = cluster.wait_applied(second)
        state = status(applied)
        assert state['lastAttemptedRevision'] == second
        assert state['observedGeneration'] == applied['metadata']['generation']
        assert [c['type'] for c in state['conditions']] == ['Ready'], 'Reconciling is gone once Ready'
        assert condition(applied)['message'] == f'Applied revision: {second}'
        assert {entry['id'] for entry in state['inventory']['entries']} == {
            '_reader_rbac.authorization.k8s.io_ClusterRole', '_apps__Namespace', 'apps_web_apps_Deployment',
            'default_settings__ConfigMap'}
        assert {entry['v'] for entry in state['inventory']['entries']} == {'v1'}
        assert [entry['metadata']['revision'] for entry in state['history']] == [second, first]
        assert state['history'][0]['lastReconciledStatus'] == 'ReconciliationSucceeded'
        assert state['history'][0]['totalReconciliations'] == 1
        assert cluster.sb.get('apps/v1', 'Deployment', 'apps', 'web')['metadata']['labels'] == {
            'kustomize.toolkit.fluxcd.io/name': 'flux-system', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system'}

        # What a watcher saw in between: the progress messages in order, Reconciling before Ready, and
        # lastAttemptedRevision moving before the build while lastAppliedRevision waits for the end.
        steps = [change.obj for change in cluster.sb.store.changes_after(since)
                 if change.obj['kind'] == 'Kustomization' and condition(change.obj, 'Reconciling')]
        messages = [condition(obj, 'Reconciling')['message'] for obj in steps]
        assert [m.split(' for revision ')[0] for m in messages] == ['Fetching manifests', 'Building manifests',
                                                                   'Detecting drift']
        assert all(m.endswith(f'{second} with a timeout of 9m30s') for m in messages)
        for obj in steps:
            assert [c['type'] for c in status(obj)['conditions']] == ['Reconciling', 'Ready']
            assert condition(obj)['status'] == 'Unknown' and condition(obj)['message'] == 'Reconciliation in progress'
            assert status(obj)['lastAppliedRevision'] == first
        assert status(steps[0])['lastAttemptedRevision'] == first
        assert status(steps[1])['lastAttemptedRevision'] == second

        events = cluster.events('Kustomization', 'flux-system')
        change_set = [e for e in events if e['reason'] == 'Progressing'
                      and e['metadata']['annotations']['kustomize.toolkit.fluxcd.io/revision'] == second]
        assert len(change_set) == 1
        assert change_set[0]['message'].splitlines() == [
            'Namespace/apps created', 'ClusterRole/reader created', 'ConfigMap/default/settings configured',
            'Deployment/apps/web created']

        # A commit that changes nothing under the path still lands (no path-level skipping) but builds the
        # same manifests: history counts it under the same digest and no change set is sent.
        pushed = fleet.push('docs only', {'README.md': 'only docs\n'})
        third = f'main@sha1:{pushed}'
        cluster.fetch()
        state = status(cluster.wait_applied(third))
        assert len(state['history']) == 2
        assert state['history'][0]['metadata']['revision'] == third
        assert state['history'][0]['totalReconciliations'] == 2
        assert not [e for e in cluster.events('Kustomization', 'flux-system') if e['reason'] == 'Progressing'
                    and e['metadata']['annotations']['kustomize.toolkit.fluxcd.io/revision'] == third]


def test_depends_on_gate(tmp_path: Path) -> None:
    fleet = Fleet.create(tmp_path, {
        f'{CLUSTER}/stack.yaml': manifests(kustomization('infra', './infra'),
                                           kustomization('app', './app', dependsOn=[{'name': 'infra'}])),
        'infra/config.yaml': manifests(configmap('infra')),
        'app/config.yaml': manifests(configmap('app')),
    })
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        first = fleet.revision()
        cluster.wait_applied(first, 'infra')
        cluster.wait_applied(first, 'app')
        pushed = fleet.push('break infra', {'infra/kustomization.yaml': 'resources:\n- missing.yaml\n',
                                            'app/config.yaml': manifests(configmap('app', changed='yes'))})
        second = f'main@sha1:{pushed}'
        cluster.fetch()
        infra = cluster.wait_ready_reason(lambda: cluster.ks('infra'), 'False/BuildFailed', 'infra')
        assert status(infra)['lastAttemptedRevision'] == second
        gated = wait_for(lambda: (obj := cluster.ks('app')) and condition(obj) and condition(obj)['message'] ==
                         "dependency 'flux-system/infra' is not ready" and obj, 'app to be gated',
                         describe=lambda: status(cluster.ks('app')))
        assert reason(gated) == 'False/DependencyNotReady'
        assert status(gated)['lastAttemptedRevision'] == first, 'a gate failure moves no revision field'
        assert status(gated)['lastAppliedRevision'] == first
        assert condition(gated, 'Reconciling') is None
        assert cluster.sb.get('v1', 'ConfigMap', 'default', 'app')['data'] == {}
        infos = [e for e in cluster.events('Kustomization', 'app') if e['reason'] == 'DependencyNotReady']
        assert infos and infos[0]['type'] == 'Normal'
        assert infos[0]['message'] == 'Dependencies do not meet ready condition, retrying in 30s'

        pushed = fleet.push('fix infra', {'infra/kustomization.yaml': None})
        cluster.fetch()
        cluster.wait_applied(f'main@sha1:{pushed}', 'infra')
        cluster.wait_applied(f'main@sha1:{pushed}', 'app')
        assert cluster.sb.get('v1', 'ConfigMap', 'default', 'app')['data'] == {'changed': 'yes'}


def test_health_check_timeout_then_recovery(tmp_path: Path) -> None:
    stuck = deployment('web', annotations={'sandbox.flux-monitor.io/rollout': 'never'})
    fleet = Fleet.create(tmp_path, {
        f'{CLUSTER}/web.yaml': manifests(kustomization('web', './web', wait=True, timeout='30s')),
        'web/deployment.yaml': manifests(stuck),
    })
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        first = fleet.revision()
        failed = cluster.wait_ready_reason(lambda: cluster.ks('web'), 'False/HealthCheckFailed', 'web')
        message = condition(failed)['message']
        found = re.fullmatch(r"health check failed after (?:(\d+)m)?(\d+(?:\.\d+)?)s: timeout waiting for: "
                             r"\[Deployment/default/web status: 'InProgress'\]", message)
        assert found, message
        # Sandbox time: at least the 30s timeout (more when a loaded machine wakes the check late).
        assert int(found.group(1) or 0) * 60 + float(found.group(2)) >= 30, message
        assert reason(failed, 'Healthy') == 'False/HealthCheckFailed'
        assert reason(failed, 'Reconciling') == 'True/ProgressingWithRetry'
        assert condition(failed, 'Reconciling')['message'].startswith(f'Running health checks for revision {first}')
        assert [c['type'] for c in status(failed)['conditions']][:2] == ['Reconciling', 'Ready']
        assert status(failed)['lastAttemptedRevision'] == first
        assert 'lastAppliedRevision' not in status(failed)
        assert 'observedGeneration' not in status(failed)
        assert status(failed)['inventory']['entries'] == [{'id': 'default_web_apps_Deployment', 'v': 'v1'}]

        fixed = deployment('web', image='nginx:2')
        pushed = fleet.push('let it roll out', {'web/deployment.yaml': manifests(fixed)})
        cluster.fetch()
        healthy = cluster.wait_applied(f'main@sha1:{pushed}', 'web')
        assert reason(healthy, 'Healthy') == 'True/Succeeded'
        assert condition(healthy, 'Healthy')['message'].startswith('Health check passed in ')
        assert condition(healthy, 'Reconciling') is None


def test_immutable_field_change_fails_the_dry_run_until_forced(tmp_path: Path) -> None:
    fleet = Fleet.create(tmp_path, {f'{CLUSTER}/web.yaml': manifests(deployment('web'))})
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        first = fleet.revision()
        cluster.wait_applied(first)
        uid = cluster.sb.get('apps/v1', 'Deployment', 'default', 'web')['metadata']['uid']
        pushed = fleet.push('new selector', {f'{CLUSTER}/web.yaml': manifests(deployment('web',
                                                                                          labels={'app': 'web2'}))})
        second = f'main@sha1:{pushed}'
        cluster.fetch()
        failed = cluster.wait_ready_reason(lambda: cluster.ks(), 'False/ReconciliationFailed', 'flux-system')
        assert condition(failed)['message'] == (
            'Deployment/default/web dry-run failed (Invalid): Deployment.apps "web" is invalid: spec.selector: '
            'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web2"}, '
            'MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable')
        assert status(failed)['lastAttemptedRevision'] == second
        assert status(failed)['lastAppliedRevision'] == first
        assert condition(failed, 'Reconciling') == {
            **condition(failed, 'Reconciling'), 'status': 'True', 'reason': 'ProgressingWithRetry',
            'message': f'Detecting drift for revision {second} with a timeout of 9m30s'}
        assert cluster.sb.get('apps/v1', 'Deployment', 'default', 'web')['metadata']['uid'] == uid

        forced = deployment('web', labels={'app': 'web2'},
                            annotations={'kustomize.toolkit.fluxcd.io/force': 'enabled'})
        pushed = fleet.push('force it', {f'{CLUSTER}/web.yaml': manifests(forced)})
        cluster.fetch()
        cluster.wait_applied(f'main@sha1:{pushed}')
        recreated = cluster.sb.get('apps/v1', 'Deployment', 'default', 'web')
        assert recreated['spec']['selector'] == {'matchLabels': {'app': 'web2'}}
        assert recreated['metadata']['uid'] != uid, 'force recreates the object'


def test_build_failure_and_missing_path(fleet: Fleet) -> None:
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        first = fleet.revision()
        cluster.wait_applied(first)
        pushed = fleet.push('bad kustomization', {f'{CLUSTER}/kustomization.yaml': 'resources:\n- nowhere.yaml\n'})
        cluster.fetch()
        failed = cluster.wait_ready_reason(lambda: cluster.ks(), 'False/BuildFailed', 'flux-system')
        assert 'nowhere.yaml' in condition(failed)['message']
        assert status(failed)['lastAttemptedRevision'] == f'main@sha1:{pushed}'
        assert status(failed)['lastAppliedRevision'] == first
        assert reason(failed, 'Reconciling') == 'True/ProgressingWithRetry'
        warnings = [e for e in cluster.events('Kustomization', 'flux-system') if e['type'] == 'Warning']
        assert [e['reason'] for e in warnings] == ['BuildFailed']

        cluster.sb.apply(kustomization('lost', './not/there'))
        lost = cluster.wait_ready_reason(lambda: cluster.ks('lost'), 'False/ArtifactFailed', 'lost')
        assert condition(lost)['message'] == 'kustomization path not found: stat not/there: no such file or directory'
        assert 'lastAttemptedRevision' not in status(lost), 'a missing path does not move lastAttemptedRevision'
        assert condition(lost, 'Reconciling') is None

        cluster.sb.apply(kustomization('orphan', './', sourceRef={'kind': 'GitRepository', 'name': 'ghost'},
                                       dependsOn=[{'name': 'nobody'}]))
        orphan = cluster.wait_ready_reason(lambda: cluster.ks('orphan'), 'False/ArtifactFailed', 'orphan')
        assert condition(orphan)['message'] == 'gitrepositories.source.toolkit.fluxcd.io "ghost" not found'
        assert cluster.events('Kustomization', 'orphan') == [], 'a missing source is only logged'
        cluster.sb.apply(git_repository('ghost', fleet.bare, {'branch': 'main'}))
        gated = cluster.wait_ready_reason(lambda: cluster.ks('orphan'), 'False/DependencyNotReady', 'orphan')
        assert condition(gated)['message'] == ("dependency 'flux-system/nobody' not found: "
                                               'kustomizations.kustomize.toolkit.fluxcd.io "nobody" not found')


def test_suspended_kustomization_stays_put(tmp_path: Path) -> None:
    fleet = Fleet.create(tmp_path, {f'{CLUSTER}/stack.yaml': manifests(kustomization('app', './app')),
                                    'app/config.yaml': manifests(configmap('app', version='1'))})
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        first = fleet.revision()
        cluster.wait_applied(first, 'app')
        # `flux suspend ks app`: a merge patch by another field manager than kustomize-controller.
        custom = client.CustomObjectsApi(api_client(cluster.sb))
        custom.patch_namespaced_custom_object('kustomize.toolkit.fluxcd.io', 'v1', 'flux-system', 'kustomizations',
                                              'app', {'spec': {'suspend': True}})
        pushed = fleet.push('version 2', {'app/config.yaml': manifests(configmap('app', version='2'))})
        second = f'main@sha1:{pushed}'
        cluster.fetch()
        cluster.wait_applied(second)  # the parent applies the stack again: suspend is not its field
        cluster.sb.wait_idle()
        app = cluster.ks('app')
        assert app['spec']['suspend'] is True
        assert status(app)['lastAppliedRevision'] == first
        assert cluster.sb.get('v1', 'ConfigMap', 'default', 'app')['data'] == {'version': '1'}

        custom.patch_namespaced_custom_object('kustomize.toolkit.fluxcd.io', 'v1', 'flux-system', 'kustomizations',
                                              'app', {'spec': {'suspend': False}})
        cluster.wait_applied(second, 'app')
        assert cluster.sb.get('v1', 'ConfigMap', 'default', 'app')['data'] == {'version': '2'}


def test_prune_deletes_what_left_the_repository(fleet: Fleet) -> None:
    kept = configmap('kept')
    kept['metadata']['annotations'] = {'kustomize.toolkit.fluxcd.io/prune': 'disabled'}
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        pushed = fleet.push('more config', {f'{CLUSTER}/extra.yaml': manifests(configmap('old'), kept)})
        cluster.fetch()
        cluster.wait_applied(f'main@sha1:{pushed}')
        pushed = fleet.push('drop it', {f'{CLUSTER}/extra.yaml': None})
        cluster.fetch()
        applied = cluster.wait_applied(f'main@sha1:{pushed}')
        assert cluster.sb.store.try_get(cluster.sb.resource_type('v1', 'ConfigMap'), 'default', 'old') is None
        assert cluster.sb.get('v1', 'ConfigMap', 'default', 'kept'), 'prune: disabled keeps the object'
        assert [e['id'] for e in status(applied)['inventory']['entries']] == ['default_settings__ConfigMap']
        pruned = [e for e in cluster.events('Kustomization', 'flux-system') if 'deleted' in e['message']]
        assert [e['message'] for e in pruned] == ['ConfigMap/default/old deleted']


@pytest.mark.parametrize('strict', [True, False], ids=['strict', 'lenient'])
def test_kinds_without_a_crd(tmp_path: Path, strict: bool) -> None:
    widget = {'apiVersion': 'example.com/v1', 'kind': 'Widget', 'metadata': {'name': 'w', 'namespace': 'default'},
              'spec': {'size': 3}}
    fleet = Fleet.create(tmp_path, {f'{CLUSTER}/widget.yaml': manifests(widget)})
    with running(repo=fleet.bare, cluster_path=CLUSTER, strict_kinds=strict) as cluster:
        custom = client.CustomObjectsApi(api_client(cluster.sb))
        if strict:
            failed = cluster.wait_ready_reason(lambda: cluster.ks(), 'False/ReconciliationFailed', 'flux-system')
            assert condition(failed)['message'] == ('Widget/default/w dry-run failed: no matches for kind "Widget" '
                                                    'in version "example.com/v1"')
            with pytest.raises(client.ApiException) as error:
                custom.list_namespaced_custom_object('example.com', 'v1', 'default', 'widgets')
            assert error.value.status == 404
        else:
            cluster.wait_applied(fleet.revision())
            listed = custom.list_namespaced_custom_object('example.com', 'v1', 'default', 'widgets')
            assert [item['spec'] for item in listed['items']] == [{'size': 3}]


# -- HelmRelease -----------------------------------------------------------------------------------------

def _podinfo(values: dict) -> str:
    return manifests(
        {'apiVersion': GIT, 'kind': 'HelmRepository', 'metadata': {'name': 'podinfo', 'namespace': 'default'},
         'spec': {'interval': '5m', 'url': 'https://stefanprodan.github.io/podinfo'}},
        {'apiVersion': HR, 'kind': 'HelmRelease', 'metadata': {'name': 'podinfo', 'namespace': 'default'},
         'spec': {'interval': '5m', 'chart': {'spec': {'chart': 'podinfo', 'version': '6.x',
                                                       'sourceRef': {'kind': 'HelmRepository', 'name': 'podinfo'}}},
                  'values': values}})


def test_helm_release_install_failed_upgrade_and_recovery(tmp_path: Path) -> None:
    fleet = Fleet.create(tmp_path, {f'{CLUSTER}/podinfo.yaml': _podinfo({'replicaCount': 1})})
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        installed = cluster.wait_ready_reason(lambda: cluster.hr('podinfo'), 'True/InstallSucceeded', 'podinfo')
        message = 'Helm install succeeded for release default/podinfo.v1 with chart podinfo@6.0.0'
        assert condition(installed)['message'] == message
        assert reason(installed, 'Released') == 'True/InstallSucceeded'
        state = status(installed)
        assert state['helmChart'] == 'default/default-podinfo'
        chart = cluster.get(GIT, 'HelmChart', 'default-podinfo', 'default')
        assert chart['spec']['chart'] == 'podinfo' and chart['spec']['sourceRef'] == {'kind': 'HelmRepository',
                                                                                      'name': 'podinfo'}
        assert status(chart)['artifact']['revision'] == '6.0.0'
        assert reason(chart) == 'True/ChartPullSucceeded'
        assert [(h['version'], h['status'], h['chartName'], h['chartVersion']) for h in state['history']] == [
            (1, 'deployed', 'podinfo', '6.0.0')]
        assert state['lastAttemptedRevision'] == '6.0.0' and state['lastAttemptedReleaseAction'] == 'install'
        assert state['observedGeneration'] == installed['metadata']['generation']

        pushed = fleet.push('break the upgrade', {f'{CLUSTER}/podinfo.yaml': _podinfo(
            {'replicaCount': 2, 'sandboxFail': 'timed out waiting for the condition'})})
        cluster.fetch()
        cluster.wait_applied(f'main@sha1:{pushed}')
        stalled = wait_for(lambda: (obj := cluster.hr('podinfo')) and reason(obj, 'Stalled') and obj,
                           'podinfo to stall', describe=lambda: status(cluster.hr('podinfo')))
        assert reason(stalled, 'Stalled') == 'True/RetriesExceeded'
        assert condition(stalled, 'Stalled')['message'] == 'Failed to upgrade after 1 attempt(s)'
        failure = ('Helm upgrade failed for release default/podinfo with chart podinfo@6.0.0: '
                   'timed out waiting for the condition')
        assert reason(stalled) == 'False/UpgradeFailed' and condition(stalled)['message'] == failure
        assert reason(stalled, 'Released') == 'False/UpgradeFailed'
        assert [c['type'] for c in status(stalled)['conditions']][:2] == ['Stalled', 'Ready']
        state = status(stalled)
        assert (state['failures'], state['upgradeFailures']) == (1, 1)
        assert state['lastAttemptedReleaseAction'] == 'upgrade'
        assert [(h['version'], h['status']) for h in state['history']] == [(2, 'failed'), (1, 'deployed')]
        assert state['observedGeneration'] == stalled['metadata']['generation'], 'Stalled is terminal'
        warning = [e for e in cluster.events('HelmRelease', 'podinfo', 'default') if e['type'] == 'Warning']
        assert [(e['reason'], e['message']) for e in warning] == [('UpgradeFailed', failure)]
        assert warning[0]['metadata']['annotations']['helm.toolkit.fluxcd.io/revision'] == '6.0.0'

        # Stalled: another reconcile request does not retry.
        cluster.request_reconcile(HR, 'HelmRelease', 'podinfo', 'default')
        cluster.sb.wait_idle()
        assert len(status(cluster.hr('podinfo'))['history']) == 2

        pushed = fleet.push('fix the values', {f'{CLUSTER}/podinfo.yaml': _podinfo({'replicaCount': 2})})
        cluster.fetch()
        fixed = cluster.wait_ready_reason(lambda: cluster.hr('podinfo'), 'True/UpgradeSucceeded', 'podinfo')
        assert condition(fixed)['message'] == ('Helm upgrade succeeded for release default/podinfo.v3 with chart '
                                               'podinfo@6.0.0')
        assert condition(fixed, 'Stalled') is None and 'upgradeFailures' not in status(fixed)
        assert [(h['version'], h['status']) for h in status(fixed)['history']] == [
            (3, 'deployed'), (2, 'failed'), (1, 'superseded')]


def test_helm_chart_from_git_with_revision_strategy(tmp_path: Path) -> None:
    release = {'apiVersion': HR, 'kind': 'HelmRelease', 'metadata': {'name': 'app', 'namespace': 'default'},
               'spec': {'interval': '5m', 'chart': {'spec': {
                   'chart': './charts/app', 'reconcileStrategy': 'Revision',
                   'sourceRef': {'kind': 'GitRepository', 'name': 'flux-system', 'namespace': 'flux-system'}}}}}
    fleet = Fleet.create(tmp_path, {f'{CLUSTER}/app.yaml': manifests(release),
                                    'charts/app/Chart.yaml': 'apiVersion: v2\nname: app\nversion: 0.1.0\n'})
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        for attempt in (1, 2):
            if attempt == 2:
                fleet.push('any commit', {'README.md': 'new\n'})
                cluster.fetch()
            version = f'0.1.0+{fleet.head[:12]}'
            chart = wait_for(lambda v=version: (obj := cluster.get(GIT, 'HelmChart', 'default-app')) and
                             status(obj).get('artifact', {}).get('revision') == v and obj, f'chart {version}')
            assert status(chart)['observedSourceArtifactRevision'] == fleet.revision()
            assert status(chart)['observedChartName'] == 'app'
            assert reason(chart) == 'True/ChartPackageSucceeded'
            released = wait_for(lambda v=version: (obj := cluster.hr('app')) and _released_with(obj, v) and obj,
                                f'release of {version}', describe=lambda: status(cluster.hr('app')))
            assert status(released)['lastAttemptedRevision'] == version
            assert status(released)['helmChart'] == 'flux-system/default-app'
        assert [h['version'] for h in status(released)['history']] == [2, 1]
        assert reason(released) == 'True/UpgradeSucceeded'
        waits = [c.obj for c in cluster.sb.store.changes_after(0) if c.obj['kind'] == 'HelmRelease'
                 and reason(c.obj) == 'False/SourceNotReady']
        # Before its first artifact the chart is not ready: helm-controller waits, without an event.
        assert waits and condition(waits[0])['message'].startswith("HelmChart 'flux-system/default-app' is not ready: ")
        assert not [e for e in cluster.events('HelmRelease', 'app', 'default') if e['type'] == 'Warning']


def _released_with(release: dict, version: str) -> bool:
    history = status(release).get('history') or [{}]
    return history[0].get('chartVersion') == version and reason(release) in ('True/InstallSucceeded',
                                                                             'True/UpgradeSucceeded')


# -- ArtifactGenerator (Flux 2.7) -------------------------------------------------------------------------

def test_artifact_generator_revision_follows_content_not_commits(tmp_path: Path) -> None:
    generator = {'apiVersion': AG, 'kind': 'ArtifactGenerator',
                 'metadata': {'name': 'apps', 'namespace': 'flux-system'},
                 'spec': {'sources': [{'alias': 'fleet', 'kind': 'GitRepository', 'name': 'flux-system'}],
                          'artifacts': [{'name': 'web', 'originRevision': '@fleet',
                                         'copy': [{'from': '@fleet/apps/web/**', 'to': '@artifact/'}]}]}}
    web = kustomization('web', './', sourceRef={'kind': 'ExternalArtifact', 'name': 'web'})
    fleet = Fleet.create(tmp_path, {f'{CLUSTER}/apps.yaml': manifests(generator, web),
                                    'apps/web/config.yaml': manifests(configmap('web', version='1'))})
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        first = fleet.revision()

        def external() -> dict | None:
            return cluster.get(GIT, 'ExternalArtifact', 'web')

        applied = cluster.wait_applied(status(wait_for(external, 'ExternalArtifact'))['artifact']['revision'], 'web')
        artifact = status(external())['artifact']
        assert re.fullmatch(r'latest@sha256:[0-9a-f]{64}', artifact['revision'])
        assert artifact['metadata'] == {'org.opencontainers.image.revision': first}
        assert status(applied)['lastAppliedOriginRevision'] == first
        assert status(applied)['history'][0]['metadata'] == {'revision': artifact['revision'], 'originRevision': first}
        succeeded = [e for e in cluster.events('Kustomization', 'web') if e['reason'] == 'ReconciliationSucceeded']
        assert succeeded[0]['metadata']['annotations'] == {'kustomize.toolkit.fluxcd.io/revision': artifact['revision'],
                                                           'kustomize.toolkit.fluxcd.io/originRevision': first}
        assert reason(cluster.get(AG, 'ArtifactGenerator', 'apps')) == 'True/Succeeded'

        # A commit outside the copied files: same content, same revision; only the origin metadata moves,
        # and kustomize-controller (watching the revision) does not apply again.
        second = fleet.revision(fleet.push('docs', {'README.md': 'docs\n'}))
        cluster.fetch()
        moved = wait_for(lambda: (obj := external()) and status(obj)['artifact']['metadata'] ==
                         {'org.opencontainers.image.revision': second} and obj, 'origin revision to move')
        assert status(moved)['artifact']['revision'] == artifact['revision']
        cluster.sb.wait_idle()
        unchanged = status(cluster.ks('web'))
        assert unchanged['lastAppliedRevision'] == artifact['revision']
        assert unchanged['lastAppliedOriginRevision'] == first
        assert unchanged['history'][0]['totalReconciliations'] == 1

        # A commit that changes the copied files: a new revision, applied, with its origin.
        third = fleet.revision(fleet.push('web v2', {'apps/web/config.yaml': manifests(configmap('web', version='2'))}))
        cluster.fetch()
        changed = wait_for(lambda: (obj := external()) and status(obj)['artifact']['revision'] != artifact['revision']
                           and obj, 'a new artifact revision')
        applied = cluster.wait_applied(status(changed)['artifact']['revision'], 'web')
        assert status(applied)['lastAppliedOriginRevision'] == third
        assert cluster.sb.get('v1', 'ConfigMap', 'default', 'web')['data'] == {'version': '2'}


# -- OCIRepository --------------------------------------------------------------------------------------

def test_oci_repository_served_from_a_mapped_git_repository(tmp_path: Path, fleet: Fleet) -> None:
    """`--remote oci://...=PATH`: the artifact is that repository's default branch, as `flux push artifact`
    would have pushed it, with the git revision in org.opencontainers.image.revision."""
    pushed = Fleet.create(tmp_path / 'artifact', {'config.yaml': manifests(configmap('from-oci', version='1'))})
    url = 'oci://ghcr.io/example/manifests'
    with running(repo=fleet.bare, cluster_path=CLUSTER, remotes={url: str(pushed.bare)}) as cluster:
        cluster.sb.apply({'apiVersion': GIT, 'kind': 'OCIRepository',
                          'metadata': {'name': 'manifests', 'namespace': 'flux-system'},
                          'spec': {'interval': '5m', 'url': url, 'ref': {'tag': 'latest'}}})
        cluster.sb.apply({'apiVersion': GIT, 'kind': 'OCIRepository',
                          'metadata': {'name': 'pinned', 'namespace': 'flux-system'},
                          'spec': {'interval': '5m', 'url': 'oci://ghcr.io/example/other',
                                   'ref': {'digest': 'sha256:' + 'b' * 64}}})
        cluster.sb.apply(kustomization('oci', './', sourceRef={'kind': 'OCIRepository', 'name': 'manifests'}))

        def oci(name: str = 'manifests') -> dict | None:
            return cluster.get(GIT, 'OCIRepository', name)

        first = status(wait_for(lambda: status(oci()).get('artifact') and oci(), 'the OCI artifact'))['artifact']
        assert re.fullmatch(r'latest@sha256:[0-9a-f]{64}', first['revision'])
        assert first['metadata']['org.opencontainers.image.revision'] == pushed.revision()
        applied = cluster.wait_applied(first['revision'], 'oci')
        assert status(applied)['lastAppliedOriginRevision'] == pushed.revision()
        assert cluster.sb.get('v1', 'ConfigMap', 'default', 'from-oci')['data'] == {'version': '1'}
        pinned = cluster.wait_ready_reason(lambda: oci('pinned'), 'True/Succeeded', 'pinned')
        assert status(pinned)['artifact']['revision'] == 'sha256:' + 'b' * 64

        sha = pushed.push('version 2', {'config.yaml': manifests(configmap('from-oci', version='2'))})
        cluster.request_reconcile(GIT, 'OCIRepository', 'manifests')
        second = wait_for(lambda: status(oci())['artifact']['revision'] != first['revision'] and oci(),
                          'a new digest for the same tag')
        applied = cluster.wait_applied(status(second)['artifact']['revision'], 'oci')
        assert status(applied)['lastAppliedOriginRevision'] == pushed.revision(sha)
        assert cluster.sb.get('v1', 'ConfigMap', 'default', 'from-oci')['data'] == {'version': '2'}


# -- Events and determinism ---------------------------------------------------------------------------------

def test_events_carry_reason_type_and_revision(fleet: Fleet) -> None:
    with running(repo=fleet.bare, cluster_path=CLUSTER) as cluster:
        revision = fleet.revision()
        cluster.wait_applied(revision)
        core = client.CoreV1Api(api_client(cluster.sb))
        # As `flux events` selects them.
        listed = core.list_namespaced_event('flux-system', field_selector='involvedObject.kind=GitRepository,'
                                                                          'involvedObject.name=flux-system').items
        assert [(e.type, e.reason, e.message) for e in listed] == [
            ('Normal', 'NewArtifact', "stored artifact for commit 'initial commit'")]
        assert listed[0].metadata.annotations['source.toolkit.fluxcd.io/revision'] == revision
        assert listed[0].metadata.annotations['source.toolkit.fluxcd.io/digest'].startswith('sha256:')
        assert listed[0].source.component == 'source-controller'
        kustomizations = {e.reason: e for e in core.list_namespaced_event(
            'flux-system', field_selector='involvedObject.kind=Kustomization').items}
        assert set(kustomizations) == {'Progressing', 'ReconciliationSucceeded'}
        done = kustomizations['ReconciliationSucceeded']
        assert done.type == 'Normal' and done.reporting_component == 'kustomize-controller'
        assert re.fullmatch(r'Reconciliation finished in (\d+m)?[\d.]+m?s, next run in 10m0s', done.message)
        assert done.metadata.annotations == {'kustomize.toolkit.fluxcd.io/revision': revision}
        assert done.involved_object.api_version == KS and done.involved_object.name == 'flux-system'
        assert kustomizations['Progressing'].message == 'ConfigMap/default/settings created'


def _ready_transitions(cluster: Cluster) -> tuple[dict[str, list[str]], list[str]]:
    """Per Flux object, the Ready status/reason it went through; and every object's uid in creation order."""
    seen: dict[str, list[str]] = {}
    uids = []
    for change in cluster.sb.store.changes_after(0):
        obj = change.obj
        if change.type == 'ADDED' and obj['kind'] != 'Event':  # Event names carry timings, like real ones
            uids.append(f"{obj['kind']}/{obj['metadata']['name']}={obj['metadata']['uid']}")
        if 'fluxcd.io' not in obj.get('apiVersion', ''):
            continue
        key = f"{obj['kind']}/{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        current = reason(obj) or 'none'
        history = seen.setdefault(key, [])
        if not history or history[-1] != current:
            history.append(current)
    return seen, uids


def test_same_repository_and_seed_give_the_same_story(tmp_path: Path) -> None:
    fleet = Fleet.create(tmp_path, {
        f'{CLUSTER}/stack.yaml': manifests(kustomization('infra', './infra', wait=True),
                                           kustomization('app', './app', dependsOn=[{'name': 'infra'}])),
        'infra/web.yaml': manifests(deployment('web')),
        'app/config.yaml': manifests(configmap('app')),
    })
    stories = []
    for _ in range(2):
        with running(repo=fleet.bare, cluster_path=CLUSTER, seed=7) as cluster:
            cluster.wait_applied(fleet.revision(), 'app')
            cluster.sb.wait_idle()
            stories.append(_ready_transitions(cluster))
    (first, first_uids), (second, second_uids) = stories
    assert first == second
    assert first['Kustomization/flux-system/app'][-1] == 'True/ReconciliationSucceeded'
    assert first_uids == second_uids

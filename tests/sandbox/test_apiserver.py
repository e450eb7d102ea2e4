"""The sandbox API server, spoken to over real HTTP by the official kubernetes client."""
from __future__ import annotations

import json
import ssl
import threading
import time

import pytest
import urllib3
from kubernetes import client
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from flux_monitor_hook.sandbox import Sandbox
from flux_monitor_hook.sandbox.apiserver import read_only_rules
from tests.sandbox.kube import KS_GROUP
from tests.sandbox.kube import KS_PLURAL
from tests.sandbox.kube import KS_VERSION
from tests.sandbox.kube import api_client
from tests.sandbox.kube import kustomization


@pytest.fixture
def kube(api_sandbox: Sandbox) -> client.ApiClient:
    return api_client(api_sandbox)


def _create_ks(kube: client.ApiClient, name: str, namespace: str = 'default', **spec: object) -> dict:
    return client.CustomObjectsApi(kube).create_namespaced_custom_object(
        KS_GROUP, KS_VERSION, namespace, KS_PLURAL, kustomization(name, namespace, **spec))


def _events(kube: client.ApiClient, *, resource_version: str, timeout: int = 2, count: int = 0,
            **kwargs: object) -> list[tuple[str, dict]]:
    stream = watch.Watch().stream(
        client.CustomObjectsApi(kube).list_namespaced_custom_object, KS_GROUP, KS_VERSION, 'default', KS_PLURAL,
        resource_version=resource_version, timeout_seconds=timeout, **kwargs)
    seen = []
    for event in stream:
        seen.append((event['type'], event['object']))
        if count and len(seen) >= count:
            break
    return seen


# -- discovery ----------------------------------------------------------------------------------------

def test_discovery_lists_groups_versions_and_scopes(kube: client.ApiClient) -> None:
    assert client.VersionApi(kube).get_code().major == '1'
    groups = {g.name: g for g in client.ApisApi(kube).get_api_versions().groups}
    assert groups['kustomize.toolkit.fluxcd.io'].preferred_version.version == 'v1'
    assert groups['helm.toolkit.fluxcd.io'].preferred_version.version == 'v2'
    assert 'source.extensions.fluxcd.io' in groups and 'fluxcd.controlplane.io' in groups
    core = {r.name: r for r in client.CoreV1Api(kube).get_api_resources().resources}
    assert core['namespaces'].namespaced is False
    assert core['configmaps'].namespaced is True
    assert 'watch' in core['events'].verbs
    flux = {r.name: r for r in client.CustomObjectsApi(kube).get_api_resources(KS_GROUP, KS_VERSION).resources}
    assert flux['kustomizations'].namespaced is True
    assert flux['kustomizations'].short_names == ['ks']
    assert set(flux['kustomizations/status'].verbs) == {'get', 'patch', 'update'}


def test_old_flux_api_versions_only_on_request(tmp_path) -> None:
    with Sandbox(old_apis=True) as sandbox:
        groups = {g.name: g for g in client.ApisApi(api_client(sandbox)).get_api_versions().groups}
        versions = [v.version for v in groups['helm.toolkit.fluxcd.io'].versions]
        assert versions == ['v2', 'v2beta2', 'v2beta1']
    with Sandbox() as sandbox:
        groups = {g.name: g for g in client.ApisApi(api_client(sandbox)).get_api_versions().groups}
        assert [v.version for v in groups['helm.toolkit.fluxcd.io'].versions] == ['v2']


def test_unknown_kind_is_404_and_a_crd_makes_it_servable(kube: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube)
    with pytest.raises(ApiException) as error:
        custom.list_namespaced_custom_object('cert-manager.io', 'v1', 'default', 'certificates')
    assert error.value.status == 404
    client.ApiextensionsV1Api(kube).create_custom_resource_definition({
        'metadata': {'name': 'certificates.cert-manager.io'},
        'spec': {'group': 'cert-manager.io', 'scope': 'Namespaced',
                 'names': {'kind': 'Certificate', 'plural': 'certificates', 'singular': 'certificate'},
                 'versions': [{'name': 'v1', 'served': True, 'storage': True,
                               'schema': {'openAPIV3Schema': {'type': 'object'}}}]}})
    custom.create_namespaced_custom_object('cert-manager.io', 'v1', 'default', 'certificates', {
        'apiVersion': 'cert-manager.io/v1', 'kind': 'Certificate', 'metadata': {'name': 'web'}})
    listed = custom.list_namespaced_custom_object('cert-manager.io', 'v1', 'default', 'certificates')
    assert [item['metadata']['name'] for item in listed['items']] == ['web']


# -- metadata, generation, status subresource ---------------------------------------------------------

def test_metadata_and_generation_rules(kube: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube)
    created = _create_ks(kube, 'app')
    metadata = created['metadata']
    assert metadata['generation'] == 1 and metadata['uid'] and metadata['creationTimestamp']
    first_rv = int(metadata['resourceVersion'])
    labelled = custom.patch_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app',
                                                     {'metadata': {'labels': {'team': 'a'}}})
    assert labelled['metadata']['generation'] == 1, 'metadata changes never move generation'
    assert int(labelled['metadata']['resourceVersion']) > first_rv
    status = custom.patch_namespaced_custom_object_status(
        KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app', {'status': {'lastAppliedRevision': 'main@sha1:' + 'a' * 40}})
    assert status['metadata']['generation'] == 1, 'status writes never move generation'
    assert status['status']['lastAppliedRevision'].endswith('a' * 40)
    spec = custom.patch_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app',
                                                 {'spec': {'path': './apps'}, 'status': {'lastAppliedRevision': 'x'}})
    assert spec['metadata']['generation'] == 2
    assert spec['status']['lastAppliedRevision'].endswith('a' * 40), 'the main resource ignores status'


def test_update_with_a_stale_resource_version_is_a_conflict(kube: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube)
    stale = _create_ks(kube, 'app')
    custom.patch_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app', {'spec': {'path': './a'}})
    stale['spec']['path'] = './b'
    with pytest.raises(ApiException) as error:
        custom.replace_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app', stale)
    assert error.value.status == 409
    assert 'the object has been modified' in error.value.body


def test_json_patch_and_not_found(kube: client.ApiClient) -> None:
    _create_ks(kube, 'app')
    custom = client.CustomObjectsApi(kube)
    patched = custom.patch_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app',
                                                    [{'op': 'replace', 'path': '/spec/path', 'value': './json'}],
                                                    _content_type='application/json-patch+json')
    assert patched['spec']['path'] == './json'
    with pytest.raises(ApiException) as error:
        custom.get_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'nope')
    assert error.value.status == 404
    assert json.loads(error.value.body)['message'] == 'kustomizations.kustomize.toolkit.fluxcd.io "nope" not found'


def test_delete_honours_finalizers(kube: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube)
    obj = kustomization('app')
    obj['metadata']['finalizers'] = ['example.com/keep']
    custom.create_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, obj)
    deleting = custom.delete_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app')
    assert deleting['metadata']['deletionTimestamp']
    assert custom.get_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app')
    custom.patch_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app',
                                          {'metadata': {'finalizers': None}})
    with pytest.raises(ApiException) as error:
        custom.get_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app')
    assert error.value.status == 404


# -- list, selectors, pagination ----------------------------------------------------------------------

def test_label_and_field_selectors(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    for name, tier in (('a', 'web'), ('b', 'db'), ('c', None)):
        labels = {'tier': tier} if tier else {}
        core.create_namespaced_config_map('default', {'metadata': {'name': name, 'labels': labels}})

    def names(**kwargs: str) -> list[str]:
        return [item.metadata.name for item in core.list_namespaced_config_map('default', **kwargs).items]

    assert names(label_selector='tier=web') == ['a']
    assert names(label_selector='tier!=web') == ['b', 'c']
    assert names(label_selector='tier in (web,db)') == ['a', 'b']
    assert names(label_selector='tier notin (web)') == ['b', 'c']
    assert names(label_selector='tier') == ['a', 'b']
    assert names(label_selector='!tier') == ['c']
    assert names(field_selector='metadata.name=b') == ['b']
    assert names(field_selector='metadata.name!=b') == ['a', 'c']
    with pytest.raises(ApiException) as error:
        core.list_namespaced_config_map('default', field_selector='data.k=v')
    assert error.value.status == 400


def test_event_field_selectors_in_both_event_apis(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    for name, kind, event_type in (('e1', 'Kustomization', 'Warning'), ('e2', 'HelmRelease', 'Normal')):
        core.create_namespaced_event('default', {
            'metadata': {'name': name}, 'involvedObject': {'kind': kind, 'name': 'apps', 'namespace': 'default'},
            'reason': 'ReconciliationFailed', 'message': 'boom', 'type': event_type})
    found = core.list_namespaced_event('default', field_selector='involvedObject.kind=Kustomization,'
                                                                 'involvedObject.name=apps,type=Warning')
    assert [e.metadata.name for e in found.items] == ['e1']
    new_api = client.EventsV1Api(kube).list_namespaced_event('default', field_selector='regarding.kind=HelmRelease')
    assert [(e.metadata.name, e.note, e.regarding.kind) for e in new_api.items] == [('e2', 'boom', 'HelmRelease')]


def test_pagination_is_a_consistent_snapshot(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    for index in range(5):
        core.create_namespaced_config_map('default', {'metadata': {'name': f'cm-{index}'}})
    first = core.list_namespaced_config_map('default', limit=2)
    assert [c.metadata.name for c in first.items] == ['cm-0', 'cm-1']
    assert first.metadata.remaining_item_count == 3 and first.metadata._continue
    core.create_namespaced_config_map('default', {'metadata': {'name': 'cm-9'}})  # after the snapshot
    second = core.list_namespaced_config_map('default', limit=2, _continue=first.metadata._continue)
    third = core.list_namespaced_config_map('default', limit=2, _continue=second.metadata._continue)
    assert [c.metadata.name for c in second.items + third.items] == ['cm-2', 'cm-3', 'cm-4']
    assert not third.metadata._continue
    with pytest.raises(ApiException) as error:  # a continue token is good for one use
        core.list_namespaced_config_map('default', limit=2, _continue=first.metadata._continue)
    assert error.value.status == 410


# -- watch --------------------------------------------------------------------------------------------

def test_watch_resumes_from_a_resource_version(kube: client.ApiClient) -> None:
    _create_ks(kube, 'one')
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL)
    resume_from = listed['metadata']['resourceVersion']
    _create_ks(kube, 'two')
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'one')
    events = _events(kube, resource_version=resume_from, count=2)
    assert [(kind, obj['metadata']['name']) for kind, obj in events] == [('ADDED', 'two'), ('DELETED', 'one')]


def test_watch_from_zero_starts_with_the_current_state_then_follows(kube: client.ApiClient) -> None:
    _create_ks(kube, 'one')

    def modify_later() -> None:
        time.sleep(0.3)
        client.CustomObjectsApi(kube).patch_namespaced_custom_object(
            KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'one', {'spec': {'path': './x'}})

    threading.Thread(target=modify_later).start()
    events = _events(kube, resource_version='0', count=2, timeout=5)
    assert [kind for kind, _ in events] == ['ADDED', 'MODIFIED']
    assert events[1][1]['metadata']['generation'] == 2


def test_watch_selector_turns_leaving_into_deleted(kube: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube)
    obj = kustomization('app')
    obj['metadata']['labels'] = {'team': 'a'}
    custom.create_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, obj)
    rv = custom.list_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL)['metadata']['resourceVersion']
    custom.patch_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app',
                                          {'metadata': {'labels': {'team': 'b'}}})
    events = _events(kube, resource_version=rv, count=1, label_selector='team=a')
    assert [kind for kind, _ in events] == ['DELETED']


def test_resume_older_than_the_window_is_410(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    _create_ks(kube, 'one')
    _create_ks(kube, 'two')
    api_sandbox.store.compact()
    with pytest.raises(ApiException) as error:
        _events(kube, resource_version='1')
    assert error.value.status == 410


def test_bookmarks_carry_the_current_resource_version(kube: client.ApiClient) -> None:
    created = _create_ks(kube, 'one')
    stream = watch.Watch().stream(
        client.CustomObjectsApi(kube).list_namespaced_custom_object, KS_GROUP, KS_VERSION, 'default', KS_PLURAL,
        resource_version=created['metadata']['resourceVersion'], allow_watch_bookmarks=True, timeout_seconds=3)
    for event in stream:
        assert event['type'] == 'BOOKMARK'
        assert int(event['object']['metadata']['resourceVersion']) >= int(created['metadata']['resourceVersion'])
        break
    else:
        pytest.fail('no bookmark arrived')


def test_watch_timeout_seconds_ends_the_stream(kube: client.ApiClient) -> None:
    started = time.monotonic()
    assert _events(kube, resource_version='0', timeout=1) == []
    assert 0.9 <= time.monotonic() - started < 3


# -- auth ---------------------------------------------------------------------------------------------

def test_missing_or_wrong_token_is_401(api_sandbox: Sandbox, tmp_path) -> None:
    api_sandbox.write_kubeconfig(tmp_path / 'wrong', 'not-a-token')
    with pytest.raises(ApiException) as error:
        client.CoreV1Api(api_client(api_sandbox, tmp_path / 'wrong')).list_namespace()
    assert error.value.status == 401
    anonymous = urllib3.PoolManager().request('GET', f'{api_sandbox.url}/api/v1/namespaces')
    assert anonymous.status == 401
    assert anonymous.json()['reason'] == 'Unauthorized'


def test_read_only_token_gets_403_on_writes(api_sandbox: Sandbox, tmp_path, kube: client.ApiClient) -> None:
    _create_ks(kube, 'app')
    api_sandbox.add_token(read_only_rules(), kubeconfig_path=tmp_path / 'ro')
    custom = client.CustomObjectsApi(api_client(api_sandbox, tmp_path / 'ro'))
    assert custom.get_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app')
    with pytest.raises(ApiException) as error:
        custom.patch_namespaced_custom_object(KS_GROUP, KS_VERSION, 'default', KS_PLURAL, 'app',
                                              {'metadata': {'annotations': {'reconcile.fluxcd.io/requestedAt': 'now'}}})
    assert error.value.status == 403
    message = json.loads(error.value.body)['message']
    assert 'cannot patch resource "kustomizations" in API group "kustomize.toolkit.fluxcd.io"' in message


def test_revoked_token_is_401(api_sandbox: Sandbox, tmp_path) -> None:
    token = api_sandbox.add_token(kubeconfig_path=tmp_path / 'kc')
    core = client.CoreV1Api(api_client(api_sandbox, tmp_path / 'kc'))
    core.list_namespace()
    api_sandbox.revoke_token(token)
    with pytest.raises(ApiException) as error:
        core.list_namespace()
    assert error.value.status == 401


# -- TLS ----------------------------------------------------------------------------------------------

def test_tls_with_the_kubeconfig_ca_and_refusal_without_it(tmp_path) -> None:
    with Sandbox(tls=True) as sandbox:
        assert sandbox.url.startswith('https://127.0.0.1:')
        assert client.CoreV1Api(api_client(sandbox)).list_namespace().items
        untrusted = urllib3.PoolManager(cert_reqs='CERT_REQUIRED', ca_certs=None,
                                        ssl_context=ssl.create_default_context(), retries=False)
        with pytest.raises(urllib3.exceptions.SSLError):
            untrusted.request('GET', f'{sandbox.url}/version')


# -- faults -------------------------------------------------------------------------------------------

def test_fail_next_requests_then_recover(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    api_sandbox.faults.fail_next(2, 503, verb='list', resource='namespaces')
    for _ in range(2):
        with pytest.raises(ApiException) as error:
            core.list_namespace()
        assert error.value.status == 503
    assert core.list_namespace().items
    core.list_namespaced_config_map('default')  # other resources were never affected


def test_429_carries_retry_after(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    api_sandbox.faults.fail_next(1, 429, retry_after=2)
    with pytest.raises(ApiException) as error:
        client.CoreV1Api(kube).list_namespace()
    assert error.value.status == 429
    assert error.value.headers['Retry-After'] == '2'


def test_dropped_connections(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    api_sandbox.faults.drop_next(1)
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.CoreV1Api(kube).list_namespace()
    assert client.CoreV1Api(kube).list_namespace().items


def test_delayed_responses(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    api_sandbox.faults.delay(0.4, 1)
    started = time.monotonic()
    client.CoreV1Api(kube).list_namespace()
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    client.CoreV1Api(kube).list_namespace()
    assert time.monotonic() - started < 0.4


def test_watch_cut_after_n_events(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    for name in ('a', 'b', 'c'):
        _create_ks(kube, name)
    api_sandbox.faults.cut_watches(after_events=2)
    assert len(_events(kube, resource_version='0', timeout=5)) == 2


def test_watch_cut_after_seconds(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    api_sandbox.faults.cut_watches(after_seconds=0.5)
    started = time.monotonic()
    _events(kube, resource_version='0', timeout=30)
    assert time.monotonic() - started < 3


def test_forced_410_on_the_next_resume(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    created = _create_ks(kube, 'a')
    api_sandbox.faults.expire_next_watch()
    with pytest.raises(ApiException) as error:
        _events(kube, resource_version=created['metadata']['resourceVersion'])
    assert error.value.status == 410
    assert _events(kube, resource_version=created['metadata']['resourceVersion'], timeout=1) == []


def test_outage_takes_the_server_down_and_back_on_the_same_port(api_sandbox: Sandbox,
                                                                kube: client.ApiClient) -> None:
    port = api_sandbox.server.port
    client.CoreV1Api(kube).list_namespace()  # a cold client can take longer than the outage to send anything
    outage = api_sandbox.server.start_outage(1.0)
    time.sleep(0.3)
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.CoreV1Api(kube).list_namespace()
    outage.join(timeout=5)
    assert api_sandbox.server.port == port
    assert client.CoreV1Api(kube).list_namespace().items


def test_request_counts_are_recorded(api_sandbox: Sandbox, kube: client.ApiClient) -> None:
    client.CoreV1Api(kube).list_namespace()
    client.CoreV1Api(kube).list_namespace()
    assert api_sandbox.server.log.snapshot()[('list', 'namespaces')] == 2

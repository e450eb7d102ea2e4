"""kubectl (client-go) against a sandbox: what a user types while the product runs.

client-go refuses to send a bearer token over plain HTTP, so these sandboxes serve TLS.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import requires_kubectl
from tests.sandbox.fleet import Cluster
from tests.sandbox.fleet import Fleet
from tests.sandbox.fleet import configmap
from tests.sandbox.fleet import manifests
from tests.sandbox.fleet import running
from tests.sandbox.fleet import status
from tests.sandbox.fleet import wait_for

pytestmark = requires_kubectl

CLUSTER = 'clusters/test'


@pytest.fixture(scope='module')
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp('kubectl')
    fleet = Fleet.create(root, {f'{CLUSTER}/config.yaml': manifests(configmap('settings', colour='blue'))})
    with running(repo=fleet.bare, cluster_path=CLUSTER, tls=True) as cluster:
        cluster.wait_applied(fleet.revision())
        yield cluster


def _env(cluster: Cluster) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith('KUBE')}
    env['KUBECONFIG'] = str(cluster.sb.kubeconfig_path)
    return env


def kubectl(cluster: Cluster, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cache = Path(cluster.sb.kubeconfig_path).parent / 'kubectl-cache'
    result = subprocess.run(['kubectl', f'--cache-dir={cache}', *args], capture_output=True, text=True,
                            env=_env(cluster), timeout=timeout, check=False)
    assert result.returncode == 0, f'kubectl {" ".join(args)} failed: {result.stderr}'
    return result


def test_get_all_namespaces_as_json(cluster: Cluster) -> None:
    listed = json.loads(kubectl(cluster, 'get', 'kustomizations,gitrepositories', '-A', '-o', 'json').stdout)
    assert listed['kind'] == 'List'
    found = {(item['apiVersion'], item['kind'], item['metadata']['namespace'], item['metadata']['name'])
             for item in listed['items']}
    assert found == {('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', 'flux-system', 'flux-system'),
                     ('source.toolkit.fluxcd.io/v1', 'GitRepository', 'flux-system', 'flux-system')}
    by_short_name = json.loads(kubectl(cluster, 'get', 'ks', '-n', 'flux-system', 'flux-system', '-o', 'json').stdout)
    assert by_short_name['status']['lastAppliedRevision'].startswith('main@sha1:')
    for kind in ('helmreleases', 'ocirepositories', 'helmcharts', 'externalartifacts', 'artifactgenerators'):
        assert json.loads(kubectl(cluster, 'get', kind, '-A', '-o', 'json').stdout)['items'] == []


def test_watch_sees_a_modification(cluster: Cluster) -> None:
    cache = Path(cluster.sb.kubeconfig_path).parent / 'kubectl-cache'
    process = subprocess.Popen(
        ['kubectl', f'--cache-dir={cache}', 'get', 'configmap', 'settings', '-n', 'default', '-w',
         '--output-watch-events', '-o', 'json'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(cluster))
    events: list[dict] = []
    reader = threading.Thread(target=_read_json_stream, args=(process, events), daemon=True)
    reader.start()
    try:
        wait_for(lambda: events, 'the initial ADDED event', timeout=20)
        cluster.sb.apply(configmap('settings', colour='green'))
        modified = wait_for(lambda: [e for e in events if e['type'] == 'MODIFIED'], 'a MODIFIED event', timeout=20)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert events[0]['type'] == 'ADDED'
    assert modified[0]['object']['data'] == {'colour': 'green'}


def _read_json_stream(process: subprocess.Popen[str], events: list[dict]) -> None:
    """kubectl prints one JSON document per event, pretty-printed and back to back."""
    assert process.stdout is not None
    decoder = json.JSONDecoder()
    buffer = ''
    for line in process.stdout:
        buffer += line
        while buffer.strip():
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                break
            events.append(event)
            buffer = buffer.lstrip()[end:]


def test_annotate_requests_a_reconcile(cluster: Cluster) -> None:
    token = f'kubectl-{time.time_ns()}'
    kubectl(cluster, 'annotate', '--overwrite', '-n', 'flux-system', 'gitrepository/flux-system',
            f'reconcile.fluxcd.io/requestedAt={token}')
    wait_for(lambda: status(cluster.git()).get('lastHandledReconcileAt') == token, 'lastHandledReconcileAt')


def test_wait_for_the_ready_condition(cluster: Cluster) -> None:
    result = kubectl(cluster, 'wait', '--for=condition=Ready', 'kustomization/flux-system', '-n', 'flux-system',
                     '--timeout=20s')
    assert result.stdout.strip() == 'kustomization.kustomize.toolkit.fluxcd.io/flux-system condition met'

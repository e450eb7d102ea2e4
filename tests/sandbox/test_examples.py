"""The Flux project's own example layouts (../shared/flux-examples) come up in a sandbox, follow pushes and
report a broken commit on the Kustomization that builds it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.sandbox.examples import KUSTOMIZE_HELM
from tests.sandbox.examples import MULTI_TENANCY
from tests.sandbox.examples import example_fleet
from tests.sandbox.examples import multi_tenancy_remotes
from tests.sandbox.examples import requires_examples
from tests.sandbox.fleet import GIT
from tests.sandbox.fleet import HR
from tests.sandbox.fleet import KS
from tests.sandbox.fleet import Cluster
from tests.sandbox.fleet import condition
from tests.sandbox.fleet import reason
from tests.sandbox.fleet import running
from tests.sandbox.fleet import status
from tests.sandbox.fleet import wait_for

pytestmark = requires_examples

KUSTOMIZE_HELM_KUSTOMIZATIONS = ('flux-system', 'infra-controllers', 'infra-configs', 'apps')
KUSTOMIZE_HELM_RELEASES = (('cert-manager', 'cert-manager'), ('ingress-nginx', 'ingress-nginx'),
                           ('podinfo', 'podinfo'))


def _all_ready(cluster: Cluster, api_version: str, kind: str) -> list[dict]:
    objects = cluster.sb.list(api_version, kind)
    return objects if objects and all(reason(obj) and reason(obj).startswith('True/') for obj in objects) else []


def _wait_all_ready(cluster: Cluster, *kinds: tuple[str, str], timeout: float = 20.0) -> None:
    for api_version, kind in kinds:
        wait_for(lambda a=api_version, k=kind: _all_ready(cluster, a, k), f'every {kind} Ready', timeout,
                 lambda a=api_version, k=kind: {o['metadata']['name']: reason(o) for o in cluster.sb.list(a, k)})


@pytest.mark.parametrize('cluster_path', ['clusters/staging', 'clusters/production'])
def test_kustomize_helm_example_comes_up(tmp_path: Path, cluster_path: str) -> None:
    fleet = example_fleet(KUSTOMIZE_HELM, tmp_path)
    with running(repo=fleet.bare, cluster_path=cluster_path) as cluster:
        for name in KUSTOMIZE_HELM_KUSTOMIZATIONS:
            cluster.wait_applied(fleet.revision(), name, timeout=20)
        _wait_all_ready(cluster, (HR, 'HelmRelease'), (GIT, 'HelmRepository'), (GIT, 'HelmChart'))
        assert {(o['metadata']['namespace'], o['metadata']['name']) for o in cluster.sb.list(HR, 'HelmRelease')} == \
            set(KUSTOMIZE_HELM_RELEASES)
        podinfo = cluster.hr('podinfo', 'podinfo')
        stage = cluster_path.rpartition('/')[2]
        assert podinfo['spec']['values']['ingress']['hosts'][0]['host'] == f'podinfo.{stage}'
        assert status(podinfo)['helmChart'] == 'podinfo/podinfo-podinfo'
        # infra-configs patches the ClusterIssuer per cluster; lenient kinds serve cert-manager's CRD-less kind.
        issuer = cluster.sb.get('cert-manager.io/v1', 'ClusterIssuer', None, 'letsencrypt')
        expected = 'acme-staging-v02' if stage == 'staging' else 'acme-v02'
        assert issuer['spec']['acme']['server'] == f'https://{expected}.api.letsencrypt.org/directory'
        apps = cluster.ks('apps')
        assert reason(apps, 'Healthy') == 'True/Succeeded', 'apps waits (wait: true) on its HelmRelease'
        assert 'podinfo_podinfo_helm.toolkit.fluxcd.io_HelmRelease' in {
            entry['id'] for entry in status(apps)['inventory']['entries']}


def test_multi_tenancy_example_comes_up(tmp_path: Path) -> None:
    fleet = example_fleet(MULTI_TENANCY, tmp_path)
    remotes = multi_tenancy_remotes(tmp_path)
    with running(repo=fleet.bare, cluster_path='clusters/staging', remotes=remotes) as cluster:
        for name in ('flux-system', 'kyverno', 'kyverno-policies', 'tenants'):
            cluster.wait_applied(fleet.revision(), name, timeout=20)
        tenant_source = cluster.wait_ready_reason(lambda: cluster.git('dev-team', 'apps'), 'True/Succeeded', 'tenant')
        tenant_revision = status(tenant_source)['artifact']['revision']
        assert re.fullmatch(r'dev-team@sha1:[0-9a-f]{40}', tenant_revision)
        cluster.wait_applied(tenant_revision, 'dev-team', 'apps')
        assert cluster.sb.get('v1', 'ConfigMap', 'apps', 'team-settings')['data'] == {'stage': 'staging'}
        # The kyverno OCIRepository (v1beta2 in the manifest, served on the fly) has no registry behind it:
        # an empty artifact is assumed and the Kustomization on it applies nothing.
        oci = cluster.wait_ready_reason(lambda: cluster.get(GIT, 'OCIRepository', 'kyverno-controller'),
                                        'True/Succeeded', 'kyverno OCIRepository')
        revision = status(oci)['artifact']['revision']
        assert re.fullmatch(r'v1\.14\.4@sha256:[0-9a-f]{64}', revision)
        controller = cluster.wait_applied(revision, 'kyverno-controller')
        assert status(controller)['inventory']['entries'] == []
        policies = cluster.sb.list('kyverno.io/v1', 'ClusterPolicy')
        assert sorted(p['metadata']['name'] for p in policies) == ['verify-flux-images', 'verify-git-repositories']


def test_a_push_lands_everywhere_and_a_broken_commit_fails_its_kustomization(tmp_path: Path) -> None:
    fleet = example_fleet(KUSTOMIZE_HELM, tmp_path)
    with running(repo=fleet.bare, cluster_path='clusters/staging') as cluster:
        for name in KUSTOMIZE_HELM_KUSTOMIZATIONS:
            cluster.wait_applied(fleet.revision(), name, timeout=20)
        cluster.wait_ready_reason(lambda: cluster.hr('podinfo', 'podinfo'), 'True/InstallSucceeded', 'podinfo')
        values = (fleet.work / 'apps/staging/podinfo-values.yaml').read_text()
        pushed = fleet.push('staging host', {'apps/staging/podinfo-values.yaml':
                                             values.replace('podinfo.staging', 'podinfo.staging.example')})
        second = fleet.revision(pushed)
        fetched = wait_for(lambda: (obj := cluster.git()) and status(obj)['artifact']['revision'] == second and obj,
                           'the poll to fetch the push', timeout=10)  # no requestedAt: the 1m interval, scaled
        assert condition(fetched)['message'] == f"stored artifact for revision '{second}'"
        for name in KUSTOMIZE_HELM_KUSTOMIZATIONS:
            cluster.wait_applied(second, name, timeout=20)
        upgraded = cluster.wait_ready_reason(lambda: cluster.hr('podinfo', 'podinfo'), 'True/UpgradeSucceeded',
                                             'podinfo')
        assert upgraded['spec']['values']['ingress']['hosts'][0]['host'] == 'podinfo.staging.example'

        broken = (fleet.work / 'apps/staging/kustomization.yaml').read_text() + 'patches: [ {path: \n'
        pushed = fleet.push('broken staging apps', {'apps/staging/kustomization.yaml': broken})
        third = fleet.revision(pushed)
        cluster.fetch()
        for name in ('flux-system', 'infra-controllers', 'infra-configs'):
            cluster.wait_applied(third, name, timeout=20)
        apps = cluster.wait_ready_reason(lambda: cluster.ks('apps'), 'False/BuildFailed', 'apps', timeout=20)
        assert status(apps)['lastAttemptedRevision'] == third
        assert status(apps)['lastAppliedRevision'] == second
        assert re.fullmatch(r'kustomize build failed: invalid Kustomization: .*yaml: line \d+: did not find expected '
                            r'node content', condition(apps)['message']), condition(apps)['message']
        assert reason(apps, 'Reconciling') == 'True/ProgressingWithRetry'
        warnings = [e for e in cluster.events('Kustomization', 'apps') if e['type'] == 'Warning']
        assert [e['reason'] for e in warnings] == ['BuildFailed']
        assert warnings[0]['metadata']['annotations']['kustomize.toolkit.fluxcd.io/revision'] == third
        assert cluster.get(KS, 'Kustomization', 'apps')['metadata']['generation'] == 1

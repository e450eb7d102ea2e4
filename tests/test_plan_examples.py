"""`plan` on the Flux project's own example layouts (../shared/flux-examples): which resources a change affects.

The pure tests build the cluster's objects from the layout as `flux bootstrap` and Flux would create them; one
test runs the real `flux-monitor plan --format json` against a sandbox that bootstrapped the layout.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from flux_monitor_hook import gitctx
from flux_monitor_hook import plan
from flux_monitor_hook.sandbox import Sandbox
from tests import gitrepos
from tests.sandbox import gitutil

SHARED = Path(__file__).resolve().parents[2] / 'shared'
EXAMPLES = SHARED / 'flux-examples'
ROOT = Path(__file__).resolve().parents[1]
KUSTOMIZE_HELM = 'flux2-kustomize-helm-example'
MULTI_TENANCY = 'flux2-multi-tenancy'
GIT = ('GitRepository', 'flux-system', 'flux-system')
LABEL = 'kustomize.toolkit.fluxcd.io/'

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f'{EXAMPLES} is absent (../shared not checked out)')


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch):
    for key, value in gitrepos.ISOLATION.items():
        monkeypatch.setenv(key, value)


def labelled(obj: dict[str, Any], applier: str) -> dict[str, Any]:
    obj['metadata'].setdefault('labels', {}).update({f'{LABEL}name': applier, f'{LABEL}namespace': 'flux-system'})
    return obj


@dataclass(frozen=True)
class Layout:
    """An example committed to a repository, and the Flux objects one cluster of it has."""

    root: Path
    kustomizations: list[dict[str, Any]]
    helmreleases: list[dict[str, Any]]


def layout(tmp: Path, example: str, cluster_path: str, releases: dict[str, str],
           extra: tuple[dict[str, Any], ...] = ()) -> Layout:
    """The bootstrap Kustomization, every Flux Kustomization the cluster folder's files and what they build hold
    (applied by the one whose path holds them), and the HelmReleases `releases` names (namespace/name: applier)."""
    root, _ = gitutil.repo_from_dir(EXAMPLES / example, tmp / example)
    bootstrap = {'apiVersion': 'kustomize.toolkit.fluxcd.io/v1', 'kind': 'Kustomization',
                 'metadata': {'name': 'flux-system', 'namespace': 'flux-system'},
                 'spec': {'path': f'./{cluster_path}', 'sourceRef': {'kind': 'GitRepository', 'name': 'flux-system'}}}
    kustomizations = [labelled(bootstrap, 'flux-system'), *extra]
    pending = [bootstrap]
    while pending:
        applier = pending.pop()
        if applier['spec'].get('sourceRef') != {'kind': 'GitRepository', 'name': 'flux-system'}:
            continue  # what another source holds is not in this repository
        folder = root / applier['spec'].get('path', '.')
        for path in sorted(folder.rglob('*.yaml')):
            for document in yaml.safe_load_all(path.read_text()):
                # (Patches of a Kustomization, with no sourceRef, are no Kustomization of their own.)
                if isinstance(document, dict) and document.get('kind') == 'Kustomization' and \
                        document['apiVersion'].startswith('kustomize.toolkit.fluxcd.io/') and \
                        'sourceRef' in document.get('spec', {}):
                    document['metadata'].setdefault('namespace', 'flux-system')
                    kustomizations.append(labelled(document, applier['metadata']['name']))
                    pending.append(document)
    helmreleases = []
    for key, applier in releases.items():
        namespace, name = key.split('/')
        helmreleases.append(labelled({
            'apiVersion': 'helm.toolkit.fluxcd.io/v2', 'kind': 'HelmRelease',
            'metadata': {'name': name, 'namespace': namespace},
            'spec': {'chart': {'spec': {'chart': name, 'sourceRef': {'kind': 'HelmRepository', 'name': name}}}}},
            applier))
    return Layout(root, kustomizations, helmreleases)


def affected_by(example: Layout, changed: list[str], base: str | None = None) -> dict[str, plan.Affected]:
    with contextlib.ExitStack() as stack:
        new = stack.enter_context(gitctx.TreeReader(example.root, 'HEAD'))
        old = stack.enter_context(gitctx.TreeReader(example.root, base)) if base else None
        results = plan.affected_resources(new, old, changed, example.kustomizations, example.helmreleases, [],
                                          {GIT}, 'staging')
    return {str(result.key): result for result in results}


def names(results: dict[str, plan.Affected]) -> set[str]:
    return {key for key, result in results.items() if result.affected}


@pytest.fixture(scope='module')
def kustomize_helm(tmp_path_factory) -> Layout:
    return layout(tmp_path_factory.mktemp('kh'), KUSTOMIZE_HELM, 'clusters/staging', {
        'podinfo/podinfo': 'apps', 'cert-manager/cert-manager': 'infra-controllers',
        'ingress-nginx/ingress-nginx': 'infra-controllers'})


@pytest.fixture(scope='module')
def multi_tenancy(tmp_path_factory) -> Layout:
    # The tenant's Kustomization, as tenants/staging builds it from the base and the patch.
    dev_team = labelled({'apiVersion': 'kustomize.toolkit.fluxcd.io/v1', 'kind': 'Kustomization',
                         'metadata': {'name': 'dev-team', 'namespace': 'apps'},
                         'spec': {'path': './staging', 'sourceRef': {'kind': 'GitRepository', 'name': 'dev-team'}}},
                        'tenants')
    return layout(tmp_path_factory.mktemp('mt'), MULTI_TENANCY, 'clusters/staging', {}, (dev_team,))


KS = 'Kustomization/flux-system/'
PODINFO = 'HelmRelease/podinfo/podinfo'
INFRA_RELEASES = {'HelmRelease/cert-manager/cert-manager', 'HelmRelease/ingress-nginx/ingress-nginx'}


def test_the_kustomize_helm_layout_is_assessed_whole(kustomize_helm: Layout) -> None:
    results = affected_by(kustomize_helm, ['README.md'])
    assert set(results) == {f'{KS}flux-system', f'{KS}infra-controllers', f'{KS}infra-configs', f'{KS}apps', PODINFO,
                            *INFRA_RELEASES}
    assert names(results) == set()


@pytest.mark.parametrize(('changed', 'expected'), [
    ('apps/base/podinfo/release.yaml', {f'{KS}apps', PODINFO}),
    ('apps/base/podinfo/repository.yaml', {f'{KS}apps', PODINFO}),
    ('apps/staging/podinfo-values.yaml', {f'{KS}apps', PODINFO}),
    ('infrastructure/controllers/cert-manager.yaml', {f'{KS}infra-controllers', *INFRA_RELEASES}),
    ('infrastructure/configs/cluster-issuers.yaml', {f'{KS}infra-configs'}),
    ('apps/production/podinfo-values.yaml', set()),
    ('apps/production/kustomization.yaml', set()),
    ('clusters/production/apps.yaml', set()),
    ('clusters/staging/flux-system/gotk-components.yaml', {f'{KS}flux-system'}),
    # The bootstrap Kustomization applies apps.yaml; apps itself is then reconciled with its new spec.
    ('clusters/staging/apps.yaml', {f'{KS}flux-system', f'{KS}apps', PODINFO}),
    ('clusters/staging/infrastructure.yaml', {f'{KS}flux-system', f'{KS}infra-controllers', f'{KS}infra-configs',
                                              *INFRA_RELEASES}),
])
def test_kustomize_helm_example_at_staging(kustomize_helm: Layout, changed: str, expected: set[str]) -> None:
    assert names(affected_by(kustomize_helm, [changed])) == expected


def test_kustomize_helm_why_chains(kustomize_helm: Layout) -> None:
    results = affected_by(kustomize_helm, ['apps/base/podinfo/release.yaml'])
    assert results[f'{KS}apps'].because == (
        'apps/base/podinfo/release.yaml ← apps/base/podinfo/kustomization.yaml ← apps/staging/kustomization.yaml ← '
        'Kustomization flux-system/apps')
    assert results[PODINFO].why[-2:] == ('Kustomization flux-system/apps', 'HelmRelease podinfo/podinfo')
    results = affected_by(kustomize_helm, ['clusters/staging/apps.yaml'])
    assert results[f'{KS}flux-system'].because == 'clusters/staging/apps.yaml ← Kustomization flux-system/flux-system'


def test_kustomize_helm_deleted_file(kustomize_helm: Layout, tmp_path: Path) -> None:
    work = tmp_path / 'work'
    gitrepos.git(tmp_path, 'clone', '--quiet', str(kustomize_helm.root), str(work))
    base = gitrepos.git(work, 'rev-parse', 'HEAD')
    # The base's kustomization file still names it: Flux's build of apps breaks.
    head = gitrepos.commit(work, 'no podinfo namespace', {'apps/base/podinfo/namespace.yaml': None})
    changed = gitctx.changed_files(work, base, head)
    assert changed == ['apps/base/podinfo/namespace.yaml']
    results = affected_by(Layout(work, kustomize_helm.kustomizations, kustomize_helm.helmreleases), changed, base)
    assert names(results) == {f'{KS}apps', PODINFO}
    assert results[f'{KS}apps'].why[:2] == ('apps/base/podinfo/namespace.yaml', 'apps/base/podinfo/kustomization.yaml')


@pytest.mark.parametrize(('changed', 'expected'), [
    ('tenants/base/dev-team/rbac.yaml', {f'{KS}tenants'}),
    ('tenants/base/dev-team/sync.yaml', {f'{KS}tenants'}),
    ('tenants/staging/dev-team-patch.yaml', {f'{KS}tenants'}),
    ('tenants/production/dev-team-patch.yaml', set()),
    ('infrastructure/kyverno/sync.yaml', {f'{KS}kyverno'}),
    ('infrastructure/kyverno-policies/verify-flux-images.yaml', {f'{KS}kyverno-policies'}),
    ('clusters/staging/tenants.yaml', {f'{KS}flux-system', f'{KS}tenants'}),
    ('clusters/staging/flux-system/kustomization.yaml', {f'{KS}flux-system'}),
    ('clusters/production/tenants.yaml', set()),
])
def test_multi_tenancy_example_at_staging(multi_tenancy: Layout, changed: str, expected: set[str]) -> None:
    results = affected_by(multi_tenancy, [changed])
    # kyverno-controller reads an OCIRepository and the tenant's dev-team another repository: not followed.
    assert set(results) == {f'{KS}flux-system', f'{KS}kyverno', f'{KS}kyverno-policies', f'{KS}tenants'}
    assert names(results) == expected


def test_multi_tenancy_why_goes_through_the_base(multi_tenancy: Layout) -> None:
    results = affected_by(multi_tenancy, ['tenants/base/dev-team/rbac.yaml'])
    assert results[f'{KS}tenants'].because == (
        'tenants/base/dev-team/rbac.yaml ← tenants/base/dev-team/kustomization.yaml ← '
        'tenants/staging/kustomization.yaml ← Kustomization flux-system/tenants')


# -- the real command against a sandbox ---------------------------------------------------------------------

@dataclass(frozen=True)
class Bootstrapped:
    clone: Path
    kubeconfig: Path
    pushed: str


@pytest.fixture(scope='module')
def bootstrapped(tmp_path_factory) -> Iterator[Bootstrapped]:
    """The kustomize-helm example pushed to a bare repository, bootstrapped at clusters/staging in a sandbox, and
    a user's clone of it."""
    tmp = tmp_path_factory.mktemp('sandboxed')
    seed, pushed = gitutil.repo_from_dir(EXAMPLES / KUSTOMIZE_HELM, tmp / 'seed')
    bare = gitutil.bare_clone(seed, tmp / 'fleet.git')
    clone = tmp / 'clone'
    gitutil.git(tmp, 'clone', '--quiet', '--', str(bare), str(clone))
    with Sandbox(repo=bare, cluster_path='clusters/staging', speed=50, kubeconfig_path=tmp / 'kubeconfig') as sandbox:
        deadline = time.monotonic() + 60
        while not (sandbox.list('helm.toolkit.fluxcd.io/v2', 'HelmRelease', 'podinfo') and
                   len(sandbox.list('kustomize.toolkit.fluxcd.io/v1', 'Kustomization')) == 4):
            assert time.monotonic() < deadline, 'the sandbox did not apply the example'
            time.sleep(0.05)
        yield Bootstrapped(clone, sandbox.kubeconfig_path, pushed)
        assert sandbox.controllers.errors == [], ''.join(sandbox.controllers.errors)


def flux_monitor(cwd: Path, *args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith('GIT_') and key != 'KUBECONFIG'}
    env.update(gitutil.git_env(), KUBECONFIG=str(kubeconfig), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-m', 'flux_monitor_hook', *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_plan_command_on_an_unpushed_commit(bootstrapped: Bootstrapped) -> None:
    release = bootstrapped.clone / 'apps/base/podinfo/release.yaml'
    head = gitutil.commit(bootstrapped.clone, 'podinfo: more redis',
                          {'apps/base/podinfo/release.yaml': release.read_text().replace('7.0.6', '7.0.7')})
    result = flux_monitor(bootstrapped.clone, 'plan', '--format', 'json', kubeconfig=bootstrapped.kubeconfig)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report['revision'] == head
    assert report['base'] == bootstrapped.pushed, 'not pushed yet: compared with what Flux has'
    assert report['changed_files'] == ['apps/base/podinfo/release.yaml']
    cluster = report['sources'][0]['cluster']
    assert report['sources'] == [{'kind': 'GitRepository', 'namespace': 'flux-system', 'name': 'flux-system',
                                  'cluster': cluster}]
    by_key = {f"{r['kind']}/{r['namespace']}/{r['name']}": r for r in report['resources']}
    assert {key: r['affected'] for key, r in by_key.items()} == {
        f'{KS}apps': True, f'{KS}flux-system': False, f'{KS}infra-configs': False, f'{KS}infra-controllers': False,
        PODINFO: True, 'HelmRelease/cert-manager/cert-manager': False, 'HelmRelease/ingress-nginx/ingress-nginx': False}
    assert by_key[f'{KS}apps']['why'] == [
        'apps/base/podinfo/release.yaml', 'apps/base/podinfo/kustomization.yaml', 'apps/staging/kustomization.yaml',
        'Kustomization flux-system/apps']
    assert by_key[PODINFO]['why'][-1] == 'HelmRelease podinfo/podinfo'
    assert all(r['cluster'] == cluster and (r['why'] == []) is not r['affected'] for r in report['resources'])

    text = flux_monitor(bootstrapped.clone, 'plan', '--revision', 'HEAD', kubeconfig=bootstrapped.kubeconfig)
    assert text.returncode == 0, text.stderr
    assert f'plan for {head[:7]} (main) against {bootstrapped.pushed[:7]}: 1 changed file\n' in text.stdout
    assert '  GitRepository/flux-system/flux-system\n' in text.stdout
    assert 'resources: 2 of 7 affected\n' in text.stdout
    assert '  affected    Kustomization/flux-system/apps\n' in text.stdout
    assert '  unaffected  Kustomization/flux-system/infra-configs\n' in text.stdout


def test_plan_command_errors_exit_with_the_documented_codes(tmp_path: Path) -> None:
    _, work = gitrepos.remote_and_clone(tmp_path)
    result = flux_monitor(work, 'plan', kubeconfig=tmp_path / 'missing-kubeconfig')
    assert result.returncode == 4, result.stderr
    assert 'no kubeconfig at' in result.stderr
    result = flux_monitor(work, 'plan', '--revision', 'no-such-branch', kubeconfig=tmp_path / 'missing-kubeconfig')
    assert result.returncode == 3, result.stderr
    assert "unknown revision 'no-such-branch'" in result.stderr

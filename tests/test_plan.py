"""Changed files mapped to the Flux resources they affect, over real git repositories in temporary directories."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from flux_monitor_hook import gitctx
from flux_monitor_hook import plan
from flux_monitor_hook.objects import ObjectKey
from flux_monitor_hook.tracker import Target
from tests import gitrepos
from tests.gitrepos import commit
from tests.gitrepos import git

CLUSTER = 'staging'
GIT = ('GitRepository', 'flux-system', 'flux-system')
APPLIED_BY = 'kustomize.toolkit.fluxcd.io/'


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch):
    """gitctx uses the caller's environment: keep the machine's git config out of it."""
    for key, value in gitrepos.ISOLATION.items():
        monkeypatch.setenv(key, value)


# -- objects as the API returns them ---------------------------------------------------------------------

def kustomization(name: str, path: str | None, *, namespace: str = 'flux-system',
                  source: tuple[str, str] = ('GitRepository', 'flux-system'), applied_by: str | None = None,
                  inventory: Sequence[str] = ()) -> dict[str, Any]:
    obj: dict[str, Any] = {
        'apiVersion': 'kustomize.toolkit.fluxcd.io/v1', 'kind': 'Kustomization',
        'metadata': {'name': name, 'namespace': namespace},
        'spec': {'interval': '10m', 'prune': True,
                 'sourceRef': {'kind': source[0], 'name': source[1], 'namespace': 'flux-system'}},
        'status': {'inventory': {'entries': [{'id': entry, 'v': 'v1'} for entry in inventory]}},
    }
    if path is not None:
        obj['spec']['path'] = path
    if applied_by:
        obj['metadata']['labels'] = {f'{APPLIED_BY}name': applied_by, f'{APPLIED_BY}namespace': 'flux-system'}
    return obj


def helmrelease(name: str, namespace: str = 'demo', *, chart: str = 'podinfo',
                source: tuple[str, str, str] = ('HelmRepository', 'demo', 'podinfo'),
                values_files: Sequence[str] = (), applied_by: str | None = None,
                chart_ref: Mapping[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {'interval': '10m'}
    if chart_ref is not None:
        spec['chartRef'] = dict(chart_ref)
    else:
        source_ref = dict(zip(('kind', 'namespace', 'name'), source, strict=True))
        spec['chart'] = {'spec': {'chart': chart, 'sourceRef': source_ref}}
        if values_files:
            spec['chart']['spec']['valuesFiles'] = list(values_files)
    obj: dict[str, Any] = {'apiVersion': 'helm.toolkit.fluxcd.io/v2', 'kind': 'HelmRelease',
                           'metadata': {'name': name, 'namespace': namespace}, 'spec': spec}
    if applied_by:
        obj['metadata']['labels'] = {f'{APPLIED_BY}name': applied_by, f'{APPLIED_BY}namespace': 'flux-system'}
    return obj


def generator(name: str, artifacts: list[dict[str, Any]], *, sources: Sequence[tuple[str, str, str]] = (
        ('repo', 'GitRepository', 'flux-system'),)) -> dict[str, Any]:
    return {'apiVersion': 'source.extensions.fluxcd.io/v1beta1', 'kind': 'ArtifactGenerator',
            'metadata': {'name': name, 'namespace': 'flux-system'},
            'spec': {'sources': [{'alias': alias, 'kind': kind, 'name': source_name}
                                 for alias, kind, source_name in sources],
                     'artifacts': artifacts}}


def kustomize(*resources: str, **fields: Any) -> str:
    document: dict[str, Any] = {'apiVersion': 'kustomize.config.k8s.io/v1beta1', 'kind': 'Kustomization'}
    if resources:
        document['resources'] = list(resources)
    document.update(fields)
    return yaml.safe_dump(document, sort_keys=False)


def manifest(kind: str = 'ConfigMap', name: str = 'x') -> str:
    return yaml.safe_dump({'apiVersion': 'v1', 'kind': kind, 'metadata': {'name': name}})


def flux_kustomization_manifest(name: str, path: str) -> str:
    return yaml.safe_dump({'apiVersion': 'kustomize.toolkit.fluxcd.io/v1', 'kind': 'Kustomization',
                           'metadata': {'name': name, 'namespace': 'flux-system'},
                           'spec': {'path': path, 'sourceRef': {'kind': 'GitRepository', 'name': 'flux-system'}}})


# -- running the plan ------------------------------------------------------------------------------------

def make_repo(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = gitrepos.init(tmp_path / 'fleet')
    commit(root, 'initial', files)
    return root


@contextlib.contextmanager
def readers(root: Path, head: str, base: str | None) -> Iterator[tuple[gitctx.TreeReader, gitctx.TreeReader | None]]:
    with contextlib.ExitStack() as stack:
        new = stack.enter_context(gitctx.TreeReader(root, head))
        old = stack.enter_context(gitctx.TreeReader(root, base)) if base else None
        yield new, old


def assess(root: Path, changed: Sequence[str], kustomizations: Sequence[dict[str, Any]] = (),
           helmreleases: Sequence[dict[str, Any]] = (), generators: Sequence[dict[str, Any]] = (), *,
           head: str = 'HEAD', base: str | None = None,
           followed: set[tuple[str, str, str]] | None = None) -> dict[str, plan.Affected]:
    with readers(root, head, base) as (new, old):
        results = plan.affected_resources(new, old, changed, kustomizations, helmreleases, generators,
                                          {GIT} if followed is None else followed, CLUSTER)
    return {f'{r.key.kind}/{r.key.namespace}/{r.key.name}': r for r in results}


def affected(results: Mapping[str, plan.Affected]) -> set[str]:
    return {name for name, result in results.items() if result.affected}


def why(results: Mapping[str, plan.Affected], name: str) -> list[str]:
    return list(results[name].why)


# -- kustomization files ---------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def layered(tmp_path_factory) -> Path:
    """Overlays over a shared base, components, patches, generators and helm charts: read-only for its tests."""
    return make_repo(tmp_path_factory.mktemp('layered'), {
        'base/app/kustomization.yaml': kustomize('deployment.yaml', 'service.yaml'),
        'base/app/deployment.yaml': manifest('Deployment', 'app'),
        'base/app/service.yaml': manifest('Service', 'app'),
        'base/app/unused.yaml': manifest(),
        'components/monitoring/kustomization.yaml': yaml.safe_dump({
            'apiVersion': 'kustomize.config.k8s.io/v1alpha1', 'kind': 'Component',
            'resources': ['monitor.yaml'], 'patches': [{'path': 'scrape.yaml'}]}),
        'components/monitoring/monitor.yaml': manifest('ServiceMonitor'),
        'components/monitoring/scrape.yaml': manifest('Deployment', 'app'),
        'staging/kustomization.yaml': kustomize(
            '../base/app', 'https://github.com/org/remote//deploy?ref=v1', '../../outside.yaml',
            components=['../components/monitoring'],
            patches=[{'path': 'patches/replicas.yaml', 'target': {'kind': 'Deployment'}},
                     {'patch': '- op: add\n  path: /x\n  value: 1\n'}],
            patchesStrategicMerge=['patches/strategic.yaml'],
            patchesJson6902=[{'target': {'kind': 'Service', 'name': 'app'}, 'path': 'patches/json.yaml'}],
            configMapGenerator=[{'name': 'settings', 'files': ['app.conf', 'extra=config/extra.conf'],
                                 'envs': ['config/app.env']},
                                {'name': 'legacy', 'env': 'config/legacy.env'}],
            secretGenerator=[{'name': 'creds', 'files': ['secrets/token']}],
            helmCharts=[{'name': 'local', 'valuesFile': 'values/local.yaml',
                         'additionalValuesFiles': ['values/extra.yaml']}],
            helmGlobals={'chartHome': 'charts'},
            crds=['crds/widget.yaml'], openapi={'path': 'schema.json'},
            replacements=[{'path': 'replacements/image.yaml'}]),
        'staging/patches/replicas.yaml': manifest('Deployment', 'app'),
        'staging/patches/strategic.yaml': manifest('Deployment', 'app'),
        'staging/patches/json.yaml': '- op: replace\n  path: /spec/type\n  value: NodePort\n',
        'staging/patches/unused.yaml': manifest(),
        'staging/app.conf': 'a=1\n',
        'staging/config/extra.conf': 'b=2\n',
        'staging/config/app.env': 'C=3\n',
        'staging/config/legacy.env': 'D=4\n',
        'staging/secrets/token': 'sekret\n',
        'staging/values/local.yaml': 'replicas: 2\n',
        'staging/values/extra.yaml': 'debug: true\n',
        'staging/charts/local/Chart.yaml': 'apiVersion: v2\nname: local\nversion: 1.0.0\n',
        'staging/charts/local/templates/cm.yaml': manifest(),
        'staging/crds/widget.yaml': manifest('CustomResourceDefinition'),
        'staging/schema.json': '{}\n',
        'staging/replacements/image.yaml': 'source: {kind: ConfigMap}\n',
        'production/kustomization.yaml': kustomize('../base/app'),
        'outside.yaml': manifest(),
        'README.md': 'hello\n',
    })


LAYERED = [kustomization('staging', './staging'), kustomization('production', './production')]


@pytest.mark.parametrize(('changed', 'expected_why'), [
    ('staging/kustomization.yaml', ['staging/kustomization.yaml']),
    ('base/app/deployment.yaml', ['base/app/deployment.yaml', 'base/app/kustomization.yaml',
                                  'staging/kustomization.yaml']),
    ('components/monitoring/monitor.yaml', ['components/monitoring/monitor.yaml',
                                            'components/monitoring/kustomization.yaml', 'staging/kustomization.yaml']),
    ('components/monitoring/scrape.yaml', ['components/monitoring/scrape.yaml',
                                           'components/monitoring/kustomization.yaml', 'staging/kustomization.yaml']),
    ('staging/patches/replicas.yaml', ['staging/patches/replicas.yaml', 'staging/kustomization.yaml']),
    ('staging/patches/strategic.yaml', ['staging/patches/strategic.yaml', 'staging/kustomization.yaml']),
    ('staging/patches/json.yaml', ['staging/patches/json.yaml', 'staging/kustomization.yaml']),
    ('staging/app.conf', ['staging/app.conf', 'staging/kustomization.yaml']),
    ('staging/config/extra.conf', ['staging/config/extra.conf', 'staging/kustomization.yaml']),
    ('staging/config/app.env', ['staging/config/app.env', 'staging/kustomization.yaml']),
    ('staging/config/legacy.env', ['staging/config/legacy.env', 'staging/kustomization.yaml']),
    ('staging/secrets/token', ['staging/secrets/token', 'staging/kustomization.yaml']),
    ('staging/values/local.yaml', ['staging/values/local.yaml', 'staging/kustomization.yaml']),
    ('staging/values/extra.yaml', ['staging/values/extra.yaml', 'staging/kustomization.yaml']),
    ('staging/charts/local/templates/cm.yaml', ['staging/charts/local/templates/cm.yaml',
                                                'staging/kustomization.yaml']),
    ('staging/crds/widget.yaml', ['staging/crds/widget.yaml', 'staging/kustomization.yaml']),
    ('staging/schema.json', ['staging/schema.json', 'staging/kustomization.yaml']),
    ('staging/replacements/image.yaml', ['staging/replacements/image.yaml', 'staging/kustomization.yaml']),
])
def test_every_kind_of_kustomize_reference_is_followed(layered: Path, changed: str, expected_why: list[str]) -> None:
    results = assess(layered, [changed], LAYERED)
    assert why(results, 'Kustomization/flux-system/staging') == [*expected_why, 'Kustomization flux-system/staging']
    assert results['Kustomization/flux-system/production'].affected is changed.startswith('base/')


@pytest.mark.parametrize('changed', ['base/app/unused.yaml', 'staging/patches/unused.yaml', 'outside.yaml',
                                     'README.md', 'elsewhere/new.yaml'])
def test_files_nothing_references_affect_nothing(layered: Path, changed: str) -> None:
    results = assess(layered, [changed], LAYERED)
    assert affected(results) == set()
    assert results['Kustomization/flux-system/staging'].why == ()


def test_a_shared_base_affects_every_overlay_with_its_own_chain(layered: Path) -> None:
    results = assess(layered, ['base/app/service.yaml'], LAYERED)
    assert affected(results) == {'Kustomization/flux-system/staging', 'Kustomization/flux-system/production'}
    assert results['Kustomization/flux-system/production'].because == (
        'base/app/service.yaml ← base/app/kustomization.yaml ← production/kustomization.yaml ← '
        'Kustomization flux-system/production')


def test_the_shortest_chain_among_several_changed_files_is_the_why(layered: Path) -> None:
    results = assess(layered, ['base/app/service.yaml', 'staging/app.conf', 'README.md'], LAYERED)
    assert why(results, 'Kustomization/flux-system/staging') == [
        'staging/app.conf', 'staging/kustomization.yaml', 'Kustomization flux-system/staging']


def test_only_kustomizations_of_followed_sources_are_assessed(layered: Path) -> None:
    other = kustomization('tenant', './staging', source=('GitRepository', 'tenant'))
    oci = kustomization('oci', './', source=('OCIRepository', 'flux-system'))
    results = assess(layered, ['staging/app.conf'], [*LAYERED, other, oci])
    assert set(results) == {'Kustomization/flux-system/staging', 'Kustomization/flux-system/production'}


def test_a_broken_kustomization_file_still_counts_itself(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {'app/kustomization.yaml': 'resources: [ {path: \n', 'app/a.yaml': manifest()})
    results = assess(root, ['app/kustomization.yaml', 'app/a.yaml'], [kustomization('app', 'app')])
    assert why(results, 'Kustomization/flux-system/app') == ['app/kustomization.yaml', 'Kustomization flux-system/app']


def test_reference_cycles_end(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {'a/kustomization.yaml': kustomize('../b', 'a.yaml'), 'a/a.yaml': manifest(),
                                'b/kustomization.yaml': kustomize('../a', 'b.yaml'), 'b/b.yaml': manifest()})
    results = assess(root, ['b/b.yaml'], [kustomization('a', './a')])
    assert why(results, 'Kustomization/flux-system/a') == [
        'b/b.yaml', 'b/kustomization.yaml', 'a/kustomization.yaml', 'Kustomization flux-system/a']


def test_kustomization_file_names_and_their_preference(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {'yml/kustomization.yml': kustomize('a.yaml'), 'yml/a.yaml': manifest(),
                                'yml/b.yaml': manifest(),
                                'capital/Kustomization': kustomize('c.yaml'), 'capital/c.yaml': manifest()})
    kustomizations = [kustomization('yml', './yml'), kustomization('capital', './capital')]
    assert affected(assess(root, ['yml/a.yaml', 'capital/c.yaml'], kustomizations)) == {
        'Kustomization/flux-system/yml', 'Kustomization/flux-system/capital'}
    assert affected(assess(root, ['yml/b.yaml'], kustomizations)) == set()


# -- Flux's generated kustomization ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def generated(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp('generated'), {
        'clusters/staging/apps.yaml': manifest('Namespace', 'apps'),
        'clusters/staging/nested/deeper/infra.yml': manifest(),
        'clusters/staging/notes.txt': 'not a manifest\n',
        'clusters/staging/values.json': '{}\n',
        'clusters/staging/flux-system/kustomization.yaml': kustomize('gotk-sync.yaml', '../../../shared/extra.yaml'),
        'clusters/staging/flux-system/gotk-sync.yaml': manifest(),
        'clusters/staging/flux-system/unlisted.yaml': manifest(),
        'clusters/staging/flux-system/sub/inside.yaml': manifest(),
        'shared/extra.yaml': manifest(),
        'shared/other.yaml': manifest(),
        'clusters/production/apps.yaml': manifest(),
    })


@pytest.mark.parametrize(('changed', 'expected'), [
    ('clusters/staging/apps.yaml', ['clusters/staging/apps.yaml']),
    ('clusters/staging/nested/deeper/infra.yml', ['clusters/staging/nested/deeper/infra.yml']),
    ('clusters/staging/flux-system/kustomization.yaml', ['clusters/staging/flux-system/kustomization.yaml']),
    ('clusters/staging/flux-system/gotk-sync.yaml', ['clusters/staging/flux-system/gotk-sync.yaml',
                                                     'clusters/staging/flux-system/kustomization.yaml']),
    ('shared/extra.yaml', ['shared/extra.yaml', 'clusters/staging/flux-system/kustomization.yaml']),
    ('clusters/staging/notes.txt', None),
    ('clusters/staging/values.json', None),
    # A sub-directory with its own kustomization file is taken as a whole: only what that file references.
    ('clusters/staging/flux-system/unlisted.yaml', None),
    ('clusters/staging/flux-system/sub/inside.yaml', None),
    ('shared/other.yaml', None),
    ('clusters/production/apps.yaml', None),
])
def test_generated_kustomization_takes_manifests_below_and_nested_kustomizations_whole(
        generated: Path, changed: str, expected: list[str] | None) -> None:
    results = assess(generated, [changed], [kustomization('flux-system', './clusters/staging')])
    result = results['Kustomization/flux-system/flux-system']
    assert result.affected is (expected is not None)
    assert list(result.why) == ([*expected, 'Kustomization flux-system/flux-system'] if expected else [])


@pytest.mark.parametrize('path', [None, '', './', '/'])
def test_no_path_is_the_repository_root(generated: Path, path: str | None) -> None:
    results = assess(generated, ['clusters/production/apps.yaml'], [kustomization('root', path)])
    assert results['Kustomization/flux-system/root'].affected


def test_a_directory_resource_without_kustomization_file_counts_whole(tmp_path: Path) -> None:
    # kustomize refuses it; whatever is changed there may be what fixes the build.
    root = make_repo(tmp_path, {'app/kustomization.yaml': kustomize('../plain'), 'plain/a.yaml': manifest(),
                                'plain/sub/b.txt': 'x\n'})
    results = assess(root, ['plain/sub/b.txt'], [kustomization('app', './app')])
    assert why(results, 'Kustomization/flux-system/app') == [
        'plain/sub/b.txt', 'app/kustomization.yaml', 'Kustomization flux-system/app']


# -- before and after: deletions -------------------------------------------------------------------------

def test_a_deleted_file_counts_through_the_tree_before_the_change(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {'app/kustomization.yaml': kustomize('a.yaml', 'b.yaml'), 'app/a.yaml': manifest(),
                                'app/b.yaml': manifest(), 'gen/c.yaml': manifest(), 'gen/d.yaml': manifest()})
    base = git(root, 'rev-parse', 'HEAD')
    # app's kustomization file still names b.yaml: the build breaks, which is what makes app affected.
    head = commit(root, 'drop b and c', {'app/b.yaml': None, 'gen/c.yaml': None})
    changed = gitctx.changed_files(root, base, head)
    assert changed == ['app/b.yaml', 'gen/c.yaml']
    kustomizations = [kustomization('app', './app'), kustomization('gen', './gen')]
    results = assess(root, changed, kustomizations, head=head, base=base)
    assert why(results, 'Kustomization/flux-system/app') == [
        'app/b.yaml', 'app/kustomization.yaml', 'Kustomization flux-system/app']
    assert why(results, 'Kustomization/flux-system/gen') == ['gen/c.yaml', 'Kustomization flux-system/gen']
    # Without the tree before the change, a file that is gone is nowhere.
    assert affected(assess(root, changed, kustomizations, head=head)) == set()


def test_a_reference_dropped_with_its_file_counts_both_ways(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {'app/kustomization.yaml': kustomize('a.yaml', '../shared/b.yaml'),
                                'app/a.yaml': manifest(), 'shared/b.yaml': manifest(),
                                'other/kustomization.yaml': kustomize('../shared/b.yaml')})
    base = git(root, 'rev-parse', 'HEAD')
    head = commit(root, 'drop b', {'app/kustomization.yaml': kustomize('a.yaml'), 'shared/b.yaml': None,
                                   'other/kustomization.yaml': kustomize()})
    changed = gitctx.changed_files(root, base, head)
    results = assess(root, changed, [kustomization('app', './app'), kustomization('other', './other')],
                     head=head, base=base)
    assert affected(results) == {'Kustomization/flux-system/app', 'Kustomization/flux-system/other'}


def test_a_file_referenced_only_after_the_change_counts(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {'app/kustomization.yaml': kustomize('a.yaml'), 'app/a.yaml': manifest()})
    base = git(root, 'rev-parse', 'HEAD')
    head = commit(root, 'add b', {'app/kustomization.yaml': kustomize('a.yaml', 'b.yaml'), 'app/b.yaml': manifest()})
    results = assess(root, ['app/b.yaml'], [kustomization('app', './app')], head=head, base=base)
    assert results['Kustomization/flux-system/app'].affected


def test_the_commit_is_read_not_the_work_tree(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {'app/kustomization.yaml': kustomize('a.yaml'), 'app/a.yaml': manifest(),
                                'app/b.yaml': manifest()})
    (root / 'app/kustomization.yaml').write_text(kustomize('a.yaml', 'b.yaml'))  # not committed
    assert affected(assess(root, ['app/b.yaml'], [kustomization('app', './app')])) == set()


# -- ExternalArtifacts ------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def monorepo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp('monorepo'), {
        'deploy/frontend/kustomization.yaml': kustomize('deployment.yaml'),
        'deploy/frontend/deployment.yaml': manifest('Deployment', 'frontend'),
        'deploy/frontend/unused.yaml': manifest(),
        'deploy/frontend/README.md': 'docs\n',
        'deploy/backend/deployment.yaml': manifest('Deployment', 'backend'),
        'deploy/backend/sub/service.yaml': manifest('Service', 'backend'),
        'deploy/backend/test/fixture.yaml': manifest(),
        'config/prod/settings.yaml': manifest(),
        'config/base/app.yaml': manifest(),
        'config/base/more/deep.yaml': manifest(),
        'bundles/app.tar.gz': 'not really a tarball\n',
    })


EA = 'ExternalArtifact'


def artifact_kustomization(name: str, artifact: str, path: str = './') -> dict[str, Any]:
    return kustomization(name, path, source=(EA, artifact))


MONO_GENERATOR = generator('mono', [
    {'name': 'frontend', 'copy': [{'from': '@repo/deploy/frontend/**', 'to': '@artifact/'}]},
    {'name': 'backend', 'copy': [{'from': '@repo/deploy/backend/**', 'to': '@artifact/app/',
                                  'exclude': ['test/**', '*.md']},
                                 {'from': '@repo/config/prod/settings.yaml', 'to': '@artifact/app/env.yaml'}]},
    {'name': 'configs', 'copy': [{'from': '@repo/config/base', 'to': '@artifact/copied/'},
                                 {'from': '@repo/config/*/*.yaml', 'to': '@artifact/flat/'}]},
    {'name': 'bundle', 'copy': [{'from': '@repo/bundles/*.tar.gz', 'to': '@artifact/unpacked/',
                                 'strategy': 'Extract'}]},
])
MONO_KUSTOMIZATIONS = [
    artifact_kustomization('frontend', 'frontend'),
    artifact_kustomization('backend', 'backend', './app'),
    artifact_kustomization('backend-sub', 'backend', './app/sub'),
    artifact_kustomization('copied', 'configs', './copied/base'),
    artifact_kustomization('flat', 'configs', './flat/config/prod'),
    artifact_kustomization('unpacked', 'bundle', './unpacked'),
    artifact_kustomization('elsewhere', 'bundle', './other'),
]


@pytest.mark.parametrize(('changed', 'expected'), [
    # `dir/**` copies what is in dir; the artifact's own kustomization file decides what frontend builds.
    ('deploy/frontend/deployment.yaml', {'frontend': ['deploy/frontend/deployment.yaml', '@artifact/deployment.yaml',
                                                      '@artifact/kustomization.yaml']}),
    ('deploy/frontend/kustomization.yaml', {'frontend': ['deploy/frontend/kustomization.yaml',
                                                         '@artifact/kustomization.yaml']}),
    ('deploy/frontend/unused.yaml', {}),
    ('deploy/backend/deployment.yaml', {'backend': ['deploy/backend/deployment.yaml',
                                                    '@artifact/app/deployment.yaml']}),
    ('deploy/backend/sub/service.yaml', {
        'backend': ['deploy/backend/sub/service.yaml', '@artifact/app/sub/service.yaml'],
        'backend-sub': ['deploy/backend/sub/service.yaml', '@artifact/app/sub/service.yaml']}),
    ('deploy/backend/test/fixture.yaml', {}),  # excluded
    # A single file copied to a file name.
    ('config/prod/settings.yaml', {
        'backend': ['config/prod/settings.yaml', '@artifact/app/env.yaml'],
        'flat': ['config/prod/settings.yaml', '@artifact/flat/config/prod/settings.yaml']}),
    # A directory is copied as a sub-directory of the destination; other globs keep the whole matched path.
    ('config/base/more/deep.yaml', {'copied': ['config/base/more/deep.yaml', '@artifact/copied/base/more/deep.yaml']}),
    ('config/base/app.yaml', {'copied': ['config/base/app.yaml', '@artifact/copied/base/app.yaml']}),
    # What a tarball unpacks to is unknown: any Kustomization building where it unpacks.
    ('bundles/app.tar.gz', {'unpacked': ['bundles/app.tar.gz', '@artifact/unpacked']}),
    ('elsewhere/file.yaml', {}),
])
def test_external_artifacts_are_followed_through_copy_rules(monorepo: Path, changed: str,
                                                            expected: dict[str, list[str]]) -> None:
    results = assess(monorepo, [changed], MONO_KUSTOMIZATIONS, generators=[MONO_GENERATOR])
    assert affected(results) == {f'Kustomization/flux-system/{name}' for name in expected}
    for name, chain in expected.items():
        artifact = next(k['spec']['sourceRef']['name'] for k in MONO_KUSTOMIZATIONS if k['metadata']['name'] == name)
        assert why(results, f'Kustomization/flux-system/{name}') == [
            *chain, f'ExternalArtifact flux-system/{artifact}', f'Kustomization flux-system/{name}']


def test_artifacts_of_other_sources_are_not_assessed_and_later_copies_win(monorepo: Path) -> None:
    foreign = generator('foreign', [{'name': 'foreign', 'copy': [{'from': '@oci/**', 'to': '@artifact/'}]}],
                        sources=[('oci', 'OCIRepository', 'other')])
    overwritten = generator('over', [{'name': 'over', 'copy': [
        {'from': '@repo/config/prod/settings.yaml', 'to': '@artifact/app.yaml'},
        {'from': '@repo/config/base/app.yaml', 'to': '@artifact/'}]}])
    kustomizations = [artifact_kustomization('foreign', 'foreign'), artifact_kustomization('over', 'over')]
    results = assess(monorepo, ['config/prod/settings.yaml'], kustomizations, generators=[foreign, overwritten])
    assert set(results) == {'Kustomization/flux-system/over'}
    assert not results['Kustomization/flux-system/over'].affected
    assert assess(monorepo, ['config/base/app.yaml'], kustomizations,
                  generators=[foreign, overwritten])['Kustomization/flux-system/over'].affected


def test_an_external_artifact_without_its_generator_is_assumed_affected(monorepo: Path) -> None:
    followed = {GIT, (EA, 'flux-system', 'mystery')}
    results = assess(monorepo, ['README.md'], [artifact_kustomization('mystery', 'mystery')], followed=followed)
    result = results['Kustomization/flux-system/mystery']
    assert result.affected
    assert 'ExternalArtifact flux-system/mystery' in result.why[0]


def test_a_followed_oci_repository_cannot_be_traced_and_counts_as_affected(monorepo: Path) -> None:
    followed = {GIT, ('OCIRepository', 'flux-system', 'manifests')}
    results = assess(monorepo, ['README.md'], [kustomization('oci', './', source=('OCIRepository', 'manifests'))],
                     followed=followed)
    assert results['Kustomization/flux-system/oci'].why == (
        'OCIRepository flux-system/manifests is made from this repository, but not file by file that can be traced',
        'Kustomization flux-system/oci')


@pytest.mark.parametrize(('pattern', 'recursive', 'path', 'matches'), [
    ('*.yaml', False, 'a.yaml', True),
    ('*.yaml', False, 'dir/a.yaml', False),
    ('**', False, 'dir/a.yaml', False),
    ('**', True, 'dir/a.yaml', True),
    ('**/*.yaml', True, 'a.yaml', True),
    ('**/*.yaml', True, 'x/y/a.yaml', True),
    ('test/**', True, 'test/a/b.yaml', True),
    ('*.{yaml,yml}', True, 'a.yml', True),
    ('[!a]*.md', True, 'b.md', True),
    ('[^a]*.md', True, 'a.md', False),
    ('file?.txt', False, 'file1.txt', True),
    ('a.b', False, 'aXb', False),
])
def test_glob_patterns(pattern: str, recursive: bool, path: str, matches: bool) -> None:
    assert bool(plan._glob_regex(pattern, recursive).fullmatch(path)) is matches


# -- HelmReleases -----------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def charts(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp('charts'), {
        'charts/frontend/Chart.yaml': 'apiVersion: v2\nname: frontend\nversion: 1.0.0\n',
        'charts/frontend/templates/deployment.yaml': 'kind: Deployment\n',
        'charts/frontend-extra/Chart.yaml': 'apiVersion: v2\nname: frontend-extra\nversion: 1.0.0\n',
        'values/prod.yaml': 'replicas: 3\n',
        'apps/kustomization.yaml': kustomize('release.yaml'),
        'apps/release.yaml': manifest('HelmRelease', 'frontend'),
        'apps/other.yaml': manifest(),
        'infra/namespace.yaml': manifest('Namespace'),
    })


def git_chart_release(**kwargs: Any) -> dict[str, Any]:
    return helmrelease('frontend', chart='./charts/frontend', source=('GitRepository', 'flux-system', 'flux-system'),
                       values_files=['values/prod.yaml'], **kwargs)


@pytest.mark.parametrize(('changed', 'expected'), [
    ('charts/frontend/templates/deployment.yaml', ['charts/frontend/templates/deployment.yaml',
                                                   'HelmChart flux-system/demo-frontend', 'HelmRelease demo/frontend']),
    ('values/prod.yaml', ['values/prod.yaml', 'HelmChart flux-system/demo-frontend', 'HelmRelease demo/frontend']),
    ('charts/frontend-extra/Chart.yaml', None),
    ('apps/other.yaml', None),
])
def test_helmrelease_chart_from_the_repository(charts: Path, changed: str, expected: list[str] | None) -> None:
    results = assess(charts, [changed], [], [git_chart_release()])
    assert list(results['HelmRelease/demo/frontend'].why) == (expected or [])
    assert results['HelmRelease/demo/frontend'].affected is (expected is not None)


def test_helmrelease_applied_by_an_affected_kustomization(charts: Path) -> None:
    kustomizations = [kustomization('apps', './apps'), kustomization('infra', './infra')]
    releases = [helmrelease('by-label', applied_by='apps'), helmrelease('by-infra', applied_by='infra'),
                helmrelease('unrelated'),
                helmrelease('by-inventory')]
    kustomizations[0]['status']['inventory']['entries'].append({'id': 'demo_by-inventory_helm.toolkit.fluxcd.io_'
                                                                      'HelmRelease', 'v': 'v2'})
    results = assess(charts, ['apps/release.yaml'], kustomizations, releases)
    assert 'HelmRelease/demo/unrelated' not in results, 'neither its chart nor its applier is followed'
    assert affected(results) == {'Kustomization/flux-system/apps', 'HelmRelease/demo/by-label',
                                 'HelmRelease/demo/by-inventory'}
    assert results['HelmRelease/demo/by-label'].because == (
        'apps/release.yaml ← apps/kustomization.yaml ← Kustomization flux-system/apps ← HelmRelease demo/by-label')
    assert results['HelmRelease/demo/by-infra'].why == ()


def test_helmrelease_chart_from_a_generated_artifact(charts: Path) -> None:
    made = generator('chart', [{'name': 'frontend-chart', 'copy': [
        {'from': '@repo/charts/frontend/**', 'to': '@artifact/'},
        {'from': '@repo/values/prod.yaml', 'to': '@artifact/values.yaml'}]}])
    release = helmrelease('frontend', chart_ref={'kind': EA, 'name': 'frontend-chart', 'namespace': 'flux-system'})
    results = assess(charts, ['values/prod.yaml'], [], [release], [made])
    assert why(results, 'HelmRelease/demo/frontend') == [
        'values/prod.yaml', '@artifact/values.yaml', 'ExternalArtifact flux-system/frontend-chart',
        'HelmRelease demo/frontend']
    assert not assess(charts, ['apps/other.yaml'], [], [release], [made])['HelmRelease/demo/frontend'].affected


# -- Kustomizations applied by Kustomizations ---------------------------------------------------------------

def test_a_kustomization_whose_manifest_changed_is_affected_through_its_applier(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {
        'clusters/staging/apps.yaml': flux_kustomization_manifest('apps', './apps'),
        'clusters/staging/infra.yaml': flux_kustomization_manifest('infra', './infra'),
        'apps/a.yaml': manifest(), 'infra/b.yaml': manifest()})
    kustomizations = [kustomization('flux-system', './clusters/staging'),
                      kustomization('apps', './apps', applied_by='flux-system'),
                      kustomization('infra', './infra', applied_by='flux-system')]
    results = assess(root, ['clusters/staging/apps.yaml'], kustomizations)
    assert affected(results) == {'Kustomization/flux-system/flux-system', 'Kustomization/flux-system/apps'}
    assert results['Kustomization/flux-system/apps'].because == (
        'clusters/staging/apps.yaml ← Kustomization flux-system/flux-system ← Kustomization flux-system/apps')


# -- the scope wait uses, and the git edges -----------------------------------------------------------------

def test_scope_leaves_out_only_what_was_assessed_unaffected() -> None:
    def key(kind: str, name: str) -> ObjectKey:
        return ObjectKey(CLUSTER, kind, 'flux-system', name)

    scope = plan.Scope(frozenset({key('Kustomization', 'apps'), key('Kustomization', 'infra')}),
                       frozenset({key('Kustomization', 'apps')}))
    assert scope(key('Kustomization', 'apps'))
    assert not scope(key('Kustomization', 'infra'))
    assert scope(key('Kustomization', 'created-by-the-change'))
    assert scope(key('GitRepository', 'flux-system'))


def test_affected_scope_and_default_base(tmp_path: Path) -> None:
    _, work = gitrepos.remote_and_clone(tmp_path, {
        'apps/kustomization.yaml': kustomize('a.yaml'), 'apps/a.yaml': manifest(), 'infra/b.yaml': manifest()})
    pushed = git(work, 'rev-parse', 'HEAD')
    assert plan.default_base(work, pushed, 'origin', 'main') is None, 'a root commit: every file is new'
    first = commit(work, 'apps', {'apps/a.yaml': manifest(name='changed')})
    second = commit(work, 'infra', {'infra/b.yaml': manifest(name='changed')})
    assert plan.default_base(work, second, 'origin', 'main') == pushed, 'not pushed: against what Flux has'
    assert plan.default_base(work, first, None, None) == pushed, 'no upstream: against the first parent'
    gitrepos.push(work, 'main')
    assert plan.default_base(work, second, 'origin', 'main') == first, 'pushed: against the first parent'
    kustomizations = [kustomization('apps', './apps'), kustomization('infra', './infra')]
    scope = plan.affected_scope(work, second, pushed, CLUSTER, kustomizations, [], [], {GIT})
    assert scope.affected == {ObjectKey(CLUSTER, 'Kustomization', 'flux-system', 'apps'),
                              ObjectKey(CLUSTER, 'Kustomization', 'flux-system', 'infra')}
    scope = plan.affected_scope(work, second, first, CLUSTER, kustomizations, [], [], {GIT})
    assert scope.affected == {ObjectKey(CLUSTER, 'Kustomization', 'flux-system', 'infra')}
    assert len(scope.assessed) == 2


def test_followed_sources_match_as_wait_does() -> None:
    def source(kind: str, name: str, **spec: Any) -> dict[str, Any]:
        return {'apiVersion': 'v1', 'kind': kind, 'metadata': {'name': name, 'namespace': 'flux-system'},
                'spec': spec}

    target = Target(sha='a' * 40, repository='git@github.com:org/fleet.git', branch='main')
    sources = [
        source('ExternalArtifact', 'made', sourceRef={'kind': 'ArtifactGenerator', 'name': 'gen'}),
        source('GitRepository', 'fleet', url='https://github.com/org/fleet', ref={'branch': 'main'}),
        source('GitRepository', 'fleet-dev', url='https://github.com/org/fleet', ref={'branch': 'dev'}),
        source('GitRepository', 'other', url='https://github.com/org/other', ref={'branch': 'main'}),
        source('ArtifactGenerator', 'gen', sources=[{'alias': 'r', 'kind': 'GitRepository', 'name': 'fleet'}]),
    ]
    assert plan.followed_sources(target, CLUSTER, sources) == {
        ('GitRepository', 'flux-system', 'fleet'), ('ExternalArtifact', 'flux-system', 'made')}


# -- scale ---------------------------------------------------------------------------------------------------

def test_five_thousand_kustomizations_are_assessed_quickly(tmp_path: Path) -> None:
    files = {'base/kustomization.yaml': kustomize('deployment.yaml'), 'base/deployment.yaml': manifest()}
    for team in range(1000):
        files[f'teams/t{team}/kustomization.yaml'] = kustomize('../../base', 'config.yaml')
        files[f'teams/t{team}/config.yaml'] = manifest(name=f't{team}')
    root = make_repo(tmp_path, files)
    kustomizations = [kustomization(f'k{i}', f'./teams/t{i % 1000}') for i in range(5000)]
    started = time.monotonic()
    with readers(root, 'HEAD', None) as (new, _):
        change = plan.Change(new, None, ['teams/t7/config.yaml', 'base/deployment.yaml'])
        results = change.assess(CLUSTER, kustomizations, [], [], {GIT})
    # Each kustomization file is read once (a git round trip each): 1,001 here, whatever the number of readers.
    assert time.monotonic() - started < 15
    assert len(results) == 5000 and all(r.affected for r in results)
    assert sum(r.why[0] == 'teams/t7/config.yaml' for r in results) == 5

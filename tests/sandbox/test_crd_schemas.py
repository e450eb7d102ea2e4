"""Everything the simulated controllers write must be something the real CRDs (../shared/flux-crds) accept.

Each scenario runs a sandbox, then validates every version of every Flux object in the store's change history
(not only the final state) against the CRD's openAPIV3Schema. The schema is turned into JSON Schema the way the
API server reads it: unknown fields are pruned where the schema lists properties (so here they are errors),
`x-kubernetes-preserve-unknown-fields` keeps them, `nullable` admits null. CEL rules
(`x-kubernetes-validations`) are not evaluated.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema import FormatChecker

from flux_monitor_hook.sandbox.kinds import FLUX_KINDS
from tests.conftest import SHARED
from tests.sandbox.examples import KUSTOMIZE_HELM
from tests.sandbox.examples import MULTI_TENANCY
from tests.sandbox.examples import example_fleet
from tests.sandbox.examples import multi_tenancy_remotes
from tests.sandbox.fleet import AG
from tests.sandbox.fleet import GIT
from tests.sandbox.fleet import HR
from tests.sandbox.fleet import Cluster
from tests.sandbox.fleet import Fleet
from tests.sandbox.fleet import configmap
from tests.sandbox.fleet import deployment
from tests.sandbox.fleet import git_repository
from tests.sandbox.fleet import kustomization
from tests.sandbox.fleet import manifests
from tests.sandbox.fleet import reason
from tests.sandbox.fleet import running
from tests.sandbox.fleet import wait_for

CRDS = SHARED / 'flux-crds'
pytestmark = pytest.mark.skipif(not CRDS.is_dir(), reason=f'{CRDS} is absent (../shared not checked out)')

Obj = dict[str, Any]
FLUX_GROUPS = {kind.group for kind in FLUX_KINDS}
_RFC3339 = re.compile(r'^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$')


# -- the CRDs as JSON Schema ------------------------------------------------------------------------------

def _crd_documents() -> list[Obj]:
    return [doc for path in sorted(CRDS.glob('*.yaml')) for doc in yaml.safe_load_all(path.read_text()) if doc]


def to_json_schema(node: Any) -> Any:
    """An OpenAPI v3 structural schema as Draft 2020-12 JSON Schema, with the API server's pruning."""
    if not isinstance(node, dict):
        return node
    converted: Obj = {}
    for key, value in node.items():
        if key.startswith('x-kubernetes-') or key == 'nullable':
            continue
        if key in ('properties', 'patternProperties'):
            converted[key] = {name: to_json_schema(schema) for name, schema in value.items()}
        elif key in ('items', 'additionalProperties', 'not') and isinstance(value, dict):
            converted[key] = to_json_schema(value)
        elif key in ('allOf', 'anyOf', 'oneOf'):
            converted[key] = [to_json_schema(schema) for schema in value]
        else:
            converted[key] = value
    if node.get('nullable') and isinstance(converted.get('type'), str):
        converted['type'] = [converted['type'], 'null']
    if node.get('x-kubernetes-int-or-string'):
        converted.pop('type', None)
        converted.setdefault('anyOf', [{'type': 'integer'}, {'type': 'string'}])
    if 'properties' in converted and 'additionalProperties' not in converted and \
            not node.get('x-kubernetes-preserve-unknown-fields'):
        converted['additionalProperties'] = False  # the API server would silently drop anything else
    return converted


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks('date-time')
    def is_date_time(value: object) -> bool:
        return not isinstance(value, str) or bool(_RFC3339.match(value))

    return checker


@cache
def validators() -> dict[tuple[str, str, str], Draft202012Validator]:
    """(group, version, kind) to a validator for that served version."""
    found = {}
    checker = _format_checker()
    for crd in _crd_documents():
        spec = crd['spec']
        for version in spec['versions']:
            schema = to_json_schema(version['schema']['openAPIV3Schema'])
            found[(spec['group'], version['name'], spec['names']['kind'])] = Draft202012Validator(
                schema, format_checker=checker)
    return found


def _validator_for(obj: Obj) -> Draft202012Validator | None:
    group, _, version = obj['apiVersion'].rpartition('/')
    known = validators()
    if (group, version, obj['kind']) in known:
        return known[(group, version, obj['kind'])]
    # A version these CRDs no longer serve (an old manifest served on the fly): check the stored shape.
    return next((v for (g, _, k), v in known.items() if (g, k) == (group, obj['kind'])), None)


def _problems(obj: Obj) -> list[str]:
    validator = _validator_for(obj)
    if validator is None:
        return []
    name = f"{obj['kind']}/{obj['metadata'].get('namespace')}/{obj['metadata']['name']} rv " \
           f"{obj['metadata'].get('resourceVersion')}"
    return [f"{name}: {'.'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(obj) if not _local_git_url(obj, error)]


def _local_git_url(obj: Obj, error: Any) -> bool:
    """The one known deviation: the sandbox serves git from local paths, which spec.url's pattern (http, https,
    ssh) would refuse in a real cluster. Anything else wrong with a URL still fails."""
    return obj['kind'] == 'GitRepository' and list(error.absolute_path) == ['spec', 'url'] and \
        error.validator == 'pattern' and str(error.instance).startswith(('/', 'file://'))


def assert_everything_written_is_valid(cluster: Cluster, expected_kinds: set[str]) -> None:
    seen_kinds = set()
    problems = []
    for change in cluster.sb.store.changes_after(0):
        group = change.obj.get('apiVersion', '').rpartition('/')[0]
        if change.type == 'DELETED' or group not in FLUX_GROUPS:
            continue
        seen_kinds.add(change.obj['kind'])
        problems.extend(_problems(change.obj))
    assert not problems, '\n'.join(problems)
    assert expected_kinds <= seen_kinds, f'scenario did not produce {expected_kinds - seen_kinds}'


def test_the_converter_prunes_like_the_api_server() -> None:
    validator = validators()[('kustomize.toolkit.fluxcd.io', 'v1', 'Kustomization')]
    good = {'apiVersion': 'kustomize.toolkit.fluxcd.io/v1', 'kind': 'Kustomization',
            'metadata': {'name': 'a', 'namespace': 'b', 'anything': 1},
            'spec': {'interval': '10m', 'prune': True, 'sourceRef': {'kind': 'GitRepository', 'name': 'x'}},
            'status': {'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'ReconciliationSucceeded',
                                       'message': '', 'lastTransitionTime': '2026-07-30T10:02:11Z'}]}}
    assert list(validator.iter_errors(good)) == []
    bad = {**good, 'status': {**good['status'], 'lastAppliedRevison': 'typo'}}
    assert [e.message for e in validator.iter_errors(bad)] == [
        "Additional properties are not allowed ('lastAppliedRevison' was unexpected)"]
    when = {**good, 'status': {'conditions': [{**good['status']['conditions'][0], 'lastTransitionTime': 'soon'}]}}
    assert [e.validator for e in validator.iter_errors(when)] == ['format']


# -- FLUX_KINDS against the CRDs ---------------------------------------------------------------------------

def test_flux_kinds_match_the_crds() -> None:
    crds = {(doc['spec']['group'], doc['spec']['names']['kind']): doc for doc in _crd_documents()}
    assert {(kind.group, kind.kind) for kind in FLUX_KINDS} == set(crds)
    for kind in FLUX_KINDS:
        spec = crds[(kind.group, kind.kind)]['spec']
        names = spec['names']
        assert (kind.plural, kind.short_names, kind.categories) == (
            names['plural'], tuple(names.get('shortNames') or ()), tuple(names.get('categories') or ())), kind.kind
        assert spec['scope'] == 'Namespaced', kind.kind
        served = [v for v in spec['versions'] if v.get('served')]
        assert set(kind.versions) == {v['name'] for v in served}, kind.kind
        assert kind.versions[0] == next(v['name'] for v in spec['versions'] if v.get('storage')), kind.kind
        assert all('status' in (v.get('subresources') or {}) for v in served), kind.kind
        assert not set(kind.old_versions) & {v['name'] for v in served}, 'old versions are extra, on request'


# -- scenarios ---------------------------------------------------------------------------------------------

def _kustomize_helm(tmp_path: Path) -> tuple[dict, Callable[[Cluster], None], set[str]]:
    fleet = example_fleet(KUSTOMIZE_HELM, tmp_path)

    def play(cluster: Cluster) -> None:
        cluster.wait_applied(fleet.revision(), 'apps', timeout=20)
        pushed = fleet.push('broken', {'apps/staging/kustomization.yaml': 'resources: [ ../base/podinfo\n'})
        cluster.fetch()
        cluster.wait_ready_reason(lambda: cluster.ks('apps'), 'False/BuildFailed', 'apps', timeout=20)
        cluster.wait_applied(fleet.revision(pushed), 'infra-configs', timeout=20)

    return {'repo': fleet.bare, 'cluster_path': 'clusters/staging'}, play, {
        'GitRepository', 'Kustomization', 'HelmRepository', 'HelmChart', 'HelmRelease'}


def _multi_tenancy(tmp_path: Path) -> tuple[dict, Callable[[Cluster], None], set[str]]:
    fleet = example_fleet(MULTI_TENANCY, tmp_path)

    def play(cluster: Cluster) -> None:
        cluster.wait_ready_reason(lambda: cluster.ks('dev-team', 'apps'), 'True/ReconciliationSucceeded', 'dev-team',
                                  timeout=20)
        cluster.wait_applied(fleet.revision(), 'kyverno-policies', timeout=20)

    return {'repo': fleet.bare, 'cluster_path': 'clusters/production', 'remotes': multi_tenancy_remotes(tmp_path),
            'flux_instance': True}, play, {'GitRepository', 'Kustomization', 'OCIRepository', 'FluxInstance'}


def _failures(tmp_path: Path) -> tuple[dict, Callable[[Cluster], None], set[str]]:
    release = {'apiVersion': HR, 'kind': 'HelmRelease', 'metadata': {'name': 'broken', 'namespace': 'default'},
               'spec': {'interval': '5m', 'values': {'sandboxFail': 'rendered manifests contain errors'},
                        'chart': {'spec': {'chart': 'podinfo',
                                           'sourceRef': {'kind': 'HelmRepository', 'name': 'repo'}}}}}
    from_git = {'apiVersion': HR, 'kind': 'HelmRelease', 'metadata': {'name': 'local', 'namespace': 'default'},
                'spec': {'interval': '5m', 'dependsOn': [{'name': 'broken'}], 'chart': {'spec': {
                    'chart': './charts/app', 'reconcileStrategy': 'Revision', 'valuesFiles': ['values.yaml'],
                    'sourceRef': {'kind': 'GitRepository', 'name': 'flux-system', 'namespace': 'flux-system'}}}}}
    oci_release = {'apiVersion': HR, 'kind': 'HelmRelease', 'metadata': {'name': 'oci', 'namespace': 'default'},
                   'spec': {'interval': '5m', 'chartRef': {'kind': 'OCIRepository', 'name': 'chart'}}}
    generator = {'apiVersion': AG, 'kind': 'ArtifactGenerator', 'metadata': {'name': 'gen', 'namespace': 'flux-system'},
                 'spec': {'sources': [{'alias': 'fleet', 'kind': 'GitRepository', 'name': 'flux-system'}],
                          'artifacts': [{'name': 'web', 'originRevision': '@fleet',
                                         'copy': [{'from': '@fleet/web/**', 'to': '@artifact/'}]}]}}
    sources = manifests(
        {'apiVersion': GIT, 'kind': 'HelmRepository', 'metadata': {'name': 'repo', 'namespace': 'default'},
         'spec': {'interval': '5m', 'url': 'https://charts.example.com'}},
        {'apiVersion': GIT, 'kind': 'HelmRepository', 'metadata': {
            'name': 'down', 'namespace': 'default', 'annotations': {'sandbox.flux-monitor.io/unreachable': 'true'}},
         'spec': {'interval': '5m', 'url': 'https://down.example.com'}},
        {'apiVersion': GIT, 'kind': 'HelmRepository', 'metadata': {'name': 'oci-repo', 'namespace': 'default'},
         'spec': {'interval': '5m', 'type': 'oci', 'url': 'oci://ghcr.io/example'}},
        {'apiVersion': GIT, 'kind': 'OCIRepository', 'metadata': {'name': 'chart', 'namespace': 'default'},
         'spec': {'interval': '5m', 'url': 'oci://ghcr.io/example/chart', 'ref': {'tag': '1.2.3'}}},
        {'apiVersion': GIT, 'kind': 'OCIRepository', 'metadata': {
            'name': 'gone', 'namespace': 'default', 'annotations': {'sandbox.flux-monitor.io/unavailable': 'true'}},
         'spec': {'interval': '5m', 'url': 'oci://ghcr.io/example/gone', 'ref': {'digest': 'sha256:' + 'a' * 64}}},
        {'apiVersion': GIT, 'kind': 'Bucket', 'metadata': {'name': 'bucket', 'namespace': 'default'},
         'spec': {'interval': '5m', 'bucketName': 'fleet', 'endpoint': 'minio.example.com'}},
        git_repository('elsewhere', 'https://github.com/example/unreachable', {'branch': 'main'}),
    )
    stuck = deployment('web', annotations={'sandbox.flux-monitor.io/rollout': 'never'})
    fleet = Fleet.create(tmp_path, {
        'clusters/test/sources.yaml': sources,
        'clusters/test/releases.yaml': manifests(release, from_git, oci_release),
        'clusters/test/stack.yaml': manifests(
            kustomization('health', './health', wait=True, timeout='30s'),
            kustomization('gated', './gated', dependsOn=[{'name': 'health'}]),
            kustomization('lost', './not/there'),
            generator,
            kustomization('web', './', sourceRef={'kind': 'ExternalArtifact', 'name': 'web'})),
        'health/web.yaml': manifests(stuck),
        'gated/config.yaml': manifests(configmap('gated')),
        'web/config.yaml': manifests(configmap('web')),
        'charts/app/Chart.yaml': 'apiVersion: v2\nname: app\nversion: 1.0.0\n',
        'charts/app/values.yaml': 'replicas: 1\n',
    })

    def play(cluster: Cluster) -> None:
        cluster.sb.apply(git_repository('no-secret', fleet.bare, {'branch': 'main'}, secretRef={'name': 'auth'}))
        expectations = [
            (lambda: cluster.ks('health'), 'False/HealthCheckFailed'),
            (lambda: cluster.ks('gated'), 'False/DependencyNotReady'),
            (lambda: cluster.ks('lost'), 'False/ArtifactFailed'),
            (lambda: cluster.ks('web'), 'True/ReconciliationSucceeded'),
            (lambda: cluster.hr('broken'), 'False/InstallFailed'),
            (lambda: cluster.hr('local'), 'False/DependencyNotReady'),
            (lambda: cluster.hr('oci'), 'True/InstallSucceeded'),
            (lambda: cluster.git('no-secret'), 'False/AuthenticationFailed'),
            (lambda: cluster.git('elsewhere'), 'False/GitOperationFailed'),
            (lambda: cluster.get(GIT, 'HelmRepository', 'down', 'default'), 'False/IndexationFailed'),
            (lambda: cluster.get(GIT, 'OCIRepository', 'gone', 'default'), 'False/OCIArtifactPullFailed'),
            (lambda: cluster.get(GIT, 'Bucket', 'bucket', 'default'), 'False/BucketOperationFailed'),
            (lambda: cluster.get(GIT, 'HelmChart', 'default-local'), 'True/ChartPackageSucceeded'),
        ]
        for fetch, expected in expectations:
            cluster.wait_ready_reason(fetch, expected, str(expected))
        wait_for(lambda: reason(cluster.hr('broken'), 'Stalled'), 'broken to stall')

    return {'repo': fleet.bare, 'cluster_path': 'clusters/test', 'flux_instance': True}, play, {
        'GitRepository', 'HelmRepository', 'HelmChart', 'OCIRepository', 'Bucket', 'Kustomization', 'HelmRelease',
        'ArtifactGenerator', 'ExternalArtifact', 'FluxInstance'}


SCENARIOS = {'kustomize-helm': _kustomize_helm, 'multi-tenancy': _multi_tenancy, 'failures': _failures}


@pytest.mark.parametrize('scenario', sorted(SCENARIOS))
def test_every_object_written_matches_its_crd(tmp_path: Path, scenario: str) -> None:
    if scenario != 'failures' and not (SHARED / 'flux-examples').is_dir():
        pytest.skip('../shared/flux-examples is absent')
    options, play, kinds = SCENARIOS[scenario](tmp_path)
    with running(**options) as cluster:
        play(cluster)
        assert_everything_written_is_valid(cluster, kinds)

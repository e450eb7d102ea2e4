"""build: Flux's kustomize build of real repository layouts, with kubectl and with the fallback."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from flux_monitor_hook.sandbox import build
from flux_monitor_hook.sandbox import gitsource
from flux_monitor_hook.sandbox import kustomize_fallback
from flux_monitor_hook.sandbox.build import BuildError
from flux_monitor_hook.sandbox.build import PathNotFoundError
from tests.sandbox import gitutil

EXAMPLES = Path('/work/shared/flux-examples')
HAS_KUBECTL = shutil.which('kubectl') is not None
needs_kubectl = pytest.mark.skipif(not HAS_KUBECTL, reason='kubectl not installed')
BACKENDS = [pytest.param(True, marks=needs_kubectl, id='kubectl'),
            pytest.param(False, id='fallback')]


def _flux_kustomizations(example: str) -> list[tuple[str, dict[str, Any]]]:
    """Every Kustomization spec the example's cluster folders declare, plus the bootstrap ones."""
    specs: list[tuple[str, dict[str, Any]]] = [
        (f'bootstrap-{env}', {'path': f'./clusters/{env}'}) for env in ('staging', 'production')]
    for path in sorted((EXAMPLES / example / 'clusters').glob('*/*.yaml')):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get('kind') == 'Kustomization' and \
                    doc['apiVersion'].startswith('kustomize.toolkit.fluxcd.io/'):
                specs.append((f'{path.parent.name}-{doc["metadata"]["name"]}', doc['spec']))
    return specs


LAYOUTS = [(example, label, spec)
           for example in ('flux2-kustomize-helm-example', 'flux2-multi-tenancy')
           for label, spec in _flux_kustomizations(example)]


@pytest.fixture(scope='module')
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each example committed to a real repository and exported as source-controller would."""
    base = tmp_path_factory.mktemp('examples')
    exported = {}
    for example in ('flux2-kustomize-helm-example', 'flux2-multi-tenancy'):
        repo, sha = gitutil.repo_from_dir(EXAMPLES / example, base / example)
        exported[example] = gitsource.export_tree(str(repo), sha, base / 'exports')
    return exported


def _ids(objects: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((o['kind'], o['metadata'].get('namespace', ''), o['metadata']['name'])
                  for o in objects)


def _snapshot(tree: Path) -> dict[str, tuple[int, bytes]]:
    return {p.relative_to(tree).as_posix(): (p.stat().st_ino, p.read_bytes())
            for p in sorted(tree.rglob('*')) if p.is_file()}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / 'tree'
    gitutil.write_files(root, files)
    return root


def _normalised(objects: list[dict[str, Any]]) -> list[Any]:
    return json.loads(json.dumps(objects, sort_keys=True))


# -- the example layouts ---------------------------------------------------------------------------


def test_the_examples_declare_the_expected_paths() -> None:
    paths = {spec['path'] for _, _, spec in LAYOUTS}
    assert paths == {
        './clusters/staging', './clusters/production', './infrastructure/controllers',
        './infrastructure/configs', './apps/staging', './apps/production',
        './infrastructure/kyverno', './infrastructure/kyverno-policies', './tenants/staging',
        './tenants/production'}


@needs_kubectl
@pytest.mark.parametrize(('example', 'label', 'spec'), LAYOUTS,
                         ids=[f'{e.split("-")[1]}-{label}' for e, label, _ in LAYOUTS])
def test_kubectl_and_fallback_agree_on_the_examples(trees: dict[str, Path], example: str,
                                                    label: str, spec: dict[str, Any]) -> None:
    tree = trees[example]
    before = _snapshot(tree)
    real = build.build_manifests(tree, spec, use_kubectl=True)
    fallback = build.build_manifests(tree, spec, use_kubectl=False)
    assert real, 'every example path builds to something'
    assert _ids(real) == _ids(fallback)
    assert _normalised(real) == _normalised(fallback)
    assert _snapshot(tree) == before, 'the export cache is never written'


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_example_contents(trees: dict[str, Path], use_kubectl: bool) -> None:
    helm = trees['flux2-kustomize-helm-example']
    cluster = build.build_manifests(helm, {'path': './clusters/staging'}, use_kubectl=use_kubectl)
    # Generated kustomization: ./flux-system (placeholders only) plus the two Kustomization files.
    assert _ids(cluster) == [('Kustomization', 'flux-system', 'apps'),
                             ('Kustomization', 'flux-system', 'infra-configs'),
                             ('Kustomization', 'flux-system', 'infra-controllers')]
    apps = build.build_manifests(helm, {'path': './apps/production'}, use_kubectl=use_kubectl)
    release = next(o for o in apps if o['kind'] == 'HelmRelease')
    assert release['spec']['chart']['spec']['version'] == '>=1.0.0'
    assert release['spec']['values']['ingress']['hosts'][0]['host'] == 'podinfo.production'
    assert release['spec']['values']['redis']['enabled'] is True, 'merged, not replaced'
    infra_configs = next(spec for _, label, spec in LAYOUTS if label == 'production-infra-configs')
    issuers = build.build_manifests(helm, infra_configs, use_kubectl=use_kubectl)
    assert issuers[0]['spec']['acme']['server'] == \
        'https://acme-v02.api.letsencrypt.org/directory', 'spec.patches applied'
    tenants = build.build_manifests(trees['flux2-multi-tenancy'], {'path': './tenants/staging'},
                                    use_kubectl=use_kubectl)
    dev_team = next(o for o in tenants if o['kind'] == 'Kustomization')
    assert dev_team['spec']['path'] == './staging'
    assert dev_team['metadata']['namespace'] == 'apps'


# -- Flux's generated kustomization ----------------------------------------------------------------

NESTED = {
    'apps/app.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: top\n',
    'apps/notes.txt': 'not yaml, not included',
    'apps/empty.yml': '# only a comment\n',
    'apps/plain/deep/cm.yml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\n'
                              '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: deep\n',
    'apps/withk/kustomization.yaml': 'resources: [listed.yaml]\nnamePrefix: k-\n',
    'apps/withk/listed.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: listed\n',
    'apps/withk/unlisted.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unlisted\n',
    'apps/withk/sub/ignored.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nope\n',
}


def test_generate_kustomization_follows_flux(tmp_path: Path) -> None:
    tree = _tree(tmp_path, NESTED)
    assert build.generate_kustomization(tree / 'apps') == {
        'apiVersion': 'kustomize.config.k8s.io/v1beta1', 'kind': 'Kustomization',
        'resources': ['./app.yaml', './empty.yml', './plain/deep/cm.yml', './withk']}
    (tree / 'void').mkdir()
    assert build.generate_kustomization(tree / 'void')['namespace'] == '_placeholder'


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_generated_kustomization_builds_without_touching_the_tree(tmp_path: Path,
                                                                  use_kubectl: bool) -> None:
    tree = _tree(tmp_path, NESTED)
    before = _snapshot(tree)
    objects = build.build_manifests(tree, {'path': './apps'}, use_kubectl=use_kubectl)
    assert _ids(objects) == [('ConfigMap', '', 'deep'), ('ConfigMap', '', 'k-listed'),
                             ('ConfigMap', '', 'top'), ('Secret', '', 'deep')]
    assert _snapshot(tree) == before
    assert not (tree / 'apps' / 'kustomization.yaml').exists()
    (tree / 'void').mkdir()
    assert build.build_manifests(tree, {'path': 'void'}, use_kubectl=use_kubectl) == []


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_build_of_a_bare_directory_reaching_outside_it(tmp_path: Path, use_kubectl: bool) -> None:
    # What a caller that only knows spec.path's directory does: no root, generated kustomization,
    # and a nested kustomization that reaches up and out of that directory.
    tree = _tree(tmp_path, {
        'shared/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n',
        'clusters/dev/infra/kustomization.yaml': 'resources: [../../../shared/cm.yaml]\n',
        'clusters/dev/app.yaml': 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n',
    })
    before = _snapshot(tree)
    objects = build.build_kustomization(tree / 'clusters' / 'dev', use_kubectl=use_kubectl)
    assert _ids(objects) == [('ConfigMap', '', 'shared'), ('Secret', '', 'app')]
    assert _snapshot(tree) == before


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_flux_fields_act_in_the_directorys_own_kustomization(tmp_path: Path,
                                                            use_kubectl: bool) -> None:
    tree = _tree(tmp_path, {
        'base/kustomization.yaml': 'resources: [deploy.yaml]\n',
        'base/deploy.yaml': 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n'
                            'spec:\n  template:\n    spec:\n      containers:\n'
                            '      - name: app\n        image: nginx:1.0\n',
        'app/kustomization.yaml': 'resources: [../base]\nimages:\n- name: nginx\n  newTag: "1.1"\n',
        'comp/kustomization.yaml': 'apiVersion: kustomize.config.k8s.io/v1alpha1\n'
                                   'kind: Component\nresources: [extra.yaml]\n',
        'comp/extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n',
    })
    before = _snapshot(tree)
    spec = {
        'path': './app', 'targetNamespace': 'team', 'namePrefix': 'p-',
        'components': ['../comp', '../missing'], 'ignoreMissingComponents': True,
        'images': [{'name': 'nginx', 'newName': 'registry.local/nginx'}],
        'patches': [{'target': {'kind': 'Deployment', 'name': 'web'},
                     'patch': '- op: add\n  path: /spec/replicas\n  value: 2\n'}],
        'commonMetadata': {'labels': {'owner': 'sre'}},
    }
    objects = build.build_manifests(tree, spec, use_kubectl=use_kubectl)
    assert _ids(objects) == [('ConfigMap', 'team', 'p-extra'), ('Deployment', 'team', 'p-web')]
    deployment = next(o for o in objects if o['kind'] == 'Deployment')
    assert deployment['spec']['replicas'] == 2
    assert deployment['spec']['template']['spec']['containers'][0]['image'] == \
        'registry.local/nginx:1.1', 'spec.images merges with the kustomization images'
    assert all(o['metadata']['labels'] == {'owner': 'sre'} for o in objects)
    assert _snapshot(tree) == before, 'the amended kustomization went to a private copy'
    with pytest.raises(BuildError, match="component path 'https://x/y' must be local"):
        build.build_manifests(tree, {'path': './app', 'components': ['https://x/y']},
                              use_kubectl=use_kubectl)


RICH = {
    'base/kustomization.yaml': """\
namespace: web
commonLabels: {app: web}
resources: [deploy.yaml, svc.yaml, rbac.yaml]
configMapGenerator:
- name: settings
  literals: [LOG_LEVEL=info, "GREETING=hello <world> & co"]
  files: [app.properties]
secretGenerator:
- name: creds
  literals: [password=s3cret]
""",
    'base/app.properties': 'a=1\nb=2\n',
    'base/deploy.yaml': """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  template:
    spec:
      serviceAccountName: web
      containers:
      - name: app
        image: ghcr.io/example/web:1.0.0
        envFrom: [{configMapRef: {name: settings}}]
        env:
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: creds, key: password}}
      - name: sidecar
        image: busybox
      volumes:
      - name: cfg
        configMap: {name: settings}
""",
    'base/svc.yaml': 'apiVersion: v1\nkind: Service\nmetadata: {name: web}\n'
                     'spec:\n  ports: [{port: 80}]\n',
    'base/rbac.yaml': """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: web}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: web}]
""",
    'comp/kustomization.yaml': """\
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
resources: [extra.yaml]
patches:
- target: {kind: Deployment}
  patch: |
    - op: add
      path: /spec/template/spec/containers/0/args
      value: ["--feature=on"]
""",
    'comp/extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {k: v}\n',
    'overlay/kustomization.yaml': """\
namePrefix: prod-
nameSuffix: -v1
resources: [../base]
components: [../comp]
commonAnnotations: {team: platform}
labels:
- pairs: {env: prod}
images:
- {name: ghcr.io/example/web, newTag: 2.0.0}
replicas:
- {name: web, count: 3}
configMapGenerator:
- name: settings
  behavior: merge
  literals: [LOG_LEVEL=debug]
patches:
- path: resources-patch.yaml
- patch: |
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: web}
    spec: {type: NodePort}
patchesStrategicMerge:
- |
  apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: web}
  spec:
    template:
      spec:
        containers:
        - name: sidecar
          $patch: delete
patchesJson6902:
- target: {group: apps, version: v1, kind: Deployment, name: prod-web-v1}
  patch: |
    - {op: add, path: /metadata/labels/patched, value: "yes"}
""",
    'overlay/resources-patch.yaml': """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  template:
    spec:
      containers:
      - name: app
        resources: {limits: {memory: 128Mi}}
""",
}


def test_fallback_features_without_kubectl(tmp_path: Path) -> None:
    tree = _tree(tmp_path, RICH)
    objects = build.build_manifests(tree, {'path': 'overlay'}, use_kubectl=False)
    by_kind = {o['kind']: o for o in objects}
    configmap = next(o for o in objects if o['metadata']['name'].startswith('prod-settings-v1-'))
    assert configmap['metadata']['name'] == 'prod-settings-v1-fbc2k2fm9g', "kustomize's hash"
    assert configmap['data']['LOG_LEVEL'] == 'debug'
    assert by_kind['Secret']['metadata']['name'] == 'prod-creds-v1-bf5fk5d75b'
    deployment = by_kind['Deployment']
    pod = deployment['spec']['template']['spec']
    assert [c['name'] for c in pod['containers']] == ['app']
    assert pod['containers'][0]['image'] == 'ghcr.io/example/web:2.0.0'
    env_from = pod['containers'][0]['envFrom'][0]
    assert env_from['configMapRef']['name'] == configmap['metadata']['name']
    assert pod['serviceAccountName'] == 'prod-web-v1'
    assert deployment['spec']['replicas'] == 3
    assert deployment['spec']['selector'] == {'matchLabels': {'app': 'web'}}
    assert by_kind['RoleBinding']['roleRef']['name'] == 'prod-reader-v1'
    assert by_kind['Service']['spec']['type'] == 'NodePort'
    assert [o['kind'] for o in objects][:4] == ['ServiceAccount', 'Role', 'RoleBinding',
                                                'ConfigMap'], "kustomize's legacy order"


RICH2 = {
    'kustomization.yaml': """\
namespace: ops
labels:
- pairs: {tier: backend}
  includeSelectors: true
- pairs: {team: a}
  includeTemplates: true
commonAnnotations: {note: x}
resources: [r.yaml]
generatorOptions:
  disableNameSuffixHash: true
  labels: {generated: "true"}
secretGenerator:
- name: tls
  type: kubernetes.io/tls
  literals: [tls.crt=abc, tls.key=def]
- name: envsec
  envs: [vars.env]
  options: {disableNameSuffixHash: false}
patches:
- patch: |
    apiVersion: batch/v1
    kind: CronJob
    metadata: {name: job}
    spec:
      jobTemplate:
        spec:
          template:
            spec:
              containers:
              - name: c
                env:
                - {name: B, value: "2"}
                - {name: A, value: "override"}
""",
    'vars.env': '# comment\nFOO=bar\nEMPTY=\n',
    'r.yaml': """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: job}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: x
            image: x
          - name: c
            image: busybox
            env: [{name: A, value: "1"}, {name: C, value: "3"}]
            envFrom: [{secretRef: {name: envsec}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: crb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: ServiceAccount, name: default, namespace: default}
- {kind: ServiceAccount, name: other, namespace: elsewhere}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  selector: {app: x}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  template:
    spec:
      containers: [{name: db, image: postgres}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce]}
""",
}


@needs_kubectl
@pytest.mark.parametrize(('files', 'path'), [(RICH, 'overlay'), (RICH2, '.')],
                         ids=['overlay', 'labels-generators-smp'])
def test_fallback_matches_kustomize_on_feature_rich_kustomizations(
        tmp_path: Path, files: dict[str, str], path: str) -> None:
    tree = _tree(tmp_path, files)
    real = build.build_manifests(tree, {'path': path}, use_kubectl=True)
    fallback = build.build_manifests(tree, {'path': path}, use_kubectl=False)
    assert _normalised(real) == _normalised(fallback)


def test_fallback_refuses_what_it_cannot_build(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {
        'a/kustomization.yaml': 'resources: [cm.yaml]\nreplacements:\n- path: r.yaml\n',
        'a/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n',
        'b/kustomization.yaml': 'resources: [https://github.com/org/repo//base?ref=v1]\n',
        'c/kustomization.yaml': 'resources: [../../outside.yaml]\n',
    })
    (tmp_path / 'outside.yaml').write_text('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: o}\n')
    with pytest.raises(BuildError) as unsupported:
        build.build_manifests(tree, {'path': 'a'}, use_kubectl=False)
    assert "kustomization field 'replacements'" in unsupported.value.message
    with pytest.raises(BuildError, match='remote resource'):
        build.build_manifests(tree, {'path': 'b'}, use_kubectl=False)
    with pytest.raises(BuildError, match='is not in or below the source root'):
        build.build_manifests(tree, {'path': 'c'}, use_kubectl=False)
    assert kustomize_fallback.SUPPORTED_FIELDS >= {'resources', 'patches', 'components'}


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_broken_kustomizations_fail_like_flux(tmp_path: Path, use_kubectl: bool) -> None:
    tree = _tree(tmp_path, {
        'missing/kustomization.yaml': 'resources: [deployment.yaml]\n',
        'syntax/kustomization.yaml': 'resources: [\n',
        'unknown/kustomization.yaml': 'resources: []\nfiles: [x]\n',
        'nometa/kustomization.yaml': 'resources: [values.yaml]\n',
        'nometa/values.yaml': 'replicaCount: 2\n',
        'nomatch/kustomization.yaml': 'resources: [cm.yaml]\npatches:\n- patch: |\n'
                                      '    apiVersion: v1\n    kind: ConfigMap\n'
                                      '    metadata: {name: other}\n    data: {a: b}\n',
        'nomatch/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n',
        'generated/nested/kustomization.yaml': 'resources: [gone.yaml]\n',
    })
    messages = {}
    for path in ('missing', 'syntax', 'unknown', 'nometa', 'nomatch', 'generated'):
        with pytest.raises(BuildError) as caught:
            build.build_manifests(tree, {'path': path}, use_kubectl=use_kubectl)
        assert caught.value.reason == 'BuildFailed'
        assert not isinstance(caught.value, PathNotFoundError)
        message = caught.value.message
        assert message.startswith('kustomize build failed: '), message
        assert 'error: ' not in message and str(tmp_path) not in message, message
        assert 'kustomization-' not in message, 'no scratch directories in messages'
        messages[path] = message
    assert "accumulating resources from 'deployment.yaml'" in messages['missing']
    assert 'missing/deployment.yaml: no such file or directory' in messages['missing']
    assert 'invalid Kustomization' in messages['syntax']
    assert "accumulating resources from 'gone.yaml': open generated/nested/gone.yaml" in \
        messages['generated']
    assert messages['unknown'] == 'kustomize build failed: invalid Kustomization: ' \
                                  'json: unknown field "files"'
    assert "accumulating resources from 'values.yaml': missing Resource metadata" in \
        messages['nometa']
    assert messages['nomatch'].endswith(
        'no resource matches strategic merge patch "ConfigMap.v1.[noGrp]/other.[noNs]": '
        'no matches for Id ConfigMap.v1.[noGrp]/other.[noNs]; failed to find unique target for '
        'patch ConfigMap.v1.[noGrp]/other.[noNs]')


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_generated_kustomization_rejects_non_kubernetes_yaml(tmp_path: Path,
                                                             use_kubectl: bool) -> None:
    tree = _tree(tmp_path, {'chart/values.yaml': 'replicaCount: 2\n',
                            'named/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n'})
    with pytest.raises(BuildError) as caught:
        build.build_manifests(tree, {'path': './chart'}, use_kubectl=use_kubectl)
    assert caught.value.message == \
        'failed to decode Kubernetes YAML from chart/values.yaml: missing Resource metadata'
    with pytest.raises(BuildError) as unnamed:
        build.build_manifests(tree, {'path': './named'}, use_kubectl=use_kubectl)
    assert unnamed.value.message == (
        'failed to decode Kubernetes YAML from named/cm.yaml: '
        'missing metadata.name in object {{v1 ConfigMap} {{ } map[] map[]}}')


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_missing_path_is_an_artifact_failure(tmp_path: Path, use_kubectl: bool) -> None:
    tree = _tree(tmp_path, {'apps/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n'
                                            '  name: x\n'})
    with pytest.raises(PathNotFoundError) as caught:
        build.build_manifests(tree, {'path': './apps/missing'}, use_kubectl=use_kubectl)
    assert caught.value.reason == 'ArtifactFailed'
    assert caught.value.message == \
        'kustomization path not found: stat apps/missing: no such file or directory'
    # SecureJoin keeps ".." inside the artifact.
    assert _ids(build.build_manifests(tree, {'path': '../../apps'}, use_kubectl=use_kubectl)) == \
        [('ConfigMap', '', 'x')]
    with pytest.raises(PathNotFoundError):
        build.build_kustomization(tree / 'nowhere', use_kubectl=use_kubectl)


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_objects_need_api_version_kind_and_name(tmp_path: Path, use_kubectl: bool) -> None:
    tree = _tree(tmp_path, {'kustomization.yaml': 'resources: [cm.yaml]\n',
                            'cm.yaml': 'kind: ConfigMap\nmetadata:\n  name: x\n'})
    with pytest.raises(BuildError, match=r'^failed to decode Kubernetes apiVersion, kind and name'):
        build.build_manifests(tree, {'path': '.'}, use_kubectl=use_kubectl)


# -- postBuild -------------------------------------------------------------------------------------

SUBSTITUTED = {
    'kustomization.yaml': 'resources: [app.yaml]\n',
    'app.yaml': """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${APP}
  annotations:
    region: ${REGION:=eu-west-1}
    literal: $${NOT_A_VAR}
    nested: ${MISSING:=${APP}-default}
spec:
  replicas: ${REPLICAS}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: untouched
  labels:
    kustomize.toolkit.fluxcd.io/substitute: disabled
data:
  value: ${APP}
""",
}


@pytest.mark.parametrize('use_kubectl', BACKENDS)
def test_post_build_substitution(tmp_path: Path, use_kubectl: bool) -> None:
    tree = _tree(tmp_path, SUBSTITUTED)
    spec = {'path': '.', 'postBuild': {'substitute': {'APP': 'podinfo', 'REPLICAS': '3'}}}
    objects = build.build_manifests(tree, spec, use_kubectl=use_kubectl)
    deployment = next(o for o in objects if o['kind'] == 'Deployment')
    assert deployment['metadata']['name'] == 'podinfo'
    assert deployment['spec']['replicas'] == 3, 'substituted text is parsed again as YAML'
    assert deployment['metadata']['annotations'] == {
        'region': 'eu-west-1', 'literal': '${NOT_A_VAR}', 'nested': 'podinfo-default'}
    configmap = next(o for o in objects if o['kind'] == 'ConfigMap')
    assert configmap['data']['value'] == '${APP}'


def test_post_build_strictness_and_strategy(tmp_path: Path) -> None:
    tree = _tree(tmp_path, SUBSTITUTED)
    spec = {'path': '.', 'postBuild': {'substitute': {'APP': 'podinfo'}}}
    lenient = build.build_manifests(tree, spec, use_kubectl=False)
    assert next(o for o in lenient if o['kind'] == 'Deployment')['spec']['replicas'] is None
    with pytest.raises(BuildError) as strict:
        build.build_manifests(tree, spec, use_kubectl=False, strict_substitution=True)
    assert strict.value.message == (
        "post build failed for 'Deployment.v1.apps/${APP}': envsubst error: variable "
        'substitution failed: variable not set (strict mode): "REPLICAS"')
    untouched = build.build_manifests(tree, {'path': '.', 'postBuild': {}}, use_kubectl=False)
    assert next(o for o in untouched if o['kind'] == 'Deployment')['metadata']['name'] == '${APP}'
    always = build.build_manifests(
        tree, {'path': '.', 'postBuild': {'substituteStrategy': 'Always'}}, use_kubectl=False)
    deployment = next(o for o in always if o['kind'] == 'Deployment')
    assert deployment['metadata']['annotations']['region'] == 'eu-west-1'
    from_outside = build.build_manifests(tree, spec, use_kubectl=False,
                                         variables={'APP': 'ignored', 'REPLICAS': '5'})
    deployment = next(o for o in from_outside if o['kind'] == 'Deployment')
    assert (deployment['metadata']['name'], deployment['spec']['replicas']) == ('podinfo', 5)


def test_post_build_errors(tmp_path: Path) -> None:
    objects = [{'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cm'},
                'data': {'k': '${kubelet-identity}'}}]
    with pytest.raises(BuildError) as brace:
        build.substitute(objects, {'X': '1'})
    assert brace.value.message == ("post build failed for 'ConfigMap.v1.[noGrp]/cm': envsubst "
                                   'error: variable substitution failed: missing closing brace')
    with pytest.raises(BuildError) as name:
        build.substitute(objects, {'bad-name': '1'})
    assert name.value.message == (
        "post build failed for 'ConfigMap.v1.[noGrp]/cm': envsubst error: 'bad-name' var name is "
        "invalid, must match '^[_[:alpha:]][_[:alpha:][:digit:]]*$'")
    assert build.substitute(objects, {}) is objects, 'no variables: nothing runs'


@pytest.mark.parametrize(('text', 'expected'), [
    ('${A}', 'Value'),
    ('$A and ${A}', '$A and Value'),
    ('$$ and $${A}', '$ and ${A}'),
    ('${A,}|${A,,}|${A^}|${A^^}|${#A}', 'value|value|Value|VALUE|5'),
    ('${A:1}|${A:1:2}', 'alue|al'),
    ('${F#*.}|${F##*.}|${F%.*}|${F%%.*}', 'tar.gz|gz|file.tar|file'),
    ('${F/./-}|${F//./-}', 'file-tar.gz|file-tar-gz'),
    ('${E:=fallback}|${E:-x}|${U=y}|${A:=z}', 'fallback|x|y|Value'),
    ('${U:=${A}-${B:=b}}', 'Value-b'),
])
def test_envsubst_functions(text: str, expected: str) -> None:
    assert build.envsubst(text, {'A': 'Value', 'E': '', 'F': 'file.tar.gz'}) == expected


# -- misc ------------------------------------------------------------------------------------------


def test_yaml_reading_matches_kustomize_types() -> None:
    docs = kustomize_fallback.load_yaml_documents(
        'a: 2024-01-01\nb: yes\nc: on\nd: true\ne: 1:30\nf: 010\ng: 1.5\nh: ~\n')
    assert docs == [{'a': '2024-01-01', 'b': 'yes', 'c': 'on', 'd': True, 'e': '1:30', 'f': 8,
                     'g': 1.5, 'h': None}]


@needs_kubectl
def test_kubectl_build_never_reaches_the_network(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {'kustomization.yaml': 'resources:\n'
                            '- https://github.com/fluxcd/flux2/manifests/install?ref=v2.0.0\n'})
    with pytest.raises(BuildError) as caught:
        build.build_manifests(tree, {'path': '.'}, use_kubectl=True)
    assert caught.value.message.startswith('kustomize build failed: ')


def test_the_fallback_is_used_when_kubectl_is_absent(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _tree(tmp_path, {'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n'})
    monkeypatch.setenv('PATH', str(tmp_path / 'empty-bin') + os.pathsep + '/nonexistent')
    assert not build.kubectl_available()
    assert _ids(build.build_manifests(tree, {'path': '.'})) == [('ConfigMap', '', 'x')]

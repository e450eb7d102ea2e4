"""Tests of the Flux failure explainer: real samples, one case per category, robustness, CLI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from flux_monitor_hook.explain import CATEGORIES
from flux_monitor_hook.explain import Diagnosis
from flux_monitor_hook.explain import explain

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / 'shared'
SAMPLES = SHARED / 'flux-failure-samples.yaml'
CATEGORY_TARGET = 0.90
OBJECT_TARGET = 0.90


# --------------------------------------------------------------------------------------------------
# (a) Agreement with the annotated real-world samples


@pytest.fixture(scope='module')
def samples() -> list[dict]:
    if not SAMPLES.is_file():
        pytest.skip(f'{SAMPLES} is absent: the shared sample set lives beside the repository')
    entries = yaml.safe_load(SAMPLES.read_text(encoding='utf-8'))
    assert isinstance(entries, list) and entries, f'{SAMPLES} holds no entries'
    return entries


def annotated_name(annotation: str) -> str:
    """The object name in a reviewer's annotation: `name`, `Kind/name`, `Kind/ns/name`,
    `deployments.apps 'ns/name'`, `Deployment.apps "name" (release ns/name)`, `release ns/name`."""
    annotation = re.sub(r'\s*\(.*\)\s*$', '', annotation.strip())
    quoted = re.findall(r'''['"]([^'"]+)['"]''', annotation)
    token = quoted[-1] if quoted else annotation.split()[-1]
    return token.rstrip('/').rsplit('/', 1)[-1]


def object_hit(name: str, objects: tuple[str, ...]) -> bool:
    """The annotated name is one of the extracted objects (also as the log format `name.ns`)."""
    for ref in objects:
        parts = ref.split('/')
        found, namespace = parts[-1], parts[-2] if len(parts) == 3 else ''
        if name in (found, f'{found}.{namespace}'):
            return True
    return False


def test_annotated_name_forms():
    assert annotated_name('my-app') == 'my-app'
    assert annotated_name('Kustomization/apps.flux-system') == 'apps.flux-system'
    assert annotated_name("deployments.apps 'keycloak/keycloak-operator'") == 'keycloak-operator'
    assert annotated_name('Deployment.apps "x" (release flux-system/x)') == 'x'
    assert annotated_name('release nginx/ingress') == 'ingress'
    assert object_hit('apps.flux-system', ('Kustomization/flux-system/apps',))
    assert not object_hit('apps', ('Kustomization/flux-system/web',))


def test_samples_agreement(samples):
    category_hits = 0
    named = object_hits = 0
    misses: list[str] = []
    confusion: Counter[tuple[str, str]] = Counter()
    for entry in samples:
        got = explain(entry['message'], entry.get('kind'), entry.get('reason'))
        prefix = ' '.join(entry['message'].split())[:70]
        if got.category == entry['category']:
            category_hits += 1
        else:
            confusion[(entry['category'], got.category)] += 1
            misses.append(f'category {entry["category"]} -> {got.category}: {prefix}')
        if entry.get('object'):
            named += 1
            name = annotated_name(entry['object'])
            if object_hit(name, got.objects):
                object_hits += 1
            else:
                misses.append(f'object {name!r} not in {list(got.objects)}: {prefix}')
    category_rate = category_hits / len(samples)
    object_rate = object_hits / named if named else 1.0
    report = '\n'.join([
        f'category agreement {category_hits}/{len(samples)} = {category_rate:.1%}',
        f'object extraction {object_hits}/{named} = {object_rate:.1%}',
        'confusion (expected -> got): '
        + (', '.join(f'{a} -> {b} x{n}' for (a, b), n in confusion.most_common()) or 'none'),
        *misses,
    ])
    print(report)
    assert category_rate >= CATEGORY_TARGET, report
    assert object_rate >= OBJECT_TARGET, report


def test_every_sample_gives_a_complete_diagnosis(samples):
    for entry in samples:
        check_shape(explain(entry['message'], entry.get('kind'), entry.get('reason')))


def check_shape(diagnosis: Diagnosis) -> None:
    assert diagnosis.category in CATEGORIES
    assert diagnosis.summary and '\n' not in diagnosis.summary
    assert diagnosis.suggestions, diagnosis
    assert all('\n' not in tip for tip in diagnosis.suggestions)
    assert diagnosis.docs and all(
        url.startswith('https://fluxcd.io/flux/components/') for url in diagnosis.docs)
    assert diagnosis.object == (diagnosis.objects[0] if diagnosis.objects else None)


# --------------------------------------------------------------------------------------------------
# (b) One or more cases per category, written from the formats in flux-status-reference.md

CASES = [
    pytest.param(
        'Secret/apps/app-config dry-run failed (Invalid): Secret "app-config" is invalid: data: '
        'Forbidden: field is immutable when `immutable` is set', 'Kustomization',
        'ReconciliationFailed', 'immutable-field', ('Secret/apps/app-config',), 'data',
        ['kustomize.toolkit.fluxcd.io/force: enabled', 'spec.force: true',
         'kubectl -n apps delete secret app-config'], id='immutable-field'),
    pytest.param(
        'Helm upgrade failed for release apps/podinfo with chart podinfo@6.6.1: cannot patch '
        '"podinfo" with kind Deployment: Deployment.apps "podinfo" is invalid: spec.selector: '
        'Invalid value: v1.LabelSelector{}: field is immutable', 'HelmRelease', 'UpgradeFailed',
        'immutable-field', ('Deployment/apps/podinfo', 'HelmRelease/apps/podinfo'), 'spec.selector',
        ['kubectl -n apps delete deployment podinfo',
         'flux reconcile helmrelease podinfo -n apps --force', 'spec.upgrade.force'],
        id='immutable-field-helm'),
    pytest.param(
        'Service/apps/web dry-run failed (Invalid): admission webhook "policy.example.com" denied '
        'the request: spec.type may not be changed', None, None, 'immutable-field',
        ('Service/apps/web',), None,
        ['policy.example.com', 'do not help', 'kubectl -n apps delete service web'],
        id='immutable-field-webhook'),
    pytest.param(
        'HelmRelease/apps/podinfo dry-run failed (Invalid): HelmRelease.helm.toolkit.fluxcd.io '
        '"podinfo" is invalid: spec.interval: Invalid value: "5x": spec.interval in body should '
        'match \'^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$\'', 'Kustomization', 'ReconciliationFailed',
        'validation', ('HelmRelease/apps/podinfo',), 'spec.interval',
        ['kubectl explain helmrelease.spec.interval', 'HelmRelease apps/podinfo'],
        id='validation'),
    pytest.param(
        'kustomization path not found: stat /tmp/kustomization-1283412/clusters/staging: no such '
        'file or directory', 'Kustomization', 'ArtifactFailed', 'build', (), 'spec.path',
        ['./clusters/staging'], id='build-path'),
    pytest.param(
        "kustomize build failed: accumulating resources: accumulation err='accumulating resources "
        "from './apps': read /tmp/kustomization-913/clusters/prod/apps: is a directory': "
        "couldn't make target for path '/tmp/kustomization-913/clusters/prod/apps': json: unknown "
        'field "patchesJson"', 'Kustomization', 'BuildFailed', 'build', (), 'patchesJson',
        ['kustomize build ./clusters/prod/apps'], id='build'),
    pytest.param(
        "health check failed after 5m0.021s: timeout waiting for: [Deployment/apps/podinfo status: "
        "'InProgress', HelmRelease/apps/redis status: 'Failed']", 'Kustomization',
        'HealthCheckFailed', 'health-check', ('Deployment/apps/podinfo', 'HelmRelease/apps/redis'),
        None, ['kubectl -n apps rollout status deployment/podinfo',
               'kubectl -n apps describe deployment podinfo', 'flux get helmrelease redis -n apps'],
        id='health-check'),
    pytest.param(
        "dependency 'flux-system/infra-controllers' is not ready", 'Kustomization',
        'DependencyNotReady', 'dependency', ('Kustomization/flux-system/infra-controllers',),
        'spec.dependsOn',
        ['flux get kustomization infra-controllers -n flux-system',
         'flux events --for Kustomization/infra-controllers -n flux-system'], id='dependency'),
    pytest.param(
        "dependency 'apps/postgres' revision is not up to date", 'HelmRelease',
        'DependencyNotReady', 'dependency', ('HelmRelease/apps/postgres',), 'spec.dependsOn',
        ['flux get helmrelease postgres -n apps'], id='dependency-helm'),
    pytest.param(
        'ServiceMonitor/monitoring/podinfo dry-run failed: no matches for kind "ServiceMonitor" in '
        'version "monitoring.coreos.com/v1"', 'Kustomization', 'ReconciliationFailed',
        'missing-crd', ('ServiceMonitor/monitoring/podinfo',), None,
        ['kubectl api-resources --api-group=monitoring.coreos.com', 'dependsOn'], id='missing-crd'),
    pytest.param(
        'Deployment/podinfo namespace not specified: the server could not find the requested '
        'resource', 'Kustomization', 'ReconciliationFailed', 'namespace', ('Deployment/podinfo',),
        'metadata.namespace', ['spec.targetNamespace', 'Deployment podinfo'], id='namespace'),
    pytest.param(
        'Deployment/apps/podinfo not found: namespaces "apps" not found', 'Kustomization', None,
        'namespace', ('Deployment/apps/podinfo', 'Namespace/apps'), 'metadata.namespace',
        ['kubectl get namespace apps'], id='namespace-missing'),
    pytest.param(
        'prune failed: CronJob/apps/cleanup delete failed: Internal error occurred',
        'Kustomization',
        'PruneFailed', 'prune', ('CronJob/apps/cleanup',), None,
        ['kubectl -n apps get cronjob cleanup -o yaml'], id='prune'),
    pytest.param(
        "decryption failed for 'db-creds': failed to decrypt and format 'apps/db-creds' Secret "
        'data: cannot get sops data key: Failed to get the data key required to decrypt the SOPS '
        'file', 'Kustomization', 'BuildFailed', 'decryption', ('Secret/apps/db-creds',),
        'spec.decryption', ['sops updatekeys', 'spec.decryption'], id='decryption'),
    pytest.param(
        "var substitution failed for 'podinfo': variable substitution failed: unable to parse "
        'variable name', 'Kustomization', 'BuildFailed', 'substitution', ('podinfo',),
        'spec.postBuild', ['--show-vars', '$${'], id='substitution'),
    pytest.param(
        "HelmChart 'flux-system/apps-podinfo' is not ready: chart pull error: failed to download "
        'chart: 401 Unauthorized', 'HelmRelease', 'ArtifactFailed', 'source-not-ready',
        ('HelmChart/flux-system/apps-podinfo',), None,
        ['flux get source chart apps-podinfo -n flux-system'], id='source-not-ready'),
    pytest.param(
        'failed to checkout and determine revision: unable to clone '
        "'https://github.com/org/fleet': authentication required", 'GitRepository',
        'GitOperationFailed', 'auth', (), None,
        ['github.com', 'spec.secretRef'], id='auth'),
    pytest.param(
        'failed to get secret \'flux-system/fleet-auth\': secrets "fleet-auth" not found',
        'GitRepository', 'AuthenticationFailed', 'auth', ('Secret/flux-system/fleet-auth',),
        'spec.secretRef',
        ['flux create secret git fleet-auth -n flux-system'], id='auth-missing-secret'),
    pytest.param(
        "failed to checkout and determine revision: unable to clone 'ssh://git@github.com/org/fleet'"
        ': dial tcp: lookup github.com on 10.96.0.10:53: no such host', 'GitRepository',
        'GitOperationFailed', 'network', (), None, ['nslookup github.com'], id='network'),
    pytest.param(
        'failed to checkout and determine revision: unable to clone '
        "'https://github.com/org/fleet': couldn't find remote ref \"refs/heads/develop\"",
        'GitRepository', 'GitOperationFailed',
        'ref-not-found', (), 'spec.ref.branch',
        ['git ls-remote https://github.com/org/fleet refs/heads/develop'], id='ref-not-found'),
    pytest.param(
        'Helm install failed for release apps/podinfo with chart podinfo@6.6.1: cannot re-use a '
        'name that is still in use', 'HelmRelease', 'InstallFailed', 'helm-install',
        ('HelmRelease/apps/podinfo',), None,
        ['flux reconcile helmrelease podinfo -n apps --reset',
         'flux get helmrelease podinfo -n apps'],
        id='helm-install'),
    pytest.param(
        'Helm upgrade failed for release apps/podinfo with chart podinfo@6.6.1+0cc9a8446c95: '
        'another operation (install/upgrade/rollback) is in progress', 'HelmRelease', None,
        'helm-upgrade', ('HelmRelease/apps/podinfo',), None,
        ['helm -n apps history podinfo', 'flux reconcile helmrelease podinfo -n apps --reset'],
        id='helm-upgrade'),
    pytest.param(
        'Helm test failed for release apps/podinfo.v3 with chart podinfo@6.6.1: pod '
        'podinfo-grpc-test-x7k2 failed', 'HelmRelease', 'TestFailed', 'helm-test',
        ('HelmRelease/apps/podinfo',), None, ['helm -n apps test podinfo --logs'], id='helm-test'),
    pytest.param(
        'chart pull error: failed to get chart version for remote reference: no chart version '
        'found for podinfo-9.9.9', 'HelmChart', 'ChartPullFailed', 'helm-chart', (), 'spec.version',
        ['helm search repo'], id='helm-chart'),
    pytest.param(
        'Helm upgrade failed for release apps/podinfo with chart podinfo@6.6.1+0cc9a8446c95: '
        'context deadline exceeded', 'HelmRelease', 'RetriesExceeded', 'retries-exhausted',
        ('HelmRelease/apps/podinfo',), None,
        ['flux reconcile helmrelease podinfo -n apps --reset', 'reconcile.fluxcd.io/resetAt'],
        id='retries-exhausted'),
    pytest.param(
        'failed to fetch Helm repository index: failed to cache index to temporary file: Get '
        '"https://charts.example.com/index.yaml": context deadline exceeded', 'HelmRepository',
        'IndexationFailed', 'timeout', (), None, ['charts.example.com', 'spec.timeout'],
        id='timeout'),
    pytest.param(
        "signature verification of commit 'fcf573111bd82600052f99195a67f33d8242bf17' failed: "
        'unable to verify commit with any of the given key rings', 'GitRepository', None, 'other',
        (), None, ['spec.verify'], id='other'),
]


@pytest.mark.parametrize(('message', 'kind', 'reason', 'category', 'objects', 'field', 'names'),
                         CASES)
def test_category_cases(message, kind, reason, category, objects, field, names):
    got = explain(message, kind, reason)
    assert got.category == category, got
    assert got.objects == objects, got
    assert got.field == field, got
    joined = '\n'.join(got.suggestions)
    for name in names:
        assert name in joined, f'{name!r} missing from suggestions:\n{joined}'
    check_shape(got)


def test_cases_cover_every_category():
    covered = {param.values[3] for param in CASES}
    assert covered == set(CATEGORIES)


def test_specific_message_beats_generic_reason():
    immutable = explain('Job/apps/migrate dry-run failed (Invalid): Job.batch "migrate" is '
                        'invalid: spec.template: Invalid value: core.PodTemplateSpec{}: field is '
                        'immutable',
                        'Kustomization', 'ReconciliationFailed')
    assert (immutable.category, immutable.field) == ('immutable-field', 'spec.template')
    assert explain('upgrade retries exhausted', 'HelmRelease', 'UpgradeFailed').category == \
        'retries-exhausted'
    assert explain('Reconciliation in progress', 'Kustomization', 'HealthCheckFailed').category == \
        'health-check'
    assert explain('something unexpected', None, 'DependencyNotReady').category == 'dependency'


def test_to_json_keys():
    got = explain("dependency 'flux-system/infra' is not ready").to_json()
    assert list(got) == ['category', 'object', 'objects', 'field', 'summary', 'suggestions', 'docs']
    assert got['object'] == 'Kustomization/flux-system/infra'
    json.dumps(got)


# --------------------------------------------------------------------------------------------------
# (c) Robustness: how messages reach people

IMMUTABLE = ('StatefulSet/develop/sandbox dry-run failed (Invalid): StatefulSet.apps "sandbox" is '
             "invalid: spec: Forbidden: updates to statefulset spec for fields other than "
             "'replicas', 'template' and 'updateStrategy' are forbidden")


@pytest.mark.parametrize('decorated', [
    f'✗ {IMMUTABLE}',
    f'✗ Kustomization reconciliation failed: {IMMUTABLE}',
    f'Kustomization reconciliation failed: {IMMUTABLE}',
    f'  ► reconciliation failed: {IMMUTABLE}\n',
    f'2024-05-01T10:00:00.123Z error {IMMUTABLE}',
    f'2024-05-01T10:00:00Z\tinfo\t{IMMUTABLE}',
    f'E0501 10:00:00.123456       1 controller.go:317] {IMMUTABLE}',
    f'2m   Warning   ReconciliationFailed   Kustomization/apps   {IMMUTABLE}',
    IMMUTABLE.replace('"', '&#34;'),
    IMMUTABLE.replace('"', '&amp;#34;'),
    IMMUTABLE.replace('"', '\\"'),
])
def test_decorations_do_not_change_the_diagnosis(decorated):
    plain = explain(IMMUTABLE)
    got = explain(decorated)
    assert (got.category, got.object, got.field) == (plain.category, plain.object, plain.field)
    assert got.object == 'StatefulSet/develop/sandbox'


def test_log_line_names_the_reporter():
    got = explain('2024-01-16T08:08:35.453Z info Kustomization/apps.flux-system - Dependencies do '
                  'not meet ready condition, retrying in 30s')
    assert got.category == 'dependency'
    assert got.objects == ('Kustomization/flux-system/apps',)
    assert any('kubectl -n flux-system get kustomization apps' in tip for tip in got.suggestions)


def test_json_log_line():
    line = json.dumps({
        'level': 'error', 'ts': '2025-05-01T10:00:00.000Z',
        'msg': 'Reconciliation failed after 1.2s, next try in 10m0s', 'controllerKind':
        'Kustomization', 'name': 'apps', 'namespace': 'flux-system',
        'error': "dependency 'flux-system/infra' is not ready"})
    got = explain(line)
    assert got.category == 'dependency'
    assert got.objects == ('Kustomization/flux-system/infra', 'Kustomization/flux-system/apps')


def test_kubectl_truncation():
    message = ('Deployment/apps/web dry-run failed (Invalid): Deployment.apps "web" is invalid: '
               'spec.replicas: Invalid value: -1: must be greater than or equal to 0\n'
               'Service/apps/we...')
    got = explain(message)
    assert got.category == 'validation'
    assert got.objects == ('Deployment/apps/web',)  # the cut-off Service/apps/we is not reported
    assert got.field == 'spec.replicas'
    truncated = explain('StatefulSet/develop/sandbox dry-run failed (Invalid): StatefulSet.apps '
                        '"sandbox" is invalid: spec: Forbidden: updates to statefulset spec for '
                        "fields other than 'replicas', 'templ…")
    assert truncated.category == 'immutable-field'
    assert truncated.object == 'StatefulSet/develop/sandbox'


@pytest.mark.parametrize('wording', [
    'Deployment/apps/web dry-run failed (Invalid): ',  # ssa >= 0.33, Flux >= 2.2
    'Deployment/apps/web dry-run failed, reason: Invalid: ',  # older ssa
    'Deployment/apps/web dry-run failed, reason: Invalid, error: ',  # Flux 0.2x/0.3x
])
def test_dry_run_wordings(wording):
    got = explain(wording + 'Deployment.apps "web" is invalid: spec.template.spec.containers[0]'
                  '.image: Required value')
    assert got.category == 'validation'
    assert got.objects == ('Deployment/apps/web',)
    assert got.field == 'spec.template.spec.containers[0].image'


def test_joined_errors_report_every_object():
    message = '\n'.join([
        'Deployment/apps/web dry-run failed (Invalid): Deployment.apps "web" is invalid: '
        'spec.replicas: Invalid value: -1: must be greater than or equal to 0',
        'Service/apps/web dry-run failed (Invalid): Service "web" is invalid: spec.ports[0].port: '
        'Invalid value: 0: must be between 1 and 65535, inclusive',
        'ConfigMap/apps/settings dry-run failed (Invalid): ConfigMap "settings" is invalid: data: '
        'Too long: must have at most 1048576 bytes',
    ])
    got = explain(message)
    assert got.category == 'validation'
    assert got.objects == ('Deployment/apps/web', 'Service/apps/web', 'ConfigMap/apps/settings')


@pytest.mark.parametrize('build', [
    lambda: 'a' * 1_000_000,
    lambda: IMMUTABLE + ' ' + 'x' * 1_000_000,
    lambda: 'Deployment/' * 100_000,
    lambda: "'a/" * 350_000,
    lambda: 'spec.' * 200_000 + ': Invalid value',
    lambda: 'ValidationError(' * 70_000,
    lambda: '"' * 1_000_000,
    lambda: '&#34;' * 200_000,
    lambda: '\udcff\ufffd\x00' * 300_000,
], ids=['letters', 'long-tail', 'kinds', 'quotes', 'path', 'validation', 'dquotes', 'entities',
        'junk'])
def test_megabyte_message_is_fast(build):
    message = build()
    assert len(message) >= 900_000
    start = time.perf_counter()
    got = explain(message)
    elapsed = time.perf_counter() - start
    assert got.category in CATEGORIES
    assert elapsed < 0.5, f'{elapsed:.3f}s'


def test_empty_and_blank_messages():
    for message in ('', '   ', '\n\n', '✗ '):
        assert explain(message).category == 'other'


# --------------------------------------------------------------------------------------------------
# (d) The CLI as a real subprocess


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, '-m', 'flux_monitor_hook', 'explain', *args],
                          input=stdin if stdin is not None else b'', capture_output=True,
                          cwd=REPO, timeout=60, check=False)


def test_cli_json_from_argument():
    done = run_cli('--format', 'json', '--kind', 'Kustomization', '--reason', 'DependencyNotReady',
                   "dependency 'flux-system/infra' is not ready")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1
    got = json.loads(lines[0])
    assert set(got) == {'category', 'object', 'objects', 'field', 'summary', 'suggestions', 'docs'}
    assert got['category'] == 'dependency'
    assert got['object'] == 'Kustomization/flux-system/infra'


def test_cli_text_from_stdin():
    done = run_cli(stdin=IMMUTABLE.encode())
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert text.startswith('✗ immutable-field: ')
    assert '  object: StatefulSet/develop/sandbox' in text
    assert '  field: spec' in text
    assert '  next steps:' in text and '  docs:' in text
    assert 'https://fluxcd.io/flux/components/kustomize/kustomizations/#force' in text


def test_cli_dash_reads_stdin_as_json():
    done = run_cli('--format', 'json', '-', stdin=b'Helm install failed: context deadline exceeded')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['category'] == 'helm-install'


def test_cli_invalid_utf8():
    done = run_cli('--format', 'json', stdin=b'failed to download artifact \xff\xfe\xc3( from '
                   b'http://source-controller./gitrepository/flux-system/fleet/abc.tar.gz, '
                   b'status: 404 Not Found')
    assert done.returncode == 0, done.stderr
    assert b'Traceback' not in done.stderr
    got = json.loads(done.stdout)
    assert got['category'] == 'source-not-ready'
    assert got['object'] == 'GitRepository/flux-system/fleet'


def test_cli_megabyte_stdin():
    done = run_cli('--format', 'json', stdin=b'\xff' * 1_000_000 + IMMUTABLE.encode())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['category'] in CATEGORIES


@pytest.mark.parametrize('stdin', [b'', b'  \n\t\n'])
def test_cli_empty_message_is_a_usage_error(stdin):
    done = run_cli(stdin=stdin)
    assert done.returncode == 3
    assert done.stdout == b''
    error = done.stderr.decode()
    assert len(error.splitlines()) == 1, error
    assert 'empty' in error and 'Traceback' not in error

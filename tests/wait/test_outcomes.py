"""`flux-monitor wait` against the sandbox: each kind of outcome, with its exit code and what it prints."""
from __future__ import annotations

import pytest

from tests.wait import fleet
from tests.wait.conftest import MakeWorld

pytestmark = pytest.mark.timeout(90)


def failure_block(stdout: str) -> str:
    """The structured renderer's verdict: everything after 'Reconciliation failed'."""
    assert '❌ Reconciliation failed' in stdout, stdout
    return stdout.split('❌ Reconciliation failed', 1)[1]


def test_a_pushed_change_lands(make_world: MakeWorld) -> None:
    world = make_world()
    sha = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28'),
                                         'apps/frontend.yaml': fleet.helm_release({'tier': 'web'})})

    run = world.wait('--timeout', '30s')

    assert run.code == 0, run
    assert f'following {sha[:7]} of {world.bare} (main)' in run.stdout
    assert 'Flux system healthy (4 controllers ready)' in run.stdout
    assert f'✅ All resources reconciled successfully ({sha[:7]} in ' in run.stdout
    # What the change touches (the default scope): apps and the release it applies, fetched by the source.
    for name in ('GitRepository/flux-system/flux-system', 'Kustomization/flux-system/apps',
                 'HelmRelease/demo/frontend'):
        assert any(name in line and '✔' in line and 'landed' in line for line in run.stdout.splitlines()), \
            (name, run)
    assert run.stderr == ''


def test_immutable_field_fails_naming_the_object_and_field(make_world: MakeWorld) -> None:
    world = make_world()
    world.push('web: new selector', {'apps/web.yaml': fleet.deployment(app='web-v2')})

    run = world.wait('--timeout', '30s')

    assert run.code == 1, run
    block = failure_block(run.stdout)
    assert '✗ Kustomization/flux-system/apps' in block
    assert 'reason:   ReconciliationFailed' in block
    assert 'object:   Deployment/demo/web  field: spec.selector' in block
    assert 'field is immutable' in block
    assert 'flux reconcile kustomization apps -n flux-system --with-source' in block


def test_build_failure_fails_and_blocks_what_depends_on_it(make_world: MakeWorld) -> None:
    world = make_world()
    world.push('infra: a missing file', {'infra/kustomization.yaml': fleet.BROKEN_KUSTOMIZE})

    # apps and the release are not touched by the change: --scope all follows them too.
    run, text = fleet.together(lambda: world.wait('--scope', 'all', '--timeout', '30s', '--format', 'json'),
                               lambda: world.wait('--scope', 'all', '--timeout', '30s'))

    assert run.code == 1, run
    infra = run.resource('Kustomization', 'infra')
    assert (infra['state'], infra['reason']) == ('failed', 'BuildFailed')
    assert 'missing.yaml' in infra['message']
    assert infra['diagnosis']['category'] == 'build'
    apps = run.resource('Kustomization', 'apps')
    assert (apps['state'], apps['reason']) == ('blocked', 'DependencyNotReady')
    assert 'Kustomization/flux-system/infra failed' in apps['message']
    assert run.resource('HelmRelease', 'frontend')['state'] == 'blocked'
    assert text.code == 1, text
    block = failure_block(text.stdout)
    assert '✗ Kustomization/flux-system/infra' in block and 'reason:   BuildFailed' in block
    assert '✗ Kustomization/flux-system/apps blocked: ' in block
    assert '(Kustomization/flux-system/infra failed)' in block
    assert '✗ HelmRelease/demo/frontend blocked: ' in block


def test_health_check_timeout_fails_naming_the_workload(make_world: MakeWorld) -> None:
    world = make_world()
    world.push('web: a rollout that never finishes', {'apps/web.yaml': fleet.deployment(
        image='nginx:1.29', annotations={'sandbox.flux-monitor.io/rollout': 'never'})})

    run = world.wait('--timeout', '30s')

    assert run.code == 1, run
    block = failure_block(run.stdout)
    assert '✗ Kustomization/flux-system/apps' in block
    assert 'reason:   HealthCheckFailed' in block
    assert 'object:   Deployment/demo/web' in block
    assert 'Deployment/demo/web' in block.split('message:', 1)[1]


HELM_ERROR = ('cannot patch "frontend" with kind Deployment: Deployment.apps "frontend" is invalid: '
              'spec.template.spec.containers[0].image: Required value')


def test_helm_upgrade_failure_fails_naming_the_release_and_field(make_world: MakeWorld) -> None:
    world = make_world()
    # apps without health checks: the release is judged on its own (the next test has health checks on).
    world.push('frontend: a broken upgrade', {
        'apps/frontend.yaml': fleet.helm_release({'sandboxFail': HELM_ERROR}),
        f'{fleet.CLUSTER_PATH}/apps.yaml': fleet.kustomization('apps', './apps', depends_on=['infra'], wait=False)})

    run = world.wait('--timeout', '30s')

    assert run.code == 1, run
    block = failure_block(run.stdout)
    assert '✗ HelmRelease/demo/frontend' in block
    assert 'reason:   UpgradeFailed' in block
    assert 'object:   Deployment/demo/frontend  field: spec.template.spec.containers[0].image' in block
    assert 'flux reconcile helmrelease frontend -n demo --reset' in block
    assert 'Kustomization/flux-system/apps' not in block  # it applied the release fine


def test_a_release_failing_under_a_health_check_is_not_reported_as_not_applied(make_world: MakeWorld) -> None:
    world = make_world()
    # The Kustomization's health check (1m) gives up before the release's own upgrade times out (5m).
    world.push('frontend: an upgrade that hangs', {
        'apps/frontend.yaml': fleet.helm_release({'sandboxTimeout': True}, timeout='5m')})

    run = world.wait('--timeout', '30s', '--format', 'json')

    assert run.code == 1, run
    assert run.resource('Kustomization', 'apps')['reason'] == 'HealthCheckFailed'
    release = run.resource('HelmRelease', 'frontend')
    assert 'did not apply' not in (release['message'] or ''), release
    assert (release['state'], release['reason']) == ('failed', 'UpgradeFailed'), release


def test_source_auth_failure_fails_naming_the_secret(make_world: MakeWorld) -> None:
    world = make_world()
    repository = world.get(fleet.GIT, 'GitRepository', 'flux-system')
    repository['spec']['secretRef'] = {'name': 'deploy-key'}
    world.sandbox.apply(repository)
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    run = world.wait('--timeout', '30s')

    assert run.code == 1, run
    block = failure_block(run.stdout)
    assert '✗ GitRepository/flux-system/flux-system' in block
    assert 'reason:   AuthenticationFailed' in block
    assert "secret 'flux-system/deploy-key'" in block
    assert 'flux get source git flux-system -n flux-system' in block
    assert 'Kustomization/flux-system/apps blocked: source GitRepository/flux-system/flux-system failed' in block


def test_timeout_lists_what_was_pending(make_world: MakeWorld) -> None:
    world = make_world()
    world.push('web: a slow rollout', {
        'apps/web.yaml': fleet.deployment(image='nginx:1.29',
                                          annotations={'sandbox.flux-monitor.io/rollout-seconds': '3600'}),
        f'{fleet.CLUSTER_PATH}/apps.yaml': fleet.kustomization('apps', './apps', depends_on=['infra'],
                                                               timeout='2h'),
    })

    run = world.wait('--timeout', '4s')

    assert run.code == 2, run
    verdict = run.stdout.split('⏱  Timed out after ', 1)[1]
    assert 'still pending:' in verdict
    assert '◎ Kustomization/flux-system/apps: Running health checks for revision main@sha1:' in verdict
    assert '◎ HelmRelease/demo/frontend: waiting for Kustomization/flux-system/apps' in verdict
    assert 'Kustomization/flux-system/infra:' not in verdict  # it landed
    assert run.seconds < 15


def test_no_source_follows_the_repository(make_world: MakeWorld) -> None:
    world = make_world()
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    other = world.root / 'other'
    fleet.gitutil.git(world.root, 'clone', '--quiet', '--', str(world.bare), str(other))
    fleet.gitutil.git(other, 'remote', 'set-url', 'origin', 'https://git.example.com/org/unrelated.git')

    structured, json_run = fleet.together(lambda: world.wait('--timeout', '20s', cwd=other),
                                          lambda: world.wait('--timeout', '20s', '--format', 'json', cwd=other))

    assert structured.code == 0, structured
    assert '✅ No Flux source follows https://git.example.com/org/unrelated.git (main); nothing to wait for' in \
        structured.stdout
    assert json_run.code == 0, json_run
    assert json_run.summary['result'] == 'no-sources'
    assert json_run.summary['sources'] == [] and json_run.summary['resources'] == []


def test_fail_fast_stops_at_the_first_failure(make_world: MakeWorld) -> None:
    files = fleet.fleet_files()
    files[f'{fleet.CLUSTER_PATH}/slow.yaml'] = fleet.kustomization('slow', './slow', timeout='2h')
    files['slow/worker.yaml'] = fleet.deployment('worker', namespace='default')
    world = make_world(files)
    world.push('infra breaks while worker rolls out slowly', {
        'infra/kustomization.yaml': fleet.BROKEN_KUSTOMIZE,
        'slow/worker.yaml': fleet.deployment('worker', namespace='default', image='nginx:1.29', annotations={
            'sandbox.flux-monitor.io/rollout-seconds': '3600'}),
    })

    fast, patient = fleet.together(lambda: world.wait('--timeout', '30s', '--fail-fast', '--format', 'json'),
                                   lambda: world.wait('--timeout', '20s', '--format', 'json'))

    assert fast.code == 1, fast
    assert fast.seconds < 15, fast
    assert fast.resource('Kustomization', 'infra')['state'] == 'failed'
    assert fast.resource('Kustomization', 'slow')['state'] == 'pending'
    # Without --fail-fast the wait goes on until everything is decided or the timeout, and a failure seen
    # by then is still the verdict (exit 1, not 2), with what was pending in the summary.
    # (20 s leaves infra's failure, which takes about a second, time to come even on a loaded machine.)
    assert patient.code == 1, patient
    assert patient.seconds >= 20
    assert patient.summary['result'] == 'failed'
    assert patient.resource('Kustomization', 'slow')['state'] == 'pending'


def test_a_failure_that_was_there_before_is_flagged_preexisting(make_world: MakeWorld) -> None:
    files = fleet.fleet_files()
    # legacy is not retried, nor the source fetched, on their own: the failure is there, as it was, when the
    # wait starts listing, and comes again for the new commit once flux-monitor asks Flux to fetch it.
    files[f'{fleet.CLUSTER_PATH}/legacy.yaml'] = fleet.kustomization('legacy', './legacy', wait=False,
                                                                     retryInterval='1h')
    files['legacy/kustomization.yaml'] = BROKEN_LEGACY
    # One world per format: a second wait would start after the first had Flux fetch the commit.
    worlds = [make_world(files) for _ in range(2)]
    for world in worlds:
        assert fleet_reason(world.get(fleet.KS, 'Kustomization', 'legacy')) == 'False/BuildFailed'
        world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    # legacy is not touched by the change: only --scope all follows it.
    run, text = fleet.together(lambda: worlds[0].wait('--scope', 'all', '--timeout', '30s', '--format', 'json'),
                               lambda: worlds[1].wait('--scope', 'all', '--timeout', '30s'))

    assert run.code == 1, run
    legacy_status = run.resource('Kustomization', 'legacy')
    assert (legacy_status['state'], legacy_status['preexisting']) == ('failed', True)
    assert run.resource('Kustomization', 'apps')['state'] == 'landed'
    assert run.resource('Kustomization', 'apps')['preexisting'] is False
    assert text.code == 1, text
    assert ('✗ Kustomization/flux-system/legacy (pre-existing: it failed the same way before this revision)'
            in failure_block(text.stdout))


def test_waiting_again_for_a_failed_revision_does_not_call_its_failure_preexisting(make_world: MakeWorld) -> None:
    world = make_world()  # Flux fetches only when flux-monitor asks
    world.push('web: new selector', {  # and apps is not retried while the second wait starts
        'apps/web.yaml': fleet.deployment(app='web-v2'),
        f'{fleet.CLUSTER_PATH}/apps.yaml': fleet.kustomization('apps', './apps', depends_on=['infra'],
                                                               retryInterval='1h')})

    first = world.wait('--timeout', '30s', '--format', 'json')
    again = world.wait('--timeout', '30s', '--format', 'json')

    assert first.code == 1, first
    assert first.resource('Kustomization', 'apps')['preexisting'] is False
    assert again.code == 1, again
    assert again.resource('Kustomization', 'apps')['preexisting'] is False


def test_a_suspended_kustomization_is_reported_suspended(make_world: MakeWorld) -> None:
    files = fleet.fleet_files()
    files[f'{fleet.CLUSTER_PATH}/frozen.yaml'] = fleet.kustomization('frozen', './frozen', suspend=True)
    files['frozen/config.yaml'] = fleet.dump({'apiVersion': 'v1', 'kind': 'ConfigMap',
                                              'metadata': {'name': 'frozen', 'namespace': 'default'},
                                              'data': {'a': '1'}})
    world = make_world(files)
    world.push('frozen: a change Flux will not apply; web: nginx 1.28', {
        'frozen/config.yaml': fleet.dump({'apiVersion': 'v1', 'kind': 'ConfigMap',
                                          'metadata': {'name': 'frozen', 'namespace': 'default'}, 'data': {'a': '2'}}),
        'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    run, simple = fleet.together(lambda: world.wait('--timeout', '30s', '--format', 'json'),
                                 lambda: world.wait('--timeout', '30s', '--format', 'simple'))

    assert run.code == 0, run
    assert run.resource('Kustomization', 'frozen')['state'] == 'suspended'
    assert run.resource('Kustomization', 'apps')['state'] == 'landed'
    assert 'Kustomization/flux-system/frozen suspended' in simple.stdout, simple


BROKEN_LEGACY = ('apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n'
                 '  - gone.yaml\n')


def fleet_reason(obj: fleet.Obj) -> str | None:
    for condition in (obj.get('status') or {}).get('conditions') or []:
        if condition.get('type') == 'Ready':
            return f'{condition["status"]}/{condition["reason"]}'
    return None

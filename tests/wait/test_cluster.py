"""The cluster side of `flux-monitor wait`: triggering, permissions, kubeconfig and contexts, several clusters,
and the configuration file."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux_monitor_hook.sandbox import Sandbox
from flux_monitor_hook.sandbox import bootstrap
from flux_monitor_hook.sandbox.apiserver import Rule
from flux_monitor_hook.sandbox.apiserver import read_only_rules
from flux_monitor_hook.sandbox.kubeconfig import kubeconfig_document
from flux_monitor_hook.sandbox.kubeconfig import write_kubeconfig
from tests.wait import fleet
from tests.wait.conftest import MakeWorld

pytestmark = pytest.mark.timeout(90)

REQUESTED_AT = 'reconcile.fluxcd.io/requestedAt'


def annotations_of(obj: fleet.Obj) -> dict[str, str]:
    return dict(obj['metadata'].get('annotations') or {})


def one_line_error(run: fleet.Run) -> str:
    """What a user-facing error looks like: one line on stderr, no traceback."""
    assert 'Traceback' not in run.stderr, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run
    assert lines[0].startswith('flux-monitor: error: '), run
    return lines[0]


# -- triggering --------------------------------------------------------------------------------------------

def test_triggering_is_what_makes_it_land_quickly(make_world: MakeWorld) -> None:
    world = make_world()  # Flux itself would fetch in 90 s
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    waiting = world.wait('--no-trigger', '--timeout', '3s', '--format', 'json')
    untouched = world.get(fleet.GIT, 'GitRepository', 'flux-system')
    triggered = world.wait('--timeout', '30s', '--format', 'json')

    assert waiting.code == 2, waiting
    assert waiting.resource('GitRepository', 'flux-system')['state'] == 'pending'
    assert REQUESTED_AT not in annotations_of(untouched)
    assert triggered.code == 0, triggered
    assert triggered.seconds < 10, triggered
    assert REQUESTED_AT in annotations_of(world.get(fleet.GIT, 'GitRepository', 'flux-system'))


def test_without_permission_to_patch_it_waits_for_the_interval_and_says_so_once(make_world: MakeWorld) -> None:
    world = make_world(git_interval='3m')  # Flux fetches every 4.5 s here: after the first trigger would
    reader = world.root / 'reader.kubeconfig'
    world.sandbox.add_token(read_only_rules(), kubeconfig_path=reader)
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    run = world.wait('--kubeconfig', str(reader), '--timeout', '30s', '--format', 'simple')

    assert run.code == 0, run
    message = ('not allowed to patch GitRepository/flux-system/flux-system (403): waiting for its interval instead '
               'of triggering reconciliation')
    assert run.stdout.count(message) == 1, run
    assert REQUESTED_AT not in annotations_of(world.get(fleet.GIT, 'GitRepository', 'flux-system'))


# -- Flux health and a flaky API ----------------------------------------------------------------------------

def test_flux_health_comes_first_and_a_sick_controller_is_a_warning(make_world: MakeWorld) -> None:
    world = make_world()
    bootstrap.set_controller_ready(world.sandbox.store, 'helm-controller', False)
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    run = world.wait('--timeout', '30s', '--format', 'simple')

    assert run.code == 0, run  # the verdict is about the commit; the warning says why it might not come
    lines = run.stdout.splitlines()
    health = lines.index('warning: Flux controllers not ready: helm-controller')
    assert health < next(i for i, line in enumerate(lines) if line.startswith('following ') and
                         line.endswith(' resources'))


def test_a_flux_instance_reports_flux_health(make_world: MakeWorld) -> None:
    world = make_world(flux_instance=True)

    run = world.wait('--timeout', '30s', '--format', 'json')

    assert run.code == 0, run
    notes = [(r['message'], r['ok']) for r in run.records if r['type'] == 'note']
    assert ('Flux system healthy (FluxInstance flux-system/flux v2.7.3)', True) in notes


def test_transient_api_errors_dropped_and_expired_watches_are_survived(make_world: MakeWorld) -> None:
    world = make_world()
    (world.clone / '.flux-monitor.yaml').write_text('error_handling:\n  retry_delay: 100ms\n')
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})
    faults = world.sandbox.faults
    faults.fail_next(2, 503, verb='list', resource='kustomizations')
    faults.fail_next(1, 429, verb='list', resource='helmreleases', retry_after=1)
    faults.cut_watches(after_events=2)
    faults.expire_next_watch(2)

    run = world.wait('--timeout', '30s', '--format', 'simple')

    assert run.code == 0, run
    assert 'retrying after a transient API error: listing kustomizations: 503' in run.stdout
    assert 'retrying after a transient API error: listing helmreleases: 429' in run.stdout
    assert 'Kustomization/flux-system/apps landed' in run.stdout


# -- access ------------------------------------------------------------------------------------------------

def test_rejected_credentials_exit_4_with_one_line(make_world: MakeWorld) -> None:
    world = make_world()
    stale = world.sandbox.write_kubeconfig(world.root / 'stale.kubeconfig', 'expired-token')

    run, as_json = fleet.together(
        lambda: world.wait('--kubeconfig', str(stale), '--timeout', '10s'),
        lambda: world.wait('--kubeconfig', str(stale), '--timeout', '10s', '--format', 'json'))

    assert run.code == 4, run
    line = one_line_error(run)
    assert f'cluster flux-sandbox ({world.sandbox.url}) rejected the credentials (401 Unauthorized)' in line
    assert 'expired-token' not in run.stdout + run.stderr
    assert as_json.code == 4, as_json
    assert (as_json.summary['result'], as_json.summary['exit_code']) == ('error', 4)
    assert as_json.summary['error'] == line.removeprefix('flux-monitor: error: ')


def test_not_allowed_to_read_flux_objects_exit_4(make_world: MakeWorld) -> None:
    world = make_world()
    outsider = world.root / 'outsider.kubeconfig'
    world.sandbox.add_token((Rule(frozenset({'get', 'list'}), frozenset({'deployments'})),),
                            kubeconfig_path=outsider)

    run = world.wait('--kubeconfig', str(outsider), '--timeout', '10s')

    assert run.code == 4, run
    line = one_line_error(run)
    assert 'not allowed to list' in line and '--namespace NS' in line, line


def test_no_kubeconfig_exit_4(tmp_path: Path) -> None:
    _, clone = fleet.make_repositories(tmp_path, fleet.fleet_files())
    home = tmp_path / 'home'
    home.mkdir()

    run = fleet.run(['--timeout', '5s'], clone, fleet.clean_env(HOME=str(home)))

    assert run.code == 4, run
    line = one_line_error(run)
    assert f'no kubeconfig at {home}/.kube/config; set KUBECONFIG, pass --kubeconfig' in line


def test_unknown_context_exit_3(tmp_path: Path) -> None:
    _, clone = fleet.make_repositories(tmp_path, fleet.fleet_files())
    kubeconfig = tmp_path / 'kubeconfig'
    write_kubeconfig(kubeconfig, kubeconfig_document('http://127.0.0.1:1', 'token'))

    run = fleet.run(['--context', 'production', '--timeout', '5s'], clone,
                    fleet.clean_env(KUBECONFIG=str(kubeconfig), HOME=str(tmp_path)))

    assert run.code == 3, run
    line = one_line_error(run)
    assert f"context 'production' is not in {kubeconfig}; use one of: flux-sandbox" in line


def test_an_unreachable_cluster_exit_4(tmp_path: Path) -> None:
    _, clone = fleet.make_repositories(tmp_path, fleet.fleet_files())
    kubeconfig = tmp_path / 'kubeconfig'
    write_kubeconfig(kubeconfig, kubeconfig_document('http://127.0.0.1:1', 'token'))

    run = fleet.run(['--timeout', '3s'], clone, fleet.clean_env(KUBECONFIG=str(kubeconfig), HOME=str(tmp_path)))

    assert run.code == 4, run
    line = one_line_error(run)
    assert 'cluster flux-sandbox (http://127.0.0.1:1) is unavailable' in line
    assert 'check that the cluster is up and reachable' in line


# -- several clusters --------------------------------------------------------------------------------------

def two_cluster_files() -> dict[str, str | None]:
    """staging applies ./apps, production ./apps-production: the same change can land in one only."""
    files = {name: content for name, content in fleet.fleet_files('clusters/staging').items()}
    files['clusters/production/infra.yaml'] = fleet.kustomization('infra', './infra')
    files['clusters/production/apps.yaml'] = fleet.kustomization('apps', './apps-production', depends_on=['infra'])
    files['apps-production/web.yaml'] = fleet.deployment()
    return files


@contextlib.contextmanager
def two_clusters(make_world: MakeWorld) -> Iterator[fleet.World]:
    world = make_world(two_cluster_files(), cluster_path='clusters/staging')
    with Sandbox(repo=world.bare, cluster_path='clusters/production', speed=fleet.SPEED) as production:
        assert production.wait_idle(30)
        fleet.merged_kubeconfig(world.root / 'merged.kubeconfig',
                                {'staging': world.sandbox, 'production': production})
        world.extra_env['KUBECONFIG'] = str(world.root / 'merged.kubeconfig')
        yield world
        assert production.controllers.errors == [], ''.join(production.controllers.errors)


def test_several_contexts_one_combined_verdict(make_world: MakeWorld) -> None:
    with two_clusters(make_world) as world:
        world.push('web: nginx 1.28 everywhere', {'apps/web.yaml': fleet.deployment(image='nginx:1.28'),
                                                  'apps-production/web.yaml': fleet.deployment(image='nginx:1.28')})

        both = ('--context', 'staging', '--context', 'production', '--timeout', '30s')
        run, simple = fleet.together(lambda: world.wait(*both, '--format', 'json'),
                                     lambda: world.wait(*both, '--format', 'simple'))

    assert run.code == 0, run
    assert run.summary['result'] == 'succeeded'
    for cluster in ('staging', 'production'):
        assert run.resource('GitRepository', 'flux-system', cluster)['state'] == 'landed'
        assert run.resource('Kustomization', 'apps', cluster)['state'] == 'landed'
    assert run.resource('HelmRelease', 'frontend', 'staging')['state'] == 'landed'
    assert 'production' not in {r['cluster'] for r in run.summary['resources'] if r['kind'] == 'HelmRelease'}
    assert simple.code == 0, simple
    assert '[staging] Flux system healthy' in simple.stdout and '[production] Flux system healthy' in simple.stdout
    assert '[production] Kustomization/flux-system/apps landed' in simple.stdout


def test_a_failure_in_one_cluster_fails_the_combined_verdict(make_world: MakeWorld) -> None:
    with two_clusters(make_world) as world:
        world.push('web: a new selector in production only', {
            'apps/web.yaml': fleet.deployment(image='nginx:1.28'),
            'apps-production/web.yaml': fleet.deployment(app='web-v2')})

        run = world.wait('--context', 'staging', '--context', 'production', '--timeout', '30s')

    assert run.code == 1, run
    verdict = run.stdout.split('❌ Reconciliation failed', 1)[1]
    assert '✗ [production] Kustomization/flux-system/apps' in verdict
    assert 'object:   Deployment/demo/web  field: spec.selector' in verdict
    assert '[staging] Kustomization/flux-system/apps' not in verdict


# -- configuration -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(('content', 'line', 'fragment'), [
    ('timeout: 1m\noutput:\n  format: json\ntimout: 5m\n', 4, "unknown key 'timout'"),
    ('cluster:\n  contexts: [a, b]\nerror_handling:\n  retry_delay: soon\n', 4, 'retry_delay'),
    ('output:\n  format: [json\n', 3, 'invalid YAML'),
])
def test_config_file_errors_exit_3_naming_file_and_line(tmp_path: Path, content: str, line: int,
                                                        fragment: str) -> None:
    _, clone = fleet.make_repositories(tmp_path, fleet.fleet_files())
    (clone / '.flux-monitor.yaml').write_text(content)

    run = fleet.run(['--timeout', '5s'], clone, fleet.clean_env(HOME=str(tmp_path)))

    assert run.code == 3, run
    message = one_line_error(run)
    assert message.startswith(f'flux-monitor: error: .flux-monitor.yaml:{line}'), message
    assert fragment in message


def test_an_explicit_config_file_and_flags_that_override_it(make_world: MakeWorld) -> None:
    world = make_world()
    settings = world.root / 'settings.yaml'
    settings.write_text('timeout: 45s\noutput:\n  format: json\nscope: all\n')
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    from_file, overridden, missing = fleet.together(
        lambda: world.wait('--config', str(settings)),
        lambda: world.wait('--config', str(settings), '--format', 'simple'),
        lambda: world.wait('--config', str(world.root / 'absent.yaml')))

    assert from_file.code == 0, from_file
    assert from_file.summary['result'] == 'succeeded'
    assert overridden.code == 0, overridden
    assert overridden.stdout.splitlines()[-1].startswith('result: succeeded (exit 0)')
    assert missing.code == 3, missing
    assert 'absent.yaml: config file not found' in one_line_error(missing)

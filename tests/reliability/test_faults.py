"""The fault matrix: `flux-monitor wait` against the sandbox's fault injection.

Each scenario asserts the verdict and its exit code, that nothing crashed, that the JSON Lines events neither
repeat nor skip a state (conftest.check_verdict), and, where the API failed, that the retries stayed within
`error_handling.retry_attempts` (counted in the sandbox's request log, which also timestamps each request).
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flux_monitor_hook import followers
from flux_monitor_hook.follow import WATCHED_KINDS
from flux_monitor_hook.sandbox import bootstrap
from flux_monitor_hook.sandbox.apiserver import read_only_rules
from tests.hooks.conftest import Fleet
from tests.hooks.conftest import deployment as hook_deployment
from tests.reliability.conftest import MakeWorld
from tests.reliability.conftest import check_verdict
from tests.reliability.conftest import configure
from tests.reliability.conftest import failures
from tests.reliability.conftest import first_event
from tests.reliability.conftest import install_hooks
from tests.reliability.conftest import no_crash
from tests.reliability.conftest import once
from tests.reliability.conftest import results_for
from tests.reliability.conftest import retries
from tests.reliability.conftest import sha_landed
from tests.reliability.conftest import wait_reacting
from tests.wait import fleet

pytestmark = pytest.mark.timeout(120)

REQUESTED_AT = 'reconcile.fluxcd.io/requestedAt'
ALL = ('--scope', 'all', '--format', 'json')


def change(world: fleet.World, image: str = 'nginx:1.28', rollout_seconds: int = 2) -> str:
    """Push a new image for the web Deployment (applied by apps, which also applies the HelmRelease)."""
    return world.push(f'web: {image}', {'apps/web.yaml': slow_deployment(image, rollout_seconds)})


def slow_deployment(image: str, rollout_seconds: int = 2) -> str:
    """The web Deployment; its rollout takes rollout_seconds of sandbox time (never past its deadline)."""
    return fleet.dump({'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {
        'name': 'web', 'namespace': 'demo',
        'annotations': {'sandbox.flux-monitor.io/rollout-seconds': str(rollout_seconds)}},
        'spec': {'replicas': 1, 'progressDeadlineSeconds': 360000, 'selector': {'matchLabels': {'app': 'web'}},
                 'template': {'metadata': {'labels': {'app': 'web'}},
                              'spec': {'containers': [{'name': 'web', 'image': image}]}}}})


def patient_files() -> dict[str, str | None]:
    """The fleet, with Kustomizations whose health checks wait long enough for slow rollouts."""
    files = fleet.fleet_files()
    files[f'{fleet.CLUSTER_PATH}/infra.yaml'] = fleet.kustomization('infra', './infra', timeout='1h')
    files[f'{fleet.CLUSTER_PATH}/apps.yaml'] = fleet.kustomization('apps', './apps', depends_on=['infra'],
                                                                   timeout='1h')
    return files


# -- transient API errors --------------------------------------------------------------------------------

@pytest.mark.parametrize('status', [500, 503])
def test_a_burst_of_server_errors_on_list_is_retried_within_the_configured_attempts(make_world: MakeWorld,
                                                                                    status: int) -> None:
    world = make_world()
    configure(world, retries(3))
    sha = change(world)
    world.sandbox.faults.fail_next(3, status, verb='list', resource='kustomizations')

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    assert len(failures(world.sandbox.server.log, 'list', 'kustomizations')) == 3
    assert f'retrying after a transient API error: listing kustomizations: {status}' in run.stdout


def test_errors_beyond_the_configured_attempts_are_cluster_unavailable(make_world: MakeWorld) -> None:
    world = make_world()
    configure(world, retries(2))
    change(world)
    world.sandbox.faults.fail_next(50, 503, verb='list', resource='helmreleases')

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'error', 4)
    attempts = world.sandbox.server.log.attempts('list', 'helmreleases')
    assert len(attempts) == 3 and all(a.fault == '503' for a in attempts), attempts  # 1 + 2 retries, no more
    assert 'listing helmreleases: 503' in run.summary['error']
    assert run.stderr.count('\n') == 1 and run.stderr.startswith('flux-monitor: error: cluster flux-sandbox')


def test_a_burst_of_server_errors_on_watch_is_retried(make_world: MakeWorld) -> None:
    world = make_world()
    configure(world, retries(4))
    sha = change(world)
    world.sandbox.faults.fail_next(3, 503, verb='watch', resource='gitrepositories')
    world.sandbox.faults.fail_next(2, 500, verb='watch', resource='kustomizations')

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    log = world.sandbox.server.log
    assert len(failures(log, 'watch', 'gitrepositories')) == 3
    assert len(failures(log, 'watch', 'kustomizations')) == 2


def test_watch_errors_beyond_the_configured_attempts_are_cluster_unavailable(make_world: MakeWorld) -> None:
    world = make_world()
    configure(world, retries(2))
    change(world)
    world.sandbox.faults.fail_next(50, 503, verb='watch', resource='kustomizations')

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'error', 4)
    assert len(world.sandbox.server.log.attempts('watch', 'kustomizations')) == 3, \
        world.sandbox.server.log.attempts('watch', 'kustomizations')
    assert 'watching kustomizations: 503' in run.summary['error']


@pytest.mark.parametrize(('verb', 'resource'), [('list', 'kustomizations'), ('watch', 'kustomizations'),
                                                ('patch', 'gitrepositories')])
def test_429_retry_after_is_honoured(make_world: MakeWorld, verb: str, resource: str) -> None:
    world = make_world()
    configure(world, retries(3, '50ms'))
    sha = change(world)
    world.sandbox.faults.fail_next(1, 429, verb=verb, resource=resource, retry_after=2)

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    attempts = world.sandbox.server.log.attempts(verb, resource)
    throttled = [i for i, a in enumerate(attempts) if a.fault == '429']
    assert len(throttled) == 1 and len(attempts) > throttled[0] + 1, attempts
    gap = attempts[throttled[0] + 1].at - attempts[throttled[0]].at
    assert gap >= 1.95, f'the next {verb} {resource} came {gap:.2f}s after a 429 with Retry-After: 2'


def test_the_api_down_for_10_seconds_mid_wait(make_world: MakeWorld) -> None:
    world = make_world(patient_files())
    configure(world, retries(10, '200ms'))
    # The outage starts as the wait starts following: whether the trigger got through before it or comes again
    # after it, apps (3 s of rollout after the fetch) lands while the API is down or after it is back.
    sha = change(world, rollout_seconds=300)
    outage: list[float] = []

    def down() -> None:
        outage.append(time.monotonic())
        world.sandbox.server.start_outage(10)

    run = wait_reacting(world, *ALL, '--timeout', '45s', react=once(down, first_event))

    summary = check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    assert outage and summary['duration_s'] > 10, run
    notes = [r['message'] for r in run.records if r['type'] == 'note']
    assert len(notes) == len(set(notes)), notes  # nothing said twice
    retried = [note for note in notes if note.startswith('retrying')]
    # Once per watched kind and kind of error (the stream cut, then the connection refused), not per attempt.
    assert 1 <= len(retried) <= 2 * len(WATCHED_KINDS), retried


def test_connections_dropped_during_list(make_world: MakeWorld) -> None:
    world = make_world()
    configure(world, retries(3))
    sha = change(world)
    world.sandbox.faults.drop_next(2, verb='list', resource='kustomizations')
    world.sandbox.faults.drop_next(1, verb='list', resource='gitrepositories')

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    log = world.sandbox.server.log
    assert [a.fault for a in failures(log, 'list', 'kustomizations')] == ['drop', 'drop']
    assert [a.fault for a in failures(log, 'list', 'gitrepositories')] == ['drop']


@pytest.mark.parametrize('cut', [{'after_events': 2}, {'after_seconds': 0.3}], ids=['events', 'seconds'])
def test_watch_streams_cut_again_and_again(make_world: MakeWorld, cut: dict[str, float]) -> None:
    world = make_world(patient_files())
    sha = change(world, rollout_seconds=200)  # 2 s: streams are cut several times meanwhile
    world.sandbox.faults.cut_watches(**cut)  # type: ignore[arg-type]

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    assert world.sandbox.server.log.snapshot()[('watch', 'kustomizations')] > 2  # it did resume


def test_410_gone_on_resume_relists_without_missing_a_transition(make_world: MakeWorld) -> None:
    world = make_world(patient_files())
    sha = change(world, rollout_seconds=100)
    faults = world.sandbox.faults
    faults.cut_watches(after_events=1)
    faults.expire_next_watch(12)

    run = world.wait(*ALL, '--timeout', '30s')

    summary = check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    assert all(item['state'] == 'landed' for item in summary['sources'] + summary['resources'])
    lists = world.sandbox.server.log.snapshot()
    relists = sum(count for (verb, _), count in lists.items() if verb == 'list') - 2 * len(WATCHED_KINDS) - 1
    assert relists >= 3, lists  # beyond a probe and a list per kind (and the Flux health check): relists


def test_history_compacted_mid_wait(make_world: MakeWorld) -> None:
    world = make_world(patient_files())
    sha = change(world, rollout_seconds=150)  # 1.5 s: the compaction comes before apps lands

    def compact() -> None:
        world.sandbox.faults.cut_watches(after_events=1)
        world.sandbox.store.compact()

    run = wait_reacting(world, *ALL, '--timeout', '30s', react=once(compact, first_event))

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)


# -- slow responses ------------------------------------------------------------------------------------------

def test_slow_responses_are_waited_for(make_world: MakeWorld) -> None:
    world = make_world()
    sha = change(world)
    world.sandbox.faults.delay(1.5, 6, verb='list')
    world.sandbox.faults.delay(1.0, 4, verb='watch')

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)


def test_a_response_slower_than_the_timeout_ends_the_wait_on_time(make_world: MakeWorld) -> None:
    world = make_world()
    change(world)
    world.sandbox.faults.delay(25, 1, verb='list', resource='helmreleases')

    run = world.wait(*ALL, '--timeout', '4s')

    no_crash(run)
    assert run.code in (2, 4), run
    assert run.seconds < 4 + 5, f'the wait ended {run.seconds:.1f}s after it started, its timeout is 4s'
    assert run.summary['result'] in ('timeout', 'error')


def test_a_discovery_slower_than_the_timeout_ends_the_wait_on_time(make_world: MakeWorld) -> None:
    world = make_world()
    change(world)
    world.sandbox.faults.delay(25, 1, verb='get', resource='discovery')

    run = world.wait(*ALL, '--timeout', '4s')

    no_crash(run)
    assert run.code == 4, run
    assert run.seconds < 4 + 5, f'the wait ended {run.seconds:.1f}s after it started, its timeout is 4s'
    assert 'unavailable' in run.summary['error']


# -- objects that change under the wait ----------------------------------------------------------------------

def test_a_followed_object_deleted_mid_wait(make_world: MakeWorld) -> None:
    files = patient_files()
    # An extra Kustomization of the same source, applied by nobody: once deleted it does not come back.
    files['extra/config.yaml'] = fleet.dump({'apiVersion': 'v1', 'kind': 'ConfigMap',
                                             'metadata': {'name': 'extra', 'namespace': 'default'}})
    world = make_world(files)
    world.apply(fleet.kustomization('extra', './extra', depends_on=['apps'], timeout='1h'))
    world.settle()
    sha = change(world, rollout_seconds=300)  # apps takes 3 s, extra waits for it

    def delete() -> None:
        world.sandbox.delete(fleet.KS, 'Kustomization', 'flux-system', 'extra')

    run = wait_reacting(world, *ALL, '--timeout', '30s', react=once(delete, first_event))

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    extra = run.resource('Kustomization', 'extra')
    assert (extra['state'], extra['reason']) == ('skipped', 'Deleted'), extra
    assert run.resource('Kustomization', 'apps')['state'] == 'landed'


def test_a_followed_object_pruned_by_the_change(make_world: MakeWorld) -> None:
    world = make_world()
    sha = world.push('frontend: retired', {'apps/frontend.yaml': None})

    run = world.wait(*ALL, '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    assert run.resource('HelmRelease', 'frontend')['state'] == 'skipped'
    assert run.resource('Kustomization', 'apps')['state'] == 'landed'


def test_the_git_repository_recreated_mid_wait(make_world: MakeWorld) -> None:
    world = make_world(patient_files())
    sha = change(world, rollout_seconds=300)
    original = world.get(fleet.GIT, 'GitRepository', 'flux-system')

    def recreate() -> None:
        world.sandbox.delete(fleet.GIT, 'GitRepository', 'flux-system', 'flux-system')
        time.sleep(0.3)
        world.sandbox.apply({'apiVersion': fleet.GIT, 'kind': 'GitRepository',
                             'metadata': {'name': 'flux-system', 'namespace': 'flux-system'},
                             'spec': original['spec']})

    def source_landed(record: dict[str, Any]) -> bool:
        return record.get('kind') == 'GitRepository' and record.get('state') == 'landed'

    run = wait_reacting(world, *ALL, '--timeout', '30s',
                        react=once(lambda: threading.Thread(target=recreate).start(), source_landed))

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    states = [r['state'] for r in run.records if r['type'] == 'event' and r['kind'] == 'GitRepository']
    assert 'skipped' in states and states[-1] == 'landed', states


def test_a_flux_controller_becoming_unavailable_mid_wait(make_world: MakeWorld) -> None:
    world = make_world(patient_files())
    change(world, rollout_seconds=100000)
    store = world.sandbox.store

    def controller_down() -> None:
        bootstrap.set_controller_ready(store, 'kustomize-controller', False)

    def source_landed(record: dict[str, Any]) -> bool:
        return record.get('kind') == 'GitRepository' and record.get('state') == 'landed'

    run = wait_reacting(world, *ALL, '--timeout', '4s', react=once(controller_down, source_landed))

    check_verdict(run, 'timeout', 2)
    notes = [r['message'] for r in run.records if r['type'] == 'note'] + run.summary['notes']
    assert any('kustomize-controller' in note and 'not ready' in note for note in notes), notes


# -- access --------------------------------------------------------------------------------------------------

def test_the_token_revoked_mid_wait(make_world: MakeWorld) -> None:
    world = make_world(patient_files())
    kubeconfig = world.root / 'revocable.kubeconfig'
    token = world.sandbox.add_token(kubeconfig_path=kubeconfig)
    change(world, rollout_seconds=500)

    def revoke() -> None:
        world.sandbox.revoke_token(token)
        world.sandbox.server.start_outage(0)  # the open watches end too, as an API server restart ends them

    run = wait_reacting(world, *ALL, '--kubeconfig', str(kubeconfig), '--timeout', '30s',
                        react=once(revoke, first_event))

    check_verdict(run, 'error', 4)
    assert 'rejected the credentials (401 Unauthorized)' in run.summary['error']
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'rejected the credentials (401 Unauthorized); refresh them' in lines[0], run
    assert token not in run.stdout + run.stderr


def test_a_read_only_token_waits_for_flux_without_triggering_and_says_so_once(make_world: MakeWorld) -> None:
    world = make_world(git_interval='5m')  # Flux fetches by itself every 3 s
    reader = world.root / 'reader.kubeconfig'
    world.sandbox.add_token(read_only_rules(), kubeconfig_path=reader)
    sha = change(world)

    run = world.wait(*ALL, '--kubeconfig', str(reader), '--timeout', '30s')

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    said = [r['message'] for r in run.records if r['type'] == 'note' and 'not allowed to patch' in r['message']]
    assert len(said) == 1, said
    assert '403' in said[0] and 'waiting for its interval' in said[0]
    assert REQUESTED_AT not in (world.get(fleet.GIT, 'GitRepository', 'flux-system')['metadata'].get('annotations')
                                or {})
    assert len(failures(world.sandbox.server.log, 'patch', 'gitrepositories')) == 0  # 403s are not faults


def test_pagination_across_a_change(make_world: MakeWorld) -> None:
    world = make_world()
    store_apply = world.sandbox.apply
    namespace = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'aaa-filler'}}
    store_apply(namespace)
    for index in range(520):  # more than one page of 500, listed before flux-system
        store_apply({'apiVersion': fleet.GIT, 'kind': 'GitRepository',
                     'metadata': {'name': f'filler-{index:03d}', 'namespace': 'aaa-filler'},
                     'spec': {'interval': '1h', 'url': 'https://example.invalid/x.git', 'suspend': True}})
    world.settle()
    sha = change(world)
    log = world.sandbox.server.log
    world.sandbox.faults.delay(1.0, verb='list', resource='gitrepositories')
    before = log.snapshot()[('list', 'gitrepositories')]  # lists made while setting up do not count

    def fetch_between_pages() -> None:
        deadline = time.monotonic() + 20
        # The probe, the first page, then the request for the second page: the client asks for it only once
        # the first page (and so the list's snapshot) is out. The second page comes from that snapshot, 1 s late,
        # while Flux fetches now: the change must arrive through the watch, neither lost nor seen twice.
        while log.snapshot()[('list', 'gitrepositories')] < before + 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        repository = world.get(fleet.GIT, 'GitRepository', 'flux-system')
        repository['metadata'].setdefault('annotations', {})[REQUESTED_AT] = 'between-pages'
        world.sandbox.apply(repository)

    helper = threading.Thread(target=fetch_between_pages)
    helper.start()
    run = world.wait(*ALL, '--no-trigger', '--timeout', '30s')
    helper.join()

    check_verdict(run, 'succeeded', 0)
    sha_landed(run, sha)
    assert log.snapshot()[('list', 'gitrepositories')] >= before + 3  # the limit=1 probe, then two pages
    states = [r['state'] for r in run.records if r['type'] == 'event' and r['kind'] == 'GitRepository']
    assert states == ['pending', 'landed'], states


# -- the background follower ---------------------------------------------------------------------------------

def test_the_remote_never_receiving_the_push(hook_fleet: Fleet) -> None:
    fleet_ = hook_fleet
    install_hooks(fleet_, 'pre-push')
    rejecting = fleet_.remote / 'hooks' / 'pre-receive'
    rejecting.write_text('#!/bin/sh\necho "pushes are frozen" >&2\nexit 1\n')
    rejecting.chmod(0o755)
    (fleet_.clone / '.flux-monitor.yaml').write_text('timeout: 3s\n')
    sha = fleet_.commit('new image', {'apps/web.yaml': hook_deployment(image='1.1')})

    push = fleet_.run('git', 'push', 'origin', 'main', stdin=subprocess.DEVNULL)

    assert push.returncode != 0 and 'pushes are frozen' in push.stderr, push.stderr
    result = fleet_.wait_for_result(sha, timeout=20)
    assert (result['result'], result['exit_code']) == ('timeout', 2), result
    assert result['message'] == f'origin did not receive {sha[:7]} within 3s'
    time.sleep(0.3)
    assert len(results_for(fleet_, sha)) == 1
    log = Path(result['log']).read_text()
    assert 'Traceback' not in log and f'origin did not receive {sha[:7]} within 3s' in log, log
    assert 'following' not in fleet_.flux_monitor('status').stdout  # the follower is gone


def test_two_pushes_in_quick_succession(hook_fleet: Fleet) -> None:
    fleet_ = hook_fleet
    install_hooks(fleet_, 'pre-push')
    first = fleet_.commit('slow', {'apps/web.yaml': hook_deployment(image='slow', never_ready=True)})
    assert fleet_.run('git', 'push', 'origin', 'main', stdin=subprocess.DEVNULL).returncode == 0
    second = fleet_.commit('fixed', {'apps/web.yaml': hook_deployment(image='1.2')})
    assert fleet_.run('git', 'push', 'origin', 'main', stdin=subprocess.DEVNULL).returncode == 0

    newer = fleet_.wait_for_result(second, timeout=40)
    older = fleet_.wait_for_result(first, timeout=10)

    assert (newer['result'], newer['exit_code']) == ('succeeded', 0), newer
    assert (older['result'], older.get('superseded_by')) == ('superseded', second), older
    time.sleep(0.3)
    assert len(results_for(fleet_, first)) == 1 and len(results_for(fleet_, second)) == 1
    for result in (newer, older):
        assert 'Traceback' not in Path(result['log']).read_text()


def test_followers_of_two_quick_pushes_coming_up_in_the_wrong_order(hook_fleet: Fleet) -> None:
    """The hooks queue followers in push order, but processes start in any order: the later push's follower may
    register first. The earlier one must then step aside, not stop it."""
    fleet_ = hook_fleet
    first = fleet_.commit('first', {'apps/web.yaml': hook_deployment(image='1.3')})
    second = fleet_.commit('second', {'apps/web.yaml': hook_deployment(image='1.4')})
    fleet_.git('push', '--quiet', '--no-verify', 'origin', 'main')
    git_dir = fleet_.git_dir
    queued = time.time()

    def follower(sha: str, queued_at: float) -> subprocess.Popen[bytes]:
        log = followers.new_log(git_dir, 'main')
        return subprocess.Popen(
            [sys.executable, '-m', 'flux_monitor_hook', 'follower', '--root', str(fleet_.clone), '--branch', 'main',
             '--sha', sha, '--stage', 'pre-push', '--log', str(log), '--remote', 'origin',
             '--remote-ref', 'refs/heads/main', '--queued-at', repr(queued_at)],
            cwd=fleet_.clone, env=fleet_.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    later = follower(second, queued + 0.5)
    fleet_.wait_until_following()
    earlier = follower(first, queued)
    assert earlier.wait(timeout=30) == 130
    assert later.wait(timeout=40) == 0

    older, newer = results_for(fleet_, first), results_for(fleet_, second)
    assert len(older) == 1 and len(newer) == 1, (older, newer)
    assert (older[0]['result'], older[0]['superseded_by']) == ('superseded', second)
    assert newer[0]['result'] == 'succeeded'

"""The pre-commit hooks end to end: real git, the real pre-commit framework, the sandbox over HTTP."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flux_monitor_hook.commands.hook import detect_stage
from tests.hooks.conftest import PRE_COMMIT
from tests.hooks.conftest import Fleet
from tests.hooks.conftest import Terminal
from tests.hooks.conftest import deployment

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_is_valid() -> None:
    result = subprocess.run([PRE_COMMIT, 'validate-manifest', str(ROOT / '.pre-commit-hooks.yaml')],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(('env', 'explicit', 'expected'), [
    ({'PRE_COMMIT_REMOTE_NAME': 'origin', 'PRE_COMMIT_TO_REF': 'a' * 40}, None, 'pre-push'),
    ({'GIT_INDEX_FILE': '.git/index'}, None, 'git-commit'),
    ({}, None, 'by-hand'),
    ({}, 'manual', 'by-hand'),
    ({'GIT_INDEX_FILE': '.git/index'}, 'post-commit', 'post-commit'),
])
def test_stage_detection(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], explicit: str | None,
                         expected: str) -> None:
    for name in ('PRE_COMMIT_REMOTE_NAME', 'PRE_COMMIT_TO_REF', 'GIT_INDEX_FILE'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert detect_stage(explicit) == expected


def _install(fleet: Fleet, *hook_types: str) -> None:
    args = [arg for hook_type in hook_types for arg in ('--hook-type', hook_type)]
    result = fleet.run(PRE_COMMIT, 'install', *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pre_push_follows_in_the_background_and_streams_to_the_terminal(fleet: Fleet, terminal: Terminal) -> None:
    _install(fleet, 'pre-push')
    sha = fleet.commit('new image', {'apps/web.yaml': deployment(image='1.1')})
    push = terminal.run(['git', 'push', 'origin', 'main'], fleet.clone, fleet.env)
    assert push.wait(timeout=60) == 0, 'the push itself must succeed and not wait for Flux'
    screen = terminal.read_until('All resources reconciled successfully')
    assert 'All resources reconciled successfully' in screen, screen
    assert f'following {sha[:7]} (main) after the pre-push' in screen
    result = fleet.wait_for_result(sha)
    assert result['result'] == 'succeeded' and result['exit_code'] == 0
    # Only apps builds apps/web.yaml: the default scope follows what the change affects.
    assert {r['name']: r['state'] for r in result['resources']} == {'apps': 'landed'}
    status = fleet.flux_monitor('status', '--format', 'json')
    assert status.returncode == 0
    assert json.loads(status.stdout.splitlines()[-1])['sha'] == sha
    state = fleet.git_dir / 'flux-monitor'
    for path in state.rglob('*'):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f'{path} is readable by others'


def test_pre_push_without_a_terminal_records_the_failure(fleet: Fleet) -> None:
    _install(fleet, 'pre-push')
    sha = fleet.commit('immutable selector', {'apps/web.yaml': deployment(selector='web2')})
    push = fleet.run('git', 'push', 'origin', 'main', stdin=subprocess.DEVNULL)
    assert push.returncode == 0, push.stderr
    result = fleet.wait_for_result(sha)
    assert result['result'] == 'failed' and result['exit_code'] == 1
    failed = next(r for r in result['resources'] if r['state'] == 'failed')
    assert failed['diagnosis']['category'] == 'immutable-field'
    assert failed['diagnosis']['field'] == 'spec.selector'
    assert fleet.flux_monitor('status', '--branch', 'main').returncode == 1


def test_a_newer_push_supersedes_the_follower(fleet: Fleet) -> None:
    _install(fleet, 'pre-push')
    # The first commit never becomes healthy, so its follower is still waiting when the second push comes.
    first = fleet.commit('slow', {'apps/web.yaml': deployment(image='slow', never_ready=True)})
    assert fleet.run('git', 'push', 'origin', 'main', stdin=subprocess.DEVNULL).returncode == 0
    fleet.wait_until_following()
    second = fleet.commit('fixed', {'apps/web.yaml': deployment(image='1.2')})
    assert fleet.run('git', 'push', 'origin', 'main', stdin=subprocess.DEVNULL).returncode == 0
    superseded = fleet.wait_for_result(first)
    assert superseded['result'] == 'superseded' and superseded['superseded_by'] == second
    assert fleet.wait_for_result(second)['result'] == 'succeeded'


def test_by_hand_run_waits_in_the_foreground_with_the_wait_exit_codes(fleet: Fleet) -> None:
    sha = fleet.commit('new image', {'apps/web.yaml': deployment(image='2.0')})
    fleet.git('push', '--no-verify', 'origin', 'main')
    ok = fleet.run(PRE_COMMIT, 'run', 'flux-monitor', '--verbose', timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert 'All resources reconciled successfully' in ok.stdout
    fleet.commit('immutable selector', {'apps/web.yaml': deployment(selector='other')})
    fleet.git('push', '--no-verify', 'origin', 'main')
    failed = fleet.run(PRE_COMMIT, 'run', 'flux-monitor', '--hook-stage', 'manual', '--verbose', timeout=120)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert 'field is immutable' in failed.stdout
    assert sha  # the first commit landed before the second was pushed


def test_git_commit_is_not_held_up(fleet: Fleet) -> None:
    _install(fleet, 'pre-commit')
    (fleet.clone / 'apps' / 'note.txt').write_text('x\n')
    fleet.git('add', '--all')
    started = time.monotonic()
    result = fleet.run('git', 'commit', '-m', 'a note')
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (fleet.git_dir / 'flux-monitor' / 'followers').exists() or \
        not list((fleet.git_dir / 'flux-monitor' / 'followers').iterdir())
    assert elapsed < 30  # a generous bound that only a hook waiting for Flux would break


def test_post_commit_follows_without_a_push_when_flux_reads_the_repository(tmp_path: Path, fleet: Fleet) -> None:
    """A Flux source may read the working repository itself (a mirror or local server): post-commit follows."""
    repository = fleet.sandbox.get('source.toolkit.fluxcd.io/v1', 'GitRepository', 'flux-system', 'flux-system')
    repository['spec']['url'] = str(fleet.clone)
    fleet.sandbox.apply(repository)
    _install(fleet, 'post-commit')
    sha = fleet.commit('local change', {'apps/web.yaml': deployment(image='3.0')})
    result = fleet.wait_for_result(sha)
    assert result['stage'] == 'post-commit' and result['result'] == 'succeeded'


def test_post_commit_is_silent_when_no_flux_source_follows(fleet: Fleet) -> None:
    _install(fleet, 'post-commit')
    fleet.git('checkout', '-q', '-b', 'feature')
    sha = fleet.commit('feature work', {'apps/web.yaml': deployment(image='4.0')})
    result = fleet.wait_for_result(sha)
    assert result['result'] == 'no-sources'


def test_no_kubeconfig_never_blocks_git(fleet: Fleet, terminal: Terminal) -> None:
    _install(fleet, 'pre-push')
    fleet.env['KUBECONFIG'] = str(fleet.clone / 'missing-kubeconfig')
    fleet.commit('change', {'apps/web.yaml': deployment(image='5.0')})
    push = terminal.run(['git', 'push', 'origin', 'main'], fleet.clone, fleet.env)
    assert push.wait(timeout=60) == 0
    screen = terminal.read_until('main -> main')
    assert screen.count('flux-monitor: no kubeconfig') == 1, screen


def test_flux_monitor_push_waits_in_the_foreground(fleet: Fleet) -> None:
    _install(fleet, 'pre-push')
    sha = fleet.commit('new image', {'apps/web.yaml': deployment(image='6.0')})
    result = fleet.flux_monitor('push', 'origin', 'main')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'All resources reconciled successfully' in result.stdout
    assert fleet.git('ls-remote', 'origin', 'refs/heads/main').split()[0] == sha
    followers_dir = fleet.git_dir / 'flux-monitor' / 'followers'
    assert not followers_dir.exists() or not list(followers_dir.iterdir()), 'push starts no background follower'


def test_post_receive_reports_to_the_pusher(fleet: Fleet) -> None:
    hook = fleet.remote / 'hooks' / 'post-receive'
    hook.write_text(f'#!/bin/sh\nexec {sys.executable} -m flux_monitor_hook post-receive --format simple\n')
    hook.chmod(0o755)
    fleet.commit('new image', {'apps/web.yaml': deployment(image='7.0')})
    push = fleet.run('git', 'push', '--no-verify', 'origin', 'main', timeout=120)
    assert push.returncode == 0, push.stderr
    assert 'remote: result: succeeded' in push.stderr, push.stderr


def test_stop_ends_a_follower(fleet: Fleet) -> None:
    _install(fleet, 'pre-push')
    sha = fleet.commit('never ready', {'apps/web.yaml': deployment(image='8.0', never_ready=True)})
    assert fleet.run('git', 'push', 'origin', 'main', stdin=subprocess.DEVNULL).returncode == 0
    fleet.wait_until_following()
    assert 'stopped the follower of main' in fleet.flux_monitor('stop').stdout
    assert fleet.wait_for_result(sha)['result'] == 'stopped'


@pytest.mark.skipif(os.environ.get('FLUX_MONITOR_SKIP_INSTALL_TEST') == '1', reason='asked to skip')
def test_installable_from_this_repository_with_try_repo(fleet: Fleet) -> None:
    """pre-commit builds its own environment from this repository, as users get it by `rev`."""
    sha = fleet.commit('new image', {'apps/web.yaml': deployment(image='9.0')})
    fleet.git('push', '--no-verify', 'origin', 'main')
    result = fleet.run(PRE_COMMIT, 'try-repo', str(ROOT), 'flux-monitor', '--hook-stage', 'manual', '--verbose',
                       timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'succeeded for {sha[:7]}' in result.stdout or 'All resources reconciled successfully' in result.stdout


def test_webhook_notification_when_the_follower_ends(fleet: Fleet) -> None:
    import http.server
    import threading

    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (fleet.clone / '.flux-monitor.yaml').write_text(
            f'notify:\n  webhook: http://127.0.0.1:{server.server_address[1]}/flux\n')
        _install(fleet, 'pre-push')
        sha = fleet.commit('new image', {'apps/web.yaml': deployment(image='10.0')})
        assert fleet.run('git', 'push', 'origin', 'main', stdin=subprocess.DEVNULL).returncode == 0
        assert fleet.wait_for_result(sha)['result'] == 'succeeded'
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received and received[0]['text'].startswith('✅ flux-monitor: main')
        assert received[0]['summary']['sha'] == sha
    finally:
        server.shutdown()

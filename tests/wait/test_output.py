"""What `flux-monitor wait` prints: the three formats (JSON Lines against docs/summary.schema.json), colours,
timestamps and quiet, and Ctrl+C."""
from __future__ import annotations

import re

import pytest

from tests.wait import fleet
from tests.wait.conftest import MakeWorld

pytestmark = pytest.mark.timeout(90)

SGR = re.compile(r'\x1b\[[0-9;]*m')  # a colour or style; cursor movement (\x1b[nF, \x1b[J) is not colour
SYMBOLS = ('✔', '✗', '◎', '✅', '❌', '→', '►')


def test_every_format(make_world: MakeWorld) -> None:
    world = make_world()
    sha = world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    as_json, simple, structured, quiet = fleet.together(
        lambda: world.wait('--scope', 'all', '--timeout', '30s', '--format', 'json'),
        lambda: world.wait('--scope', 'all', '--timeout', '30s', '--format', 'simple', '--timestamps'),
        lambda: world.wait('--scope', 'all', '--timeout', '30s'),
        lambda: world.wait('--scope', 'all', '--timeout', '30s', '-q'))

    assert as_json.code == 0, as_json
    summary = as_json.summary  # every line checked against the schema
    assert {record['type'] for record in as_json.records} == {'note', 'event', 'summary'}
    assert (summary['result'], summary['revision'], summary['branch']) == ('succeeded', sha, 'main')
    assert summary['repository'] == str(world.bare)
    events = [record for record in as_json.records if record['type'] == 'event']
    assert {(e['kind'], e['name']) for e in events} == {
        ('GitRepository', 'flux-system'), ('Kustomization', 'flux-system'), ('Kustomization', 'infra'),
        ('Kustomization', 'apps'), ('HelmRelease', 'frontend')}
    assert all(item['duration_s'] is not None and item['duration_s'] <= summary['duration_s'] + 0.01
               for item in summary['sources'] + summary['resources'])

    assert simple.code == 0, simple
    assert not any(symbol in simple.stdout for symbol in SYMBOLS) and '\x1b' not in simple.stdout
    lines = simple.stdout.splitlines()
    assert all(re.match(r'\d\d:\d\d:\d\d ', line) for line in lines), lines
    assert 'Kustomization/flux-system/apps landed main@sha1:' in simple.stdout
    assert re.search(rf'result: succeeded \(exit 0\) revision {sha} in \d+\.\ds$', lines[-1])

    assert structured.code == 0, structured
    assert '→ Monitoring reconciliation for 4 resources...' in structured.stdout
    assert 'timeline since flux-monitor started' in structured.stdout
    assert '\x1b' not in structured.stdout  # not a terminal: no colours, no cursor movement

    assert quiet.code == 0, quiet
    assert quiet.stdout.strip().startswith('✅ All resources reconciled successfully'), quiet
    assert 'Monitoring' not in quiet.stdout


def test_colours(make_world: MakeWorld) -> None:
    world = make_world()
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    terminal, no_color, dumb, never, always = fleet.together(
        lambda: world.wait_in_terminal('--timeout', '30s'),
        lambda: world.wait_in_terminal('--timeout', '30s', env=world.env(NO_COLOR='1')),
        lambda: world.wait_in_terminal('--timeout', '30s', env=world.env(TERM='dumb')),
        lambda: world.wait_in_terminal('--timeout', '30s', '--color', 'never'),
        lambda: world.wait('--timeout', '30s', '--color', 'always'))  # piped, yet coloured when asked

    for run in (terminal, no_color, dumb, never, always):
        assert run.code == 0, run
    assert SGR.search(terminal.stdout), terminal
    assert '\x1b[32m✔\x1b[0m' in terminal.stdout  # landed is green
    for plain in (no_color, dumb, never):
        assert not SGR.search(plain.stdout), plain
    assert '✅ All resources reconciled successfully' in no_color.stdout
    assert SGR.search(always.stdout), always


def test_ctrl_c_lists_what_was_pending_and_exits_130(make_world: MakeWorld) -> None:
    world = make_world()
    world.push('web: nginx 1.28', {'apps/web.yaml': fleet.deployment(image='nginx:1.28')})

    run, as_json = fleet.together(
        lambda: world.interrupt('--no-trigger', '--timeout', '60s', ready='Monitoring reconciliation'),
        lambda: world.interrupt('--no-trigger', '--timeout', '60s', '--format', 'json', ready='"type":"event"'))

    assert run.code == 130, run
    assert run.seconds < 20, run
    pending = run.stdout.split('Interrupted; still pending:', 1)[1]
    assert '◎ GitRepository/flux-system/flux-system: waiting for Flux to fetch the commit' in pending
    assert '◎ Kustomization/flux-system/apps: waiting for GitRepository/flux-system/flux-system' in pending
    assert 'Traceback' not in run.stderr
    assert as_json.code == 130, as_json
    assert as_json.summary['result'] == 'interrupted'
    assert as_json.resource('GitRepository', 'flux-system')['state'] == 'pending'

"""API load: requests flux-monitor sends while waiting on an idle cluster, and for a whole push, next to the
flux CLI's 2-second poll (benchmarks/poller.py). Counted by the sandbox's API server (RequestLog, by verb and
resource); BOOKMARK events are part of an open watch and are not requests, a watch re-established is one.
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Check
from benchmarks.harness import Commits
from benchmarks.harness import Lines
from benchmarks.harness import Table

PUSH_SPEED = 1.0  # sandbox time as real time: a push takes as long as Flux's own steps would
RESOURCES = 8  # Kustomizations in the idle cluster, plus HELM_RELEASES HelmReleases
HELM_RELEASES = 2


def _idle_cluster(sandbox: harness.Sandbox, commits: Commits, *, source_landed: bool) -> list[str]:
    """A source and resources that stay in progress: nothing changes while we count."""
    harness.namespace(sandbox, 'bench')
    new, old = f'main@sha1:{commits.new}', f'main@sha1:{commits.old}'
    harness.create(sandbox, harness.git_repository('bench', 'fleet', f'file://{commits.root}'),
                   harness.source_ready(new if source_landed else old))
    objects = []
    for i in range(RESOURCES):
        name = f'app-{i}'
        harness.create(sandbox, harness.kustomization('bench', name, ('bench', 'fleet')),
                       harness.kustomization_pending(old, new))
        objects.append(f'Kustomization/bench/{name}')
    for i in range(HELM_RELEASES):
        name = f'chart-{i}'
        source = ('GitRepository', 'bench', 'fleet')
        fetched = commits.new if source_landed else commits.old
        harness.create(sandbox, harness.helm_chart('bench', name, source),
                       harness.helm_chart_ready(f'main@sha1:{fetched}', f'1.0.0+{fetched[:12]}'))
        harness.create(sandbox, harness.helm_release('bench', name, source),
                       harness.helm_release_pending(f'1.0.0+{commits.old[:12]}'))
        objects.append(f'HelmRelease/bench/{name}')
    return objects


def _diff(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter({key: after[key] - before[key] for key in after if after[key] - before[key] > 0})


def _describe(counts: Counter[tuple[str, str]]) -> str:
    if not counts:
        return 'none'
    return ', '.join(f'{count} {verb} {resource}' for (verb, resource), count in sorted(counts.items()))


def idle(quick: bool, progress: harness.Progress) -> tuple[list[list[str]], list[Check], list[str]]:
    window = 2.0 if quick else 60.0
    rows: list[list[str]] = []
    checks: list[Check] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix='bench-idle-') as tmp:
        root = Path(tmp)
        commits = harness.two_commits(root / 'repo')
        sandboxes = {name: harness.quiet_sandbox(kubeconfig_path=root / f'{name}.kubeconfig', bookmark_interval=5.0)
                     for name in ('monitor', 'pending', 'poller')}
        processes: list[Lines] = []
        try:
            objects = _idle_cluster(sandboxes['monitor'], commits, source_landed=True)
            _idle_cluster(sandboxes['pending'], commits, source_landed=False)
            _idle_cluster(sandboxes['poller'], commits, source_landed=True)
            monitor = harness.wait_json(sandboxes['monitor'].kubeconfig_path, commits, ['GitRepository/bench/fleet'])
            pending = harness.wait_json(sandboxes['pending'].kubeconfig_path, commits, ['GitRepository/bench/fleet'])
            poller = Lines([sys.executable, '-m', 'benchmarks.poller', '--kubeconfig',
                            str(sandboxes['poller'].kubeconfig_path), '--timeout', str(window + 30), *objects],
                           env=harness.product_env(), cwd=harness.REPO)
            processes += [monitor, pending, poller]
            for process in (monitor, pending):
                if not process.wait_for(lambda lines: harness.started_events(lines) >= len(objects) + 1, 60):
                    raise RuntimeError(f'flux-monitor did not start: {process.describe()}')
            time.sleep(0.5)  # let the watches open
            before = {name: sandbox.server.log.snapshot() for name, sandbox in sandboxes.items()}
            progress(f'api load: counting requests on idle clusters for {window:.0f} s')
            time.sleep(window)
            after = {name: sandbox.server.log.snapshot() for name, sandbox in sandboxes.items()}
            for process in (monitor, pending, poller):
                process.interrupt()
            totals = {name: sandbox.server.log.snapshot() for name, sandbox in sandboxes.items()}
        finally:
            for process in processes:
                process.kill()
            for sandbox in sandboxes.values():
                sandbox.stop()
    watched = sum(count for (verb, _), count in totals['monitor'].items() if verb == 'watch')
    per_minute = 60.0 / window
    for label, name in (('flux-monitor, commit fetched, resources in progress', 'monitor'),
                        ('flux-monitor, commit not fetched yet, Flux not handling the request', 'pending'),
                        ('flux CLI model: GET every 2 s', 'poller')):
        counts = _diff(after[name], before[name])
        total = sum(counts.values())
        kinds = watched if name != 'poller' else len(objects)
        rows.append([label, f'{window:.0f} s', str(total), f'{total * per_minute:.1f}',
                     f'{total * per_minute / kinds:.2f} ({kinds} {"watched kinds" if name != "poller" else "objects"})',
                     _describe(counts), str(sum(totals[name].values()))])
    idle_counts = _diff(after['monitor'], before['monitor'])
    rate = sum(idle_counts.values()) * per_minute / max(1, watched)
    checks.append(Check('idle API load ≤ 1 request per watched kind per minute',
                        f'{rate:.2f} per kind per minute', rate <= 1.0))
    pending_counts = _diff(after['pending'], before['pending'])
    pending_rate = sum(pending_counts.values()) * per_minute / max(1, watched)
    checks.append(Check('idle API load ≤ 1 request per watched kind per minute, commit not fetched yet',
                        f'{pending_rate:.2f} per kind per minute', pending_rate <= 1.0))
    notes.append(f'Idle: {len(objects)} resources that stay in progress; flux-monitor watched {watched} kinds. '
                 'Its watches ask the server for 300 s streams, so within a window shorter than that no watch '
                 'is re-established unless the server ends it; the sandbox sends a BOOKMARK every 5 s, which '
                 'is not a request. "total" counts every request of the process, start-up included.')
    return rows, checks, notes


def _push_fleet(root: Path) -> tuple[Path, Path]:
    from flux_monitor_hook.commands import demo

    seed = root / 'seed'
    seed.mkdir(parents=True)
    harness.git(seed, 'init', '-q', '--initial-branch=main')
    harness.write_files(seed, demo.REPOSITORY)
    harness.git(seed, 'add', '--all')
    harness.git(seed, 'commit', '-q', '-m', 'fleet')
    remote = root / 'fleet.git'
    harness.git(root, 'clone', '-q', '--bare', str(seed), str(remote))
    clone = root / 'fleet'
    harness.git(root, 'clone', '-q', str(remote), str(clone))
    return remote, clone


def _change(clone: Path, n: int) -> str:
    from flux_monitor_hook.commands import demo

    harness.write_files(clone, {
        'apps/podinfo.yaml': demo.REPOSITORY['apps/podinfo.yaml'].replace('podinfo:6.5.0', f'podinfo:6.6.{n}'),
        'apps/frontend.yaml': demo.REPOSITORY['apps/frontend.yaml'] + f'    tier: web{n}\n'})
    harness.git(clone, 'commit', '-q', '-am', f'bench change {n}')
    harness.git(clone, 'push', '-q', 'origin', 'main')
    return harness.git(clone, 'rev-parse', 'HEAD')


def _affected(clone: Path, kubeconfig: Path) -> list[str]:
    """What `flux-monitor plan` says the pushed commit affects: the objects the poller waits for."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, '-m', 'flux_monitor_hook', 'plan', '--format', 'json', '--kubeconfig',
                           str(kubeconfig)], cwd=clone, env=harness.product_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f'flux-monitor plan failed: {done.stderr}')
    plan = json.loads(done.stdout)
    return [f'{item["kind"]}/{item["namespace"]}/{item["name"]}'
            for item in plan['sources'] + [r for r in plan['resources'] if r['affected']]]


def whole_push(quick: bool, progress: harness.Progress) -> tuple[list[list[str]], list[str]]:
    """The same change pushed to two identical sandboxes at once: flux-monitor follows one, the poller the other."""
    pushes = 1 if quick else 2
    speed = 20.0 if quick else PUSH_SPEED
    counts: dict[str, list[int]] = {'monitor': [], 'poller': []}
    seconds: dict[str, list[float]] = {'monitor': [], 'poller': []}
    breakdown: Counter[tuple[str, str]] = Counter()
    results: set[str] = set()
    with tempfile.TemporaryDirectory(prefix='bench-push-') as tmp:
        root = Path(tmp)
        fleets = {name: _push_fleet(root / name) for name in ('monitor', 'poller')}
        sandboxes = {name: harness.Sandbox(repo=remote, cluster_path='clusters/demo', speed=speed,
                                           kubeconfig_path=root / f'{name}.kubeconfig')
                     for name, (remote, _) in fleets.items()}
        processes: list[Lines] = []
        try:
            for sandbox in sandboxes.values():
                sandbox.start()
            progress(f'api load: bootstrapping two sandboxes at speed {speed:g}')
            for sandbox in sandboxes.values():
                if not sandbox.wait_idle(180):
                    raise RuntimeError('the sandbox did not settle')
            for n in range(pushes):
                shas = {name: _change(clone, n) for name, (_, clone) in fleets.items()}
                poller_clone = fleets['poller'][1]
                followed = _affected(poller_clone, sandboxes['poller'].kubeconfig_path)
                before = {name: sandbox.server.log.snapshot() for name, sandbox in sandboxes.items()}
                started = time.monotonic()
                monitor = Lines([sys.executable, '-m', 'flux_monitor_hook', 'wait', '--format', 'json',
                                 '--kubeconfig', str(sandboxes['monitor'].kubeconfig_path), '--timeout', '5m'],
                                env=harness.product_env(), cwd=fleets['monitor'][1])
                poller = Lines([sys.executable, '-m', 'benchmarks.poller', '--kubeconfig',
                                str(sandboxes['poller'].kubeconfig_path), '--timeout', '300', '--revision',
                                shas['poller'], '--trigger', 'GitRepository/flux-system/flux-system', *followed],
                               env=harness.product_env(), cwd=harness.REPO)
                processes += [monitor, poller]
                for name, process in (('monitor', monitor), ('poller', poller)):
                    process.finish(330)
                    seconds[name].append(time.monotonic() - started)
                    counted = _diff(sandboxes[name].server.log.snapshot(), before[name])
                    counts[name].append(sum(counted.values()))
                    if name == 'monitor':
                        breakdown += counted
                found = harness.summary(monitor.lines)
                if found is None:
                    raise RuntimeError(f'flux-monitor gave no summary: {monitor.describe()}')
                results.add(found[1]['result'])
                progress(f'api load: push {n + 1}/{pushes}: flux-monitor {counts["monitor"][-1]} requests in '
                         f'{seconds["monitor"][-1]:.1f} s, poller {counts["poller"][-1]} in '
                         f'{seconds["poller"][-1]:.1f} s')
                for sandbox in sandboxes.values():
                    sandbox.wait_idle(180)
        finally:
            for process in processes:
                process.kill()
            for sandbox in sandboxes.values():
                sandbox.stop()
    rows = []
    for label, name in (('flux-monitor wait (list + watch)', 'monitor'),
                        ('flux CLI model: trigger, GET every 2 s', 'poller')):
        rows.append([label, str(len(counts[name])), f'{harness.median(counts[name]):.0f}',
                     f'{harness.percentile(counts[name], 0.95)}', f'{harness.median(seconds[name]):.1f} s',
                     f'{harness.median([c / s * 60 for c, s in zip(counts[name], seconds[name], strict=True)]):.0f}'])
    notes = [f'Whole push: the demo fleet (`flux-monitor demo`\'s repository: a source, infrastructure, then apps '
             'through dependsOn, and a HelmRelease of a chart in the repository) in two identical sandboxes at '
             f'speed {speed:g} (1 = Flux\'s own intervals and timings in real time). The same change (a new image and '
             'chart values) is pushed with git to both; flux-monitor waits on one (defaults: `--scope affected`, '
             'triggering), the poller on the other, from the push until each ends (flux-monitor results: '
             f'{", ".join(sorted(results))}). The poller annotates the source as `flux reconcile source git` does, '
             'then GETs what `flux-monitor plan` says the change affects every 2 s until each reports the pushed '
             'commit: its count grows with the duration, flux-monitor\'s does not. flux-monitor\'s requests over '
             f'all pushes: {_describe(breakdown)}.']
    return rows, notes


def api_load(quick: bool, progress: harness.Progress) -> Table:
    table = Table(
        'api-load', '3. API load',
        'Requests counted by the sandbox API server, by verb and resource. Idle: flux-monitor and the flux CLI '
        'model each wait on a cluster of their own where nothing changes, over the same window, counted after '
        'start-up (flux-monitor has printed its first picture).',
        ['waiting', 'window', 'requests', 'per minute', 'per minute per watched kind (or object)', 'which',
         'total, start-up included'])
    rows, checks, notes = idle(quick, progress)
    table.rows += rows
    table.checks += checks
    table.notes += notes
    push_rows, push_notes = whole_push(quick, progress)
    table.notes.append('| whole push | pushes | requests (median) | requests (p95) | duration (median) | '
                       'requests per minute (median) |\n|---|---|---|---|---|---|\n' +
                       '\n'.join('| ' + ' | '.join(row) + ' |' for row in push_rows))
    table.notes += push_notes
    return table

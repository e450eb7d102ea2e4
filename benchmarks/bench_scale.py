"""Scale: flux-monitor on a large cluster, following the few hundred objects a push feeds.

The objects are written straight into a sandbox's store (its controllers stopped, so only the benchmark
changes anything). flux-monitor runs as a subprocess, so its CPU time and peak RSS are its own (os.wait4).
"""
from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Check
from benchmarks.harness import Commits
from benchmarks.harness import Table


@dataclass(frozen=True)
class Size:
    namespaces: int
    kustomizations: int  # in total
    helmreleases: int
    followed_kustomizations: int  # fed by the pushed source
    followed_helmreleases: int
    flip_seconds: float
    runs: int

    @property
    def followed(self) -> int:
        return self.followed_kustomizations + self.followed_helmreleases


FULL = Size(50, 5000, 2000, 400, 100, 30.0, 3)
QUICK = Size(10, 500, 200, 40, 10, 3.0, 1)
ENTRIES = 5  # inventory entries per Kustomization


def _populate(sandbox: harness.Sandbox, commits: Commits, size: Size) -> list[harness.Obj]:
    """Every object, fed and not; returns the followed resources (to flip)."""
    rng = random.Random(4)
    new, old = f'main@sha1:{commits.new}', f'main@sha1:{commits.old}'
    pushed = ('GitRepository', 'flux-system', 'fleet')
    harness.create(sandbox, harness.git_repository('flux-system', 'fleet', f'file://{commits.root}'),
                   harness.source_ready(new))
    followed: list[harness.Obj] = []
    for n in range(size.namespaces):
        namespace = f'team-{n:02d}'
        harness.namespace(sandbox, namespace)
        other = f'main@sha1:{rng.getrandbits(160):040x}'
        harness.create(sandbox, harness.git_repository(namespace, 'apps', f'https://git.example.invalid/{namespace}'),
                       harness.source_ready(other))
        for j in range(size.kustomizations // size.namespaces):
            name = f'app-{j:03d}'
            if j < size.followed_kustomizations // size.namespaces:
                obj = harness.kustomization(namespace, name, ('flux-system', 'fleet'))
                harness.create(sandbox, obj, harness.kustomization_pending(old, new, namespace, name, ENTRIES))
                followed.append(obj)
            else:
                harness.create(sandbox, harness.kustomization(namespace, name, (namespace, 'apps')),
                               harness.kustomization_ready(other, namespace, name, ENTRIES))
        for j in range(size.helmreleases // size.namespaces):
            name = f'release-{j:03d}'
            if j < size.followed_helmreleases // size.namespaces:
                version = f'1.0.0+{commits.new[:12]}'
                harness.create(sandbox, harness.helm_chart(namespace, name, pushed),
                               harness.helm_chart_ready(new, version))
                obj = harness.helm_release(namespace, name, pushed)
                harness.create(sandbox, obj, harness.helm_release_pending(f'1.0.0+{commits.old[:12]}'))
                followed.append(obj)
            else:
                repository = ('HelmRepository', namespace, 'charts')
                harness.create(sandbox, harness.helm_chart(namespace, name, repository),
                               harness.helm_chart_ready('sha256:' + '2' * 64, '6.0.0'))
                harness.create(sandbox, harness.helm_release(namespace, name, repository),
                               harness.helm_release_ready('6.0.0'))
    return followed


def _flip(sandbox: harness.Sandbox, obj: harness.Obj, commits: Commits, *, landed: bool) -> None:
    metadata = obj['metadata']
    if obj['kind'] == 'Kustomization':
        new, old = f'main@sha1:{commits.new}', f'main@sha1:{commits.old}'
        status = harness.kustomization_ready(new, metadata['namespace'], metadata['name'], ENTRIES) if landed else \
            harness.kustomization_pending(old, new, metadata['namespace'], metadata['name'], ENTRIES)
    else:
        status = harness.helm_release_ready(f'1.0.0+{commits.new[:12]}') if landed else \
            harness.helm_release_pending(f'1.0.0+{commits.old[:12]}')
    harness.set_status(sandbox, obj, status)


@dataclass
class RunResult:
    cpu: float
    peak_rss_mb: float
    verdict_after_last_flip: float
    first_picture: float
    result: str
    landed: int


def _run(sandbox: harness.Sandbox, commits: Commits, followed: list[harness.Obj], size: Size,
         rng: random.Random) -> RunResult:
    monitor = harness.wait_json(sandbox.kubeconfig_path, commits, ['GitRepository/flux-system/fleet'])
    try:
        picture = monitor.wait_for(lambda lines: harness.started_events(lines) >= size.followed + 1, 120)
        if not picture:
            raise RuntimeError(f'flux-monitor did not list everything: {monitor.describe()}')
        initial = [record for _, record in harness.records(monitor.lines)
                   if record.get('type') == 'event' and record.get('previous') is None]
        first_picture = max(harness.parse_time(record['time']) for record in initial) - monitor.started
        order = list(followed)
        rng.shuffle(order)
        gap = size.flip_seconds / len(order)
        start = time.monotonic()
        for index, obj in enumerate(order):
            time.sleep(max(0.0, start + index * gap - time.monotonic()))
            _flip(sandbox, obj, commits, landed=True)
        last_flip = harness.wall()
        found = monitor.wait_for(harness.summary, 60)
        monitor.finish(60)
        if found is None:
            raise RuntimeError(f'flux-monitor gave no verdict: {monitor.describe()}')
    finally:
        monitor.kill()
    usage = monitor.rusage
    landed = sum(1 for item in found[1]['resources'] if item['state'] == 'landed')
    return RunResult(cpu=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024,
                     verdict_after_last_flip=found[0] - last_flip, first_picture=first_picture,
                     result=str(found[1]['result']), landed=landed)


def scale(quick: bool, progress: harness.Progress) -> Table:
    size = QUICK if quick else FULL
    table = Table(
        'scale', '4. Scale',
        f'A cluster with {size.kustomizations:,} Kustomizations and {size.helmreleases:,} HelmReleases (and their '
        f'{size.helmreleases:,} HelmCharts) in {size.namespaces} namespaces, {size.namespaces + 1} GitRepositories; '
        f'{size.followed} of the resources ({size.followed_kustomizations} Kustomizations, '
        f'{size.followed_helmreleases} HelmReleases) are fed by the pushed source and flip to Ready in random '
        f'order over {size.flip_seconds:g} s once flux-monitor has its first picture. `flux-monitor wait --scope all '
        '--source GitRepository/flux-system/fleet --format json` runs as a subprocess: CPU seconds (user + system) '
        'and peak RSS are its own, from os.wait4. First picture = from starting the process (interpreter start-up '
        'included) to the last event of its first complete list of the followed objects. '
        f'{size.runs} run(s) against the same cluster (the flipped objects are reset in between).',
        ['metric', 'runs', 'median', 'p95', 'target'])
    rng = random.Random(5)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix='bench-scale-') as tmp:
        root = Path(tmp)
        commits = harness.two_commits(root / 'repo')
        sandbox = harness.quiet_sandbox(kubeconfig_path=root / 'kubeconfig', history_limit=50000)
        try:
            started = time.monotonic()
            followed = _populate(sandbox, commits, size)
            progress(f'scale: {size.kustomizations + size.helmreleases * 2:,} objects written in '
                     f'{time.monotonic() - started:.1f} s')
            for run in range(size.runs):
                if run:
                    for obj in followed:
                        _flip(sandbox, obj, commits, landed=False)
                results.append(_run(sandbox, commits, followed, size, rng))
                progress(f'scale: run {run + 1}/{size.runs}: {results[-1]}')
        finally:
            sandbox.stop()

    def row(metric: str, values: list[float], show: Callable[[float], str], target: str) -> list[str]:
        return [metric, str(len(values)), show(harness.median(values)), show(harness.percentile(values, 0.95)),
                target]

    def megabytes(value: float) -> str:
        return f'{value:.0f} MB'

    cpu = [r.cpu for r in results]
    rss = [r.peak_rss_mb for r in results]
    verdict = [r.verdict_after_last_flip for r in results]
    picture = [r.first_picture for r in results]
    table.rows += [row('CPU time (user + system)', cpu, harness.secs, '< 10 s'),
                   row('peak RSS', rss, megabytes, '< 250 MB'),
                   row('last flip → verdict', verdict, harness.ms, '< 1 s'),
                   row('start → first complete picture', picture, harness.secs, '')]
    outcomes = ', '.join(sorted({f'{r.result} with {r.landed} landed' for r in results}))
    table.notes.append(f'Outcome of every run: {outcomes}.')
    table.checks += [
        Check('at scale: peak RSS < 250 MB (p95)', f'{harness.percentile(rss, 0.95):.0f} MB',
              harness.percentile(rss, 0.95) < 250),
        Check('at scale: verdict within 1 s of the last flip (p95)', harness.ms(harness.percentile(verdict, 0.95)),
              harness.percentile(verdict, 0.95) < 1.0),
        Check('at scale: CPU < 10 s (p95)', f'{harness.percentile(cpu, 0.95):.2f} s',
              harness.percentile(cpu, 0.95) < 10),
    ]
    return table

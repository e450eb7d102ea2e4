"""Detection latency and time to a failure verdict: flux-monitor, `kubectl wait` and the flux CLI's 2-s poll.

The sandbox runs without controllers; the benchmark writes each status change into the store itself
(`store.set_status`, timestamped right after the write) and each observer reports when it noticed:

- flux-monitor: a real `flux-monitor wait --format json` subprocess (CLI, kubernetes client, watch threads,
  tracker, renderer); the latency is the `time` of its JSON event for the change. A subprocess, not the
  in-process Session, so that it does not share a GIL with the sandbox's API server and the benchmark.
- kubectl: one `kubectl wait --for=condition=Ready` over the same objects in flip order (it waits for them
  one after the other); the time its "condition met" line arrives.
- the flux CLI model: benchmarks/poller.py, a GET of each object every 2 s (flux-status-reference.md §4).
"""
from __future__ import annotations

import contextlib
import functools
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Check
from benchmarks.harness import Commits
from benchmarks.harness import Lines
from benchmarks.harness import Table


def _poller(kubeconfig: Path, objects: list[str], *extra: str) -> Lines:
    return Lines([sys.executable, '-m', 'benchmarks.poller', '--kubeconfig', str(kubeconfig), *extra, *objects],
                 env=harness.product_env(), cwd=harness.REPO)


def _poller_results(poller: Lines) -> dict[str, tuple[str, float]]:
    return {record['object']: (record['result'], float(record['time']))
            for _, record in harness.records(poller.lines) if 'object' in record}


def _kubectl(kubeconfig: Path, cache: Path, names: list[str]) -> Lines:
    return Lines(['kubectl', f'--cache-dir={cache}', f'--kubeconfig={kubeconfig}', 'wait', '--for=condition=Ready',
                  '--timeout=600s', '-n', 'bench', *(f'kustomization/{name}' for name in names)],
                 env=harness.git_env())


def _kubectl_seen(kubectl: Lines, name: str) -> float | None:
    for stamp, line in kubectl.lines:
        if line.endswith(f'/{name} condition met'):
            return stamp
    return None


AGENTS = {'flux-monitor': 'flux-monitor', 'kubectl': 'kubectl', 'poller': 'flux-cli-model'}


@contextlib.contextmanager
def _deliveries() -> Iterator[dict[tuple[str, str], float] | None]:
    """When the sandbox's API server wrote each Kustomization's MODIFIED watch event to each observer's socket
    (by User-Agent): the benchmark instruments the in-process server to split a latency into the sandbox's
    delivery and the observer's own part. None when the server's internals changed (no split then)."""
    from flux_monitor_hook.sandbox import apiserver

    handler = getattr(apiserver, '_Handler', None)
    original = getattr(handler, '_chunk', None)
    if handler is None or original is None:
        yield None
        return
    sent: dict[tuple[str, str], float] = {}
    lock = threading.Lock()

    def chunk(self: object, data: bytes) -> None:
        original(self, data)
        stamp = harness.wall()
        if b'"MODIFIED"' not in data or b'"Kustomization"' not in data:
            return
        agent = str(getattr(self, 'headers', {}).get('User-Agent', ''))
        try:
            name = json.loads(data)['object']['metadata']['name']
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            for observer, prefix in AGENTS.items():
                if agent.startswith(prefix):
                    sent.setdefault((observer, name), stamp)

    handler._chunk = chunk
    try:
        yield sent
    finally:
        handler._chunk = original


def _landed(name: str, lines: list[tuple[float, str]]) -> bool:
    return bool(harness.events_for(lines, name, 'landed'))


def _condition_met(kubectl: Lines, name: str, lines: list[tuple[float, str]]) -> bool:
    return _kubectl_seen(kubectl, name) is not None


def _setup(sandbox: harness.Sandbox, commits: Commits, sources: list[str], names_by_source: dict[str, list[str]]
           ) -> None:
    harness.namespace(sandbox, 'bench')
    new, old = f'main@sha1:{commits.new}', f'main@sha1:{commits.old}'
    for source in sources:
        harness.create(sandbox, harness.git_repository('bench', source, f'file://{commits.root}'),
                       harness.source_ready(new))
        for name in names_by_source[source]:
            harness.create(sandbox, harness.kustomization('bench', name, ('bench', source)),
                           harness.kustomization_pending(old, new))


def detection(quick: bool, progress: harness.Progress) -> Table:
    flips = 6 if quick else 80
    use_kubectl = harness.kubectl_available()
    table = Table(
        'detection', '1. Detection latency',
        f'{flips} Kustomizations, each flipped from in-progress to Ready=True (the applied revision moves to the '
        'pushed commit) one at a time, 0.15-0.45 s apart (random). Each observer follows the same objects in the '
        'same run, against one TLS sandbox with its controllers stopped. Latency = the observer\'s report minus '
        'the time right after the store write. flux-monitor runs as a `flux-monitor wait --format json` '
        'subprocess and the latency is its JSON event\'s `time` (taken as the transition is rendered): the real '
        'watch → tracker → renderer path, in a process of its own so it does not share a GIL with the sandbox\'s '
        'API server. kubectl is one `kubectl wait --for=condition=Ready` over the objects in flip order (it waits '
        'for them one after the other); its latency is when its "condition met" line arrives. The flux CLI model '
        'is benchmarks/poller.py. One extra warm-up flip precedes the measured ones. "Sandbox delivery" is when '
        'the sandbox\'s API server (instrumented by the benchmark) wrote the watch event to that observer\'s '
        'connection, and "own part" the rest: the observer\'s read, decoding and decision. The sandbox is Python, '
        'so its delivery to the watches open at the time is serialised (flux-monitor holds one per kind, seven). '
        'Flips to a failure, which `kubectl wait --for=condition=Ready` never reports, are measured in 2.',
        ['observer', 'flips', 'p50', 'p95', 'max', 'p50 / p95 ratio to kubectl wait', 'sandbox delivery p50',
         'own part p50 / p95', 'missed'])
    rng = random.Random(6)
    reports: dict[str, dict[str, float]] = {'flux-monitor': {}, 'kubectl': {}, 'poller': {}}
    with tempfile.TemporaryDirectory(prefix='bench-detect-') as tmp, _deliveries() as sent:
        root = Path(tmp)
        commits = harness.two_commits(root / 'repo')
        names = ['warmup', *(f'app-{i:03d}' for i in range(flips))]
        sandbox = harness.quiet_sandbox(tls=use_kubectl, kubeconfig_path=root / 'kubeconfig')
        processes: list[Lines] = []
        try:
            _setup(sandbox, commits, ['fleet'], {'fleet': names})
            kubeconfig = sandbox.kubeconfig_path
            monitor = harness.wait_json(kubeconfig, commits, ['GitRepository/bench/fleet'])
            processes.append(monitor)
            kubectl = _kubectl(kubeconfig, root / 'kubectl-cache', names) if use_kubectl else None
            if kubectl is not None:
                processes.append(kubectl)
            poller = _poller(kubeconfig, [f'Kustomization/bench/{name}' for name in names])
            processes.append(poller)
            if not monitor.wait_for(lambda lines: harness.started_events(lines) >= len(names) + 1, 60):
                raise RuntimeError(f'flux-monitor did not start: {monitor.describe()}')
            time.sleep(1.0 if kubectl is not None else 0.2)  # kubectl's start-up: its first watch
            written: dict[str, float] = {}
            new = f'main@sha1:{commits.new}'
            for name in names:
                harness.set_status(sandbox, harness.kustomization('bench', name, ('bench', 'fleet')),
                                   harness.kustomization_ready(new))
                written[name] = harness.wall()
                monitor.wait_for(functools.partial(_landed, name), 5)
                if kubectl is not None:
                    kubectl.wait_for(functools.partial(_condition_met, kubectl, name), 5 if name != 'warmup' else 20)
                time.sleep(rng.uniform(0.15, 0.45))
                if name == 'warmup':
                    progress(f'detection: warm-up flip seen, {flips} flips to go')
            poller.wait_for(lambda lines: len(_poller_results(poller)) >= len(names), 10)
            poller.interrupt()
            monitor.finish(30)
            if kubectl is not None:
                kubectl.finish(30)
        finally:
            for process in processes:
                process.kill()
            sandbox.stop()
        delivered = dict(sent) if sent is not None else {}
    measured = names[1:]
    polled = _poller_results(poller)
    for name in measured:
        found = harness.events_for(monitor.lines, name, 'landed')
        if found:
            reports['flux-monitor'][name] = harness.parse_time(found[0]['time'])
        stamp = _kubectl_seen(kubectl, name) if kubectl is not None else None
        if stamp is not None:
            reports['kubectl'][name] = stamp
        if f'Kustomization/bench/{name}' in polled:
            reports['poller'][name] = polled[f'Kustomization/bench/{name}'][1]
    latency = {observer: [at - written[name] for name, at in seen.items()] for observer, seen in reports.items()}
    kubectl_latency = latency['kubectl']

    def row(label: str, observer: str) -> list[str]:
        values = latency[observer]
        if not values:
            return [label, '0', '–', '–', '–', '–', '–', '–', str(len(measured))]
        p50, p95 = harness.percentile(values, 0.5), harness.percentile(values, 0.95)
        ratios = 'n/a'
        if kubectl_latency:
            ratios = (f'{harness.ratio(p50, harness.percentile(kubectl_latency, 0.5))} / '
                      f'{harness.ratio(p95, harness.percentile(kubectl_latency, 0.95))}')
        delivery = [delivered[(observer, name)] - written[name] for name in reports[observer]
                    if (observer, name) in delivered]
        own = [reports[observer][name] - delivered[(observer, name)] for name in reports[observer]
               if (observer, name) in delivered]
        return [label, str(len(values)), harness.ms(p50), harness.ms(p95), harness.ms(max(values)), ratios,
                harness.ms(harness.percentile(delivery, 0.5)) if delivery else '–',
                f'{harness.ms(harness.percentile(own, 0.5))} / {harness.ms(harness.percentile(own, 0.95))}'
                if own else '–', str(len(measured) - len(values))]

    table.rows.append(row('flux-monitor wait (watch)', 'flux-monitor'))
    if kubectl is not None:
        table.rows.append(row('kubectl wait --for=condition=Ready', 'kubectl'))
    else:
        table.notes.append('kubectl is not installed: its row and the ratios were skipped.')
    table.rows.append(row('flux CLI model: GET every 2 s', 'poller'))
    if sent is None:
        table.notes.append('The sandbox\'s API server could not be instrumented: no delivery split.')
    monitor_latency = latency['flux-monitor']
    if monitor_latency:
        p95 = harness.percentile(monitor_latency, 0.95)
        table.checks.append(Check('detection p95 < 100 ms', harness.ms(p95), p95 < 0.1))
        if kubectl_latency:
            kubectl_p95 = harness.percentile(kubectl_latency, 0.95)
            table.checks.append(Check('detection p95 ≤ kubectl wait p95 (ratio ≤ 1.0)',
                                      harness.ratio(p95, kubectl_p95), p95 <= kubectl_p95))
        else:
            table.checks.append(Check('detection p95 ≤ kubectl wait p95 (ratio ≤ 1.0)', 'kubectl not installed',
                                      None))
    return table


def failure(quick: bool, progress: harness.Progress) -> Table:
    runs = 2 if quick else 7
    table = Table(
        'failure', '2. Time to a failure verdict',
        f'{runs} runs. In each, one `flux-monitor wait` follows a source and one Kustomization, then the '
        'Kustomization reports a failure without stalling (Ready=False, ReconciliationFailed for the pushed '
        'revision, Reconciling=True/ProgressingWithRetry: kustomize-controller retries). Measured from right after '
        'that write to flux-monitor\'s failed event and to its verdict (the summary line arriving; it includes '
        'the diagnosis and the Warning events request). The two flux CLI models poll the same objects every 2 s '
        'throughout: Flux ≥ 2.2 waits with kstatus, for which Ready=False is InProgress, so it polls until its '
        '`--timeout` (5m0s by default) and then reports a timeout; Flux 2.0-2.1 failed once Ready was not Unknown.',
        ['observer', 'runs', 'p50', 'p95', 'max', 'outcome'])
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix='bench-failure-') as tmp:
        root = Path(tmp)
        commits = harness.two_commits(root / 'repo')
        sources = [f'src-{i}' for i in range(runs)]
        names = {source: [f'fail-{i}'] for i, source in enumerate(sources)}
        sandbox = harness.quiet_sandbox(kubeconfig_path=root / 'kubeconfig')
        processes: list[Lines] = []
        try:
            _setup(sandbox, commits, sources, names)
            kubeconfig = sandbox.kubeconfig_path
            objects = [f'Kustomization/bench/fail-{i}' for i in range(runs)]
            kstatus = _poller(kubeconfig, objects, '--model', 'kstatus', '--timeout', '600')
            legacy = _poller(kubeconfig, objects, '--model', 'legacy', '--timeout', '600')
            processes += [kstatus, legacy]
            written: dict[str, float] = {}
            event_latency, verdict_latency, codes = [], [], []
            for i, source in enumerate(sources):
                monitor = harness.wait_json(kubeconfig, commits, [f'GitRepository/bench/{source}'])
                processes.append(monitor)
                if not monitor.wait_for(lambda lines: harness.started_events(lines) >= 2, 60):
                    raise RuntimeError(f'flux-monitor did not start: {monitor.describe()}')
                time.sleep(rng.uniform(0.2, 0.5))
                name = f'fail-{i}'
                harness.set_status(sandbox, harness.kustomization('bench', name, ('bench', source)),
                                   harness.kustomization_failed(f'main@sha1:{commits.old}', f'main@sha1:{commits.new}'))
                written[name] = harness.wall()
                found = monitor.wait_for(harness.summary, 30)
                codes.append(monitor.finish(30))
                failed = harness.events_for(monitor.lines, name, 'failed')
                if failed and found:
                    event_latency.append(harness.parse_time(failed[0]['time']) - written[name])
                    verdict_latency.append(found[0] - written[name])
            progress(f'failure: {runs} runs done; letting the pollers poll once more')
            time.sleep(2.5)
            observed = harness.wall() - max(written.values())
            kstatus.interrupt()
            legacy.interrupt()
        finally:
            for process in processes:
                process.kill()
            sandbox.stop()

    def row(observer: str, latency: list[float], outcome: str) -> list[str]:
        if not latency:
            return [observer, '0', '–', '–', '–', outcome]
        return [observer, str(len(latency)), harness.ms(harness.percentile(latency, 0.5)),
                harness.ms(harness.percentile(latency, 0.95)), harness.ms(max(latency)), outcome]

    exit_codes = ', '.join(sorted({str(code) for code in codes}))
    table.rows.append(row('flux-monitor: failed event', event_latency, f'exit code {exit_codes}'))
    table.rows.append(row('flux-monitor: verdict (summary)', verdict_latency, 'result failed, with a diagnosis'))
    legacy_results = _poller_results(legacy)
    legacy_latency = [legacy_results[f'Kustomization/bench/{name}'][1] - written[name] for name in written
                      if legacy_results.get(f'Kustomization/bench/{name}', ('', 0.0))[0] == 'failed']
    table.rows.append(row('flux CLI 2.0-2.1 model (Ready≠Unknown, 2 s poll)', legacy_latency, 'failed'))
    kstatus_results = _poller_results(kstatus)
    table.rows.append(['flux CLI ≥ 2.2 model (kstatus, 2 s poll)', str(len(written)), '–', '–', '–',
                       f'no verdict on {len(written) - len(kstatus_results)} of {len(written)} after polling '
                       f'≥ {observed:.1f} s; ends at its --timeout (default 5m0s) as a timeout'])
    if verdict_latency:
        p95 = harness.percentile(verdict_latency, 0.95)
        table.checks.append(Check('failure verdict < 1 s after Flux reports it (p95)', harness.ms(p95), p95 < 1.0))
    return table

"""Measure how fast `flux_monitor_hook.explain.explain` diagnoses messages.

Usage: python benchmarks/bench_explain.py [--quick] [--rounds N] [--messages N]

Explains the annotated real-world samples (../shared/flux-failure-samples.yaml beside the
repository, or a small built-in set when that file is absent), cycled to --messages per round, for
--rounds rounds, and prints a markdown table: throughput (median and the 95th-percentile slowest
round), per-message latency, and the time for one 1 MB message. It reports what it measured and
asserts nothing.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(__file__).resolve().parents[2] / 'shared' / 'flux-failure-samples.yaml'
sys.path.insert(0, str(REPO))

from flux_monitor_hook.explain import explain  # noqa: E402 - needs the path above

Message = tuple[str, 'str | None', 'str | None']

# Used only when the shared samples are absent, so the script still runs in a bare checkout.
FALLBACK: list[Message] = [
    ('StatefulSet/apps/db dry-run failed (Invalid): StatefulSet.apps "db" is invalid: spec: '
     'Forbidden: updates to statefulset spec for fields other than \'replicas\' are forbidden',
     'Kustomization', 'ReconciliationFailed'),
    ("dependency 'flux-system/infra' is not ready", 'Kustomization', 'DependencyNotReady'),
    ("health check failed after 5m0s: timeout waiting for: [Deployment/apps/web status: "
     "'InProgress']", 'Kustomization', 'HealthCheckFailed'),
    ('Helm upgrade failed for release apps/web with chart web@1.2.3: context deadline exceeded',
     'HelmRelease', 'UpgradeFailed'),
    ("failed to checkout and determine revision: unable to clone 'https://github.com/org/fleet': "
     'authentication required', 'GitRepository', 'GitOperationFailed'),
]


def load_messages() -> tuple[list[Message], str]:
    if not SAMPLES.is_file():
        return FALLBACK, f'{len(FALLBACK)} built-in messages ({SAMPLES} absent)'
    import yaml

    entries = yaml.safe_load(SAMPLES.read_text(encoding='utf-8'))
    messages = [(e['message'], e.get('kind'), e.get('reason')) for e in entries]
    return messages, f'{len(messages)} samples from {SAMPLES.name}'


def run_round(batch: list[Message]) -> float:
    start = time.perf_counter()
    for message, kind, reason in batch:
        explain(message, kind, reason)
    return time.perf_counter() - start


def latencies_us(batch: list[Message]) -> list[float]:
    result = []
    clock = time.perf_counter_ns
    for message, kind, reason in batch:
        start = clock()
        explain(message, kind, reason)
        result.append((clock() - start) / 1000)
    return result


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; fine for the few values a benchmark collects."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def megabyte_ms() -> float:
    message = 'Deployment/apps/web dry-run failed (Invalid): ' + 'x/' * 500_000
    return min(run_round([(message, None, None)]) for _ in range(3)) * 1000


def measure(rounds: int, per_round: int) -> tuple[list[tuple[str, str]], float]:
    """The table's rows and the median round's throughput (messages per second)."""
    messages, source = load_messages()
    batch = [messages[i % len(messages)] for i in range(per_round)]
    run_round(batch[: min(len(batch), 500)])  # warm up: compiled regexes, caches
    gc.collect()
    durations = [run_round(batch) for _ in range(rounds)]
    rates = [per_round / seconds for seconds in durations]
    latency = latencies_us(batch)
    slow_round = percentile(durations, 0.95)

    rows = [
        ('messages', source),
        ('messages per round x rounds', f'{per_round:,} x {rounds}'),
        ('throughput, median round', f'{statistics.median(rates):,.0f} msgs/s'),
        ('throughput, p95 round (slowest 5%)', f'{per_round / slow_round:,.0f} msgs/s'),
        ('latency p50 / p95 / max', f'{percentile(latency, 0.5):.0f} / '
                                    f'{percentile(latency, 0.95):.0f} / {max(latency):.0f} µs'),
        ('one 1 MB message', f'{megabyte_ms():.1f} ms'),
        ('python, cpus', f'{platform.python_version()}, {os.cpu_count()}'),
    ]
    return rows, statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='small run, for a smoke test')
    parser.add_argument('--rounds', type=int, default=None)
    parser.add_argument('--messages', type=int, default=None, help='messages per round')
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 9)
    per_round = args.messages or (2_000 if args.quick else 20_000)
    rows, _ = measure(rounds, per_round)
    print('| metric | value |')
    print('|---|---|')
    for name, value in rows:
        print(f'| {name} | {value} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

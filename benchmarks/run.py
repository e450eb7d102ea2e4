"""Run every benchmark against the local Flux sandbox and write BENCHMARKS.md.

Usage: python benchmarks/run.py [--quick] [--output FILE] [--only NAME ...]
       (or: python -m benchmarks ...)

Benchmarks: detection (latency next to kubectl wait and the flux CLI's 2 s poll), failure (time to a failure
verdict), api-load (requests while idle and for a whole push), scale (7,000 resources, 500 followed), hooks
(git push and git commit overhead), explain (messages per second). Each reports medians and p95 over repeated
runs and what it measured against its target; nothing is hard-coded. --quick runs small sizes in well under a
minute, as a smoke test of the harness (its figures mean little); it prints the report unless --output is
given, so it never overwrites the full run's BENCHMARKS.md. A section between the "changes" markers in an
existing output file (the record of product changes with before/after figures) is kept.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from datetime import timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_api_load  # noqa: E402 - needs the path above
from benchmarks import bench_explain  # noqa: E402
from benchmarks import bench_hooks  # noqa: E402
from benchmarks import bench_latency  # noqa: E402
from benchmarks import bench_scale  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.harness import Check  # noqa: E402
from benchmarks.harness import Table  # noqa: E402

CHANGES_START = '<!-- changes:start -->'
CHANGES_END = '<!-- changes:end -->'


def explain(quick: bool, progress: harness.Progress) -> Table:
    rounds, per_round = (3, 2_000) if quick else (9, 20_000)
    rows, rate = bench_explain.measure(rounds, per_round)
    table = Table('explain', '6. Explain throughput',
                  '`flux_monitor_hook.explain.explain` over the annotated real-world failure messages, in process: '
                  'the measurement of benchmarks/bench_explain.py (`python benchmarks/bench_explain.py` prints the '
                  'same table on its own).', ['metric', 'value'], [list(row) for row in rows])
    table.checks.append(Check('explain ≥ 5,000 messages/s (median round)', f'{rate:,.0f} msgs/s', rate >= 5000))
    return table


BENCHMARKS: dict[str, Callable[[bool, harness.Progress], Table]] = {
    'detection': bench_latency.detection,
    'failure': bench_latency.failure,
    'api-load': bench_api_load.api_load,
    'scale': bench_scale.scale,
    'hooks': bench_hooks.hooks,
    'explain': explain,
}


def _cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def _memory() -> str:
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemTotal:'):
                return f'{int(line.split()[1]) / 1024 / 1024:.1f} GiB'
    except (OSError, ValueError, IndexError):
        pass
    return 'unknown'


def _load() -> str:
    try:
        return ', '.join(f'{value:.2f}' for value in os.getloadavg())
    except OSError:
        return 'unknown'


def _version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return 'not installed'
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 'unknown'
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else 'unknown'


def _kubectl_version() -> str:
    import json

    text = _version(['kubectl', 'version', '--client', '-o', 'json'])
    if text in ('not installed', 'unknown'):
        return text
    try:
        done = subprocess.run(['kubectl', 'version', '--client', '-o', 'json'], capture_output=True, text=True,
                              timeout=30, check=False)
        return str(json.loads(done.stdout)['clientVersion']['gitVersion'])
    except (ValueError, KeyError, OSError, subprocess.TimeoutExpired):
        return 'unknown'


def _packages() -> str:
    found = []
    for name in ('flux_monitor_hook', 'kubernetes', 'urllib3', 'tenacity', 'PyYAML', 'pre_commit', 'trustme'):
        try:
            found.append(f'{name} {importlib.metadata.version(name)}')
        except importlib.metadata.PackageNotFoundError:
            found.append(f'{name} (not installed)')
    return ', '.join(found)


def _kept_changes(output: Path) -> str:
    """The hand-written record of product changes (before/after) from the previous report, if any."""
    try:
        text = output.read_text(encoding='utf-8')
    except OSError:
        return ''
    if CHANGES_START in text and CHANGES_END in text:
        return text[text.index(CHANGES_START): text.index(CHANGES_END) + len(CHANGES_END)]
    return ''


def render(tables: list[Table], failures: dict[str, str], *, command: str, started: datetime, seconds: float,
           load_before: str, load_after: str, quick: bool, changes: str) -> str:
    lines = ['# Benchmarks', '',
             f'Generated by `{command}` on {started.strftime("%Y-%m-%d %H:%M UTC")} in {seconds:.0f} s'
             f'{" (quick mode: small sizes, a smoke test; the figures mean little)" if quick else ""}. Every figure '
             'below was measured in that run, against the local Flux sandbox (`flux_monitor_hook.sandbox`: a '
             'Kubernetes API server over real HTTP, in the benchmark\'s process); p95 is the nearest-rank 95th '
             'percentile.', '',
             '## Machine', '',
             '| | |', '|---|---|',
             f'| CPU | {os.cpu_count()} × {_cpu_model()} |',
             f'| memory | {_memory()} |',
             f'| OS | {platform.system()} {platform.release()} |',
             f'| load average (1, 5, 15 min) at the start → at the end | {load_before} → {load_after} |',
             f'| Python | {platform.python_version()} ({sys.executable}) |',
             f'| packages | {_packages()} |',
             f'| kubectl | {_kubectl_version()} |',
             f'| git | {_version(["git", "--version"])} |', '',
             '## Targets', '',
             '| target | measured | met |', '|---|---|---|']
    for table in tables:
        for check in table.checks:
            met = 'yes' if check.met else ('not measured' if check.met is None else '**no**')
            lines.append(f'| {check.target} ([{table.key}](#{table.key})) | {check.measured} | {met} |')
    for key, error in failures.items():
        lines.append(f'| {key} | **the benchmark failed**: {error.splitlines()[-1]} | **no** |')
    lines.append('')
    for table in tables:
        lines.append(table.markdown())
    for key, error in failures.items():
        lines += [f'## {key}: failed', '', '```', error.rstrip(), '```', '']
    if changes:
        lines += [changes, '']
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='small sizes: a smoke test of the harness')
    parser.add_argument('--output', type=Path, help='where to write the report (default: BENCHMARKS.md, or '
                                                    'standard output with --quick)')
    parser.add_argument('--only', action='append', choices=list(BENCHMARKS), help='run only these (repeatable)')
    parser.add_argument('--quiet', action='store_true', help='no progress lines on stderr')
    args = parser.parse_args(argv)
    output: Path | None = args.output if args.output is not None else (None if args.quick else
                                                                         REPO / 'BENCHMARKS.md')
    progress = harness.Progress(not args.quiet)
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    load_before = _load()
    tables: list[Table] = []
    failures: dict[str, str] = {}
    for key in args.only or list(BENCHMARKS):
        progress(f'{key}: starting')
        try:
            tables.append(BENCHMARKS[key](args.quick, progress))
        except Exception:
            failures[key] = traceback.format_exc()
            progress(f'{key}: FAILED\n{failures[key]}')
        else:
            progress(f'{key}: done')
    command = 'python benchmarks/run.py' + (' --quick' if args.quick else '') + ''.join(
        f' --only {key}' for key in args.only or [])
    report = render(tables, failures, command=command, started=started, seconds=time.monotonic() - clock,
                    load_before=load_before, load_after=_load(), quick=args.quick,
                    changes=_kept_changes(output) if output is not None else '')
    if output is None:
        sys.stdout.write(report)
    else:
        output.write_text(report, encoding='utf-8')
        progress(f'wrote {output}')
    return 1 if failures else 0


if __name__ == '__main__':
    raise SystemExit(main())

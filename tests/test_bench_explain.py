"""Smoke test: the explain benchmark runs and reports a throughput figure."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_explain_quick_prints_a_figure():
    script = REPO / 'benchmarks' / 'bench_explain.py'
    done = subprocess.run([sys.executable, str(script), '--quick'], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    assert re.search(r'^\| throughput, median round \| [\d,]+ msgs/s \|$', done.stdout, re.M), \
        done.stdout

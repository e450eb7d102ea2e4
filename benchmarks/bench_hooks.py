"""Hook overhead: how much longer `git push` and `git commit` take with the flux-monitor pre-commit hook.

Real git, real `pre-commit install`, a `repo: local` hook (language system). Three set-ups per operation, each
in a clone of its own (with its own bare remote), measured in turn so that drift spreads evenly: no hooks;
pre-commit with a no-op hook (`true`), which is pre-commit's own overhead; pre-commit with
`<python> -m flux_monitor_hook hook`. The difference between the last two is flux-monitor's part. The
kubeconfig names a live sandbox, so the hook takes its real path and starts a background follower; the
benchmark waits (untimed) for that follower's result before the next run, so it never competes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Check
from benchmarks.harness import Table

PRE_COMMIT = str(Path(sys.executable).with_name('pre-commit'))
SETUPS = ('none', 'no-op hook', 'flux-monitor hook')
SETTLE = 0.3  # seconds between runs


def _config(entry: str, stages: list[str]) -> str:
    return f'''repos:
  - repo: local
    hooks:
      - id: bench
        name: bench
        entry: {entry}
        language: system
        pass_filenames: false
        always_run: true
        require_serial: true
        stages: [{", ".join(stages)}]
'''


@dataclass
class Clone:
    path: Path
    setup: str
    env: dict[str, str]

    def git(self, *args: str) -> str:
        return harness.git(self.path, *args, env=self.env)

    def timed(self, *args: str) -> tuple[float, float]:
        """Wall time of a git command, and the CPU time of git and of everything it waited for (pre-commit and
        the hook; not the detached follower), from os.wait4."""
        started = time.perf_counter()
        process = subprocess.Popen(['git', *args], cwd=self.path, env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        assert process.stderr is not None
        errors = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stderr.close()
        if process.returncode != 0:
            raise RuntimeError(f'git {" ".join(args)} failed ({self.setup}): {errors.decode(errors="replace")}')
        return elapsed, usage.ru_utime + usage.ru_stime

    def wait_for_follower(self, sha: str, timeout: float = 60) -> None:
        """Until the background follower for sha (only the flux-monitor hook starts one) has recorded its result
        and unregistered, then a short pause for every set-up alike: nothing left over competes with the next
        timed run."""
        deadline = time.monotonic() + timeout
        state = self.path / '.git' / 'flux-monitor'
        while self.setup == 'flux-monitor hook' and not (_recorded(state / 'results', sha) and
                                                          not any((state / 'followers').glob('*.json'))):
            if time.monotonic() > deadline:
                raise RuntimeError(f'no follower result for {sha} in {self.path}')
            time.sleep(0.05)
        time.sleep(SETTLE)


def _recorded(results: Path, sha: str) -> bool:
    for path in sorted(results.glob('*.json')) if results.is_dir() else []:
        try:
            if json.loads(path.read_text()).get('sha') == sha:
                return True
        except (OSError, ValueError):
            continue
    return False


def _clone(root: Path, name: str, setup: str, hook_types: list[str], stages: list[str], env: dict[str, str]) -> Clone:
    seed = root / f'{name}-seed'
    seed.mkdir()
    harness.git(seed, 'init', '-q', '--initial-branch=main', env=env)
    files: dict[str, str | None] = {'README.md': 'bench\n'}
    if setup == 'no-op hook':
        files['.pre-commit-config.yaml'] = _config('"true"', stages)
    elif setup == 'flux-monitor hook':
        files['.pre-commit-config.yaml'] = _config(f'{sys.executable} -m flux_monitor_hook hook', stages)
    harness.write_files(seed, files)
    harness.git(seed, 'add', '--all', env=env)
    harness.git(seed, 'commit', '-q', '-m', 'seed', env=env)
    remote = root / f'{name}.git'
    harness.git(root, 'clone', '-q', '--bare', str(seed), str(remote), env=env)
    path = root / name
    harness.git(root, 'clone', '-q', str(remote), str(path), env=env)
    clone = Clone(path, setup, env)
    if setup != 'none':
        args = [PRE_COMMIT, 'install']
        for hook_type in hook_types:
            args += ['--hook-type', hook_type]
        subprocess.run(args, cwd=path, env=env, capture_output=True, text=True, timeout=120, check=True)
    return clone


def _push_once(clone: Clone, n: int) -> tuple[float, float]:
    harness.write_files(clone.path, {'counter.txt': f'{n}\n'})
    clone.git('add', '--all')
    clone.git('commit', '-q', '-m', f'change {n}')
    sha = clone.git('rev-parse', 'HEAD')
    elapsed = clone.timed('push', '-q', 'origin', 'main')
    clone.wait_for_follower(sha)
    return elapsed


def _commit_once(clone: Clone, n: int) -> tuple[float, float]:
    harness.write_files(clone.path, {'counter.txt': f'{n}\n'})
    clone.git('add', '--all')
    elapsed = clone.timed('commit', '-q', '-m', f'change {n}')
    clone.wait_for_follower(clone.git('rev-parse', 'HEAD'))
    return elapsed


def hooks(quick: bool, progress: harness.Progress) -> Table:
    runs = 1 if quick else 20
    table = Table(
        'hooks', '5. Hook overhead',
        f'{runs} timed runs per set-up after one untimed warm-up, set-ups taking turns. `git push -q origin main` '
        'of one new commit to a local bare repository with the pre-push hook installed (`pre-commit install '
        '--hook-type pre-push`), and `git commit -q` of one changed file with the pre-commit and post-commit '
        'hooks installed (`--hook-type pre-commit --hook-type post-commit`). The no-op hook\'s set-up measures '
        'pre-commit\'s own overhead; "flux-monitor\'s part" is the flux-monitor hook\'s median minus the no-op '
        'hook\'s. Only the synchronous part counts: what git waits for. CPU is the CPU time of git, pre-commit and '
        'the hook (os.wait4; not the detached follower): less sensitive than wall time to other load on the '
        'machine.',
        ['operation', 'hooks', 'runs', 'median', 'p95', 'median over no hooks', "flux-monitor's part (median)",
         'CPU (median)', "flux-monitor's part, CPU"])
    times: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix='bench-hooks-') as tmp:
        root = Path(tmp)
        (root / 'home').mkdir()
        sandbox = harness.quiet_sandbox(kubeconfig_path=root / 'kubeconfig')
        try:
            env = harness.git_env(HOME=str(root / 'home'), PRE_COMMIT_HOME=str(root / 'pre-commit'),
                                  KUBECONFIG=str(sandbox.kubeconfig_path))
            clones: dict[tuple[str, str], Clone] = {}
            for index, setup in enumerate(SETUPS):
                clones[('git push', setup)] = _clone(root, f'push-{index}', setup, ['pre-push'], ['pre-push'], env)
                clones[('git commit', setup)] = _clone(root, f'commit-{index}', setup, ['pre-commit', 'post-commit'],
                                                       ['pre-commit', 'post-commit'], env)
            operations = {'git push': _push_once, 'git commit': _commit_once}
            for n in range(runs + 1):
                for (operation, setup), clone in clones.items():
                    elapsed, used = operations[operation](clone, n)
                    if n:
                        times.setdefault((operation, setup), []).append(elapsed)
                        cpu.setdefault((operation, setup), []).append(used)
                if n == 0:
                    progress(f'hooks: warmed up; {runs} runs of each of {len(clones)} set-ups')
        finally:
            sandbox.stop()
    for operation in ('git push', 'git commit'):
        base = harness.median(times[(operation, 'none')])
        noop = harness.median(times[(operation, 'no-op hook')])
        noop_cpu = harness.median(cpu[(operation, 'no-op hook')])
        for setup in SETUPS:
            values = times[(operation, setup)]
            middle = harness.median(values)
            middle_cpu = harness.median(cpu[(operation, setup)])
            flux = setup == 'flux-monitor hook'
            table.rows.append([operation, setup, str(len(values)), harness.ms(middle),
                               harness.ms(harness.percentile(values, 0.95)),
                               harness.ms(middle - base) if setup != 'none' else '',
                               harness.ms(middle - noop) if flux else '', harness.ms(middle_cpu),
                               harness.ms(middle_cpu - noop_cpu) if flux else ''])
    push_part = harness.median(times[('git push', 'flux-monitor hook')]) - \
        harness.median(times[('git push', 'no-op hook')])
    commit_part = harness.median(times[('git commit', 'flux-monitor hook')]) - \
        harness.median(times[('git commit', 'no-op hook')])
    commit_total = harness.median(times[('git commit', 'flux-monitor hook')]) - \
        harness.median(times[('git commit', 'none')])
    table.checks += [
        Check('pre-push: flux-monitor\'s part ≤ 0.5 s (median, beyond pre-commit\'s own overhead)',
              harness.ms(push_part), push_part <= 0.5),
        Check('commit: flux-monitor\'s part ≤ 0.15 s (median, beyond pre-commit\'s own overhead)',
              harness.ms(commit_part), commit_part <= 0.15),
    ]
    table.notes.append(f'With pre-commit\'s own overhead included, the flux-monitor hook adds '
                       f'{harness.ms(commit_total)} (median) to a commit: pre-commit starts twice (pre-commit and '
                       'post-commit stages), whatever the hook.')
    return table

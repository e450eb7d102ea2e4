"""`flux-monitor push [git push arguments]`: git push, then wait in the foreground for what Flux follows.

Use it as `git config alias.pushw '!flux-monitor push'`. The pre-push hook, if installed, starts no
background follower for this push: this command follows it itself.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from flux_monitor_hook import exit_codes
from flux_monitor_hook import gitctx
from flux_monitor_hook.commands import wait
from flux_monitor_hook.tracker import Target

# When several refs were pushed, the verdict is the most serious of theirs.
_SEVERITY = (exit_codes.INTERRUPTED, exit_codes.FAILED, exit_codes.TIMEOUT, exit_codes.UNAVAILABLE,
             exit_codes.USAGE)


def worst(codes: list[int]) -> int:
    for code in _SEVERITY:
        if code in codes:
            return code
    return max(codes, default=exit_codes.SUCCESS)


def pushed_refs(porcelain: str) -> list[tuple[str, str]]:
    """(local ref or sha, remote ref) of each ref git pushed, from `git push --porcelain` output."""
    pushed = []
    for line in porcelain.splitlines():
        flag, _, rest = line.partition('\t')
        if flag not in (' ', '+', '*', '=') or ':' not in rest:
            continue  # '-' deleted, '!' rejected, 'To ...' and 'Done'
        refs = rest.split('\t', 1)[0]
        source, _, destination = refs.partition(':')
        pushed.append((source, destination))
    return pushed


def _remote_argument(git_args: list[str]) -> str | None:
    for argument in git_args:
        if argument == '--':
            continue
        if not argument.startswith('-'):
            return argument
    return None


def run(args: argparse.Namespace) -> int:
    git_args: list[str] = list(args.git_args)
    root = gitctx.repo_root()
    env = dict(os.environ, FLUX_MONITOR_NO_FOLLOWER='1')
    result = subprocess.run(['git', 'push', '--porcelain', *git_args], cwd=root, env=env, stdout=subprocess.PIPE,
                            text=True, check=False)
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    if result.returncode != 0:
        print(f'flux-monitor: git push failed (exit {result.returncode}); nothing to follow', file=sys.stderr)
        return result.returncode
    wait_args = argparse.Namespace(**{**vars(wait_defaults()), 'repo_path': root})
    config = wait.settings(wait_args, root)
    remote = _remote_argument(git_args) or gitctx.default_remote(root, gitctx.current_branch(root))
    url = gitctx.remote_url(root, remote) if remote and remote in gitctx.remotes(root) else (remote or '')
    codes = []
    for source, destination in pushed_refs(result.stdout):
        sha = gitctx.resolve_commit(root, source)
        tag = destination.removeprefix('refs/tags/') if destination.startswith('refs/tags/') else None
        branch = None if tag else destination.removeprefix('refs/heads/')
        target = Target(sha=sha, repository=url, branch=branch, tag=tag,
                        explicit_sources=tuple((s.kind, s.namespace, s.name) for s in config.sources))
        context = wait.GitContext(root, target, remote if remote in gitctx.remotes(root) else None)
        codes.append(wait.follow_revision(context, config).exit_code)
    return worst(codes)


def wait_defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    wait.add_arguments(parser)
    return parser.parse_args([])

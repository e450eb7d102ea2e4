"""`flux-monitor status`: the latest result per branch, or attach to a running follower with --wait."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from flux_monitor_hook import exit_codes
from flux_monitor_hook import followers
from flux_monitor_hook import gitctx
from flux_monitor_hook.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--repo-path', type=Path)
    parser.add_argument('--branch', help='Only this branch (default: the current branch with --wait, else all).')
    parser.add_argument('--format', choices=('text', 'json'), default='text')
    parser.add_argument('--wait', action='store_true', help='Attach to the running follower and stream its output '
                                                           'until it finishes.')


def _line(branch: str, result: dict[str, Any]) -> str:
    finished = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(result.get('finished_at', 0))))
    sha = gitctx.short(str(result.get('sha') or result.get('revision') or ''))
    text = f'{branch}: {result.get("result")} (exit {result.get("exit_code")}) {sha} at {finished}'
    if result.get('duration_s') is not None:
        text += f' after {float(result["duration_s"]):.1f}s'
    if result.get('message'):
        text += f' — {result["message"]}'
    return text


def _attach(git_dir: Path, branch: str) -> None:
    """Stream the follower's log from the start until the follower exits."""
    follower = followers.running(git_dir, branch)
    if follower is None:
        return
    with open(follower.log, encoding='utf-8', errors='replace') as stream:
        while True:
            chunk = stream.read()
            if chunk:
                print(chunk, end='', flush=True)
            elif not followers.alive(follower.pid):
                print(stream.read(), end='', flush=True)
                return
            else:
                time.sleep(0.1)


def run(args: argparse.Namespace) -> int:
    root = gitctx.repo_root(args.repo_path)
    git_dir = gitctx.git_dir(root)
    branch = args.branch
    if args.wait:
        branch = branch or gitctx.current_branch(root)
        if branch is None:
            raise UserError('HEAD is detached: pass --branch NAME for the follower to attach to')
        _attach(git_dir, branch)
    results = followers.latest_results(git_dir)
    if branch is not None:
        results = {b: r for b, r in results.items() if b == branch}
    running = {f.branch: f for f in followers.all_running(git_dir)}
    if args.format == 'json':
        for _, result in sorted(results.items()):
            print(json.dumps(result, separators=(',', ':')))
    else:
        for name, follower in sorted(running.items()):
            if branch is None or name == branch:
                print(f'{name}: following {gitctx.short(follower.sha)} (pid {follower.pid}, log {follower.log})')
        for name, result in sorted(results.items()):
            print(_line(name, result))
        if not results and not running:
            print('flux-monitor: no results yet: push with the pre-push hook installed, or run flux-monitor wait')
    if branch is not None and branch in results:
        return int(results[branch].get('exit_code', exit_codes.SUCCESS))
    if len(results) == 1:
        return int(next(iter(results.values())).get('exit_code', exit_codes.SUCCESS))
    return max((int(r.get('exit_code', 0)) for r in results.values()), default=exit_codes.SUCCESS)

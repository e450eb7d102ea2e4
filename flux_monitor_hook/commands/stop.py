"""`flux-monitor stop`: stop the background followers of this repository (each records "stopped")."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from flux_monitor_hook import exit_codes
from flux_monitor_hook import followers
from flux_monitor_hook import gitctx


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--repo-path', type=Path)
    parser.add_argument('--branch', help='Only the follower of this branch (default: all).')


def run(args: argparse.Namespace) -> int:
    git_dir = gitctx.git_dir(gitctx.repo_root(args.repo_path))
    running = [f for f in followers.all_running(git_dir) if args.branch in (None, f.branch)]
    for follower in running:
        followers.stop(follower)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(followers.alive(f.pid) for f in running):
        time.sleep(0.05)
    for follower in running:
        print(f'stopped the follower of {follower.branch} ({gitctx.short(follower.sha)})')
    if not running:
        print('no follower is running')
    return exit_codes.SUCCESS

"""`flux-monitor post-receive`: for a self-hosted bare repository's post-receive hook.

git passes `<old> <new> <ref>` lines on stdin; this waits in the foreground for every pushed branch (and tag)
that Flux follows, so the pusher sees the progress as `remote:` lines. The hook script:

    #!/bin/sh
    exec flux-monitor post-receive --url ssh://git@git.example.com/org/fleet.git
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from flux_monitor_hook import exit_codes
from flux_monitor_hook import gitctx
from flux_monitor_hook.commands import wait
from flux_monitor_hook.commands.push import worst
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.tracker import Target

ZERO = '0' * 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--url', help='The URL Flux fetches this repository from (default: git config '
                                      'flux-monitor.url, else the repository path).')
    parser.add_argument('--timeout')
    parser.add_argument('--context', action='append', default=[])
    parser.add_argument('--kubeconfig', type=Path)
    parser.add_argument('--format', choices=('structured', 'simple', 'json'))
    parser.add_argument('--config', type=Path, help='Settings file (a bare repository has no work tree to hold '
                                                    '.flux-monitor.yaml).')


def _git_dir() -> Path:
    result = subprocess.run(['git', 'rev-parse', '--absolute-git-dir'], capture_output=True, text=True,
                            env=gitctx._env(), check=False)
    if result.returncode != 0:
        raise UserError('post-receive must run inside a git repository (as its post-receive hook)')
    return Path(result.stdout.strip())


def _configured_url(git_dir: Path) -> str | None:
    result = subprocess.run(['git', '-C', str(git_dir), 'config', '--get', 'flux-monitor.url'],
                            capture_output=True, text=True, env=gitctx._env(), check=False)
    return result.stdout.strip() or None


def updates(lines: str) -> list[tuple[str, str]]:
    """(new commit, ref) of each created or updated branch or tag; deletions are skipped."""
    found = []
    for line in lines.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[1] == ZERO:
            continue
        if parts[2].startswith(('refs/heads/', 'refs/tags/')):
            found.append((parts[1], parts[2]))
    return found


def run(args: argparse.Namespace) -> int:
    git_dir = _git_dir()
    url = args.url or _configured_url(git_dir) or str(git_dir)
    for name in ('revision', 'repo_path', 'remote', 'branch', 'namespace', 'source', 'scope', 'color',
                 'timestamps', 'verbosity', 'fail_fast'):
        setattr(args, name, getattr(args, name, None))
    args.namespace, args.source, args.no_trigger = [], [], False
    config = wait.settings(args, None)
    codes = []
    for sha, ref in updates(sys.stdin.read()):
        tag = ref.removeprefix('refs/tags/') if ref.startswith('refs/tags/') else None
        branch = None if tag else ref.removeprefix('refs/heads/')
        target = Target(sha=sha, repository=url, branch=branch, tag=tag,
                        explicit_sources=tuple((s.kind, s.namespace, s.name) for s in config.sources))
        codes.append(wait.follow_revision(wait.GitContext(git_dir, target, None), config).exit_code)
    return worst(codes) if codes else exit_codes.SUCCESS

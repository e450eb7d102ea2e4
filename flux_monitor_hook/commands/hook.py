"""`flux-monitor hook`: the pre-commit hook entry, one behaviour per git stage.

- pre-push: a fast preflight, then a background follower for the pushed ref; returns 0 so the push proceeds.
- post-commit: a background follower for the new HEAD (for Flux sources that see commits without a push).
- pre-commit run by git during `git commit`: returns 0 at once and silently; a commit is never slowed.
- by hand (`pre-commit run flux-monitor`, any stage, or `--hook-stage manual`): waits in the foreground.

This module is on git's fast path: it imports only the standard library and the small git helpers, never the
kubernetes client. pre-commit does not tell a hook its stage, so it is read from pre-commit's variables and
from the `--hook-type` of the pre-commit process that git started.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from flux_monitor_hook import exit_codes
from flux_monitor_hook.errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

# git runs the hook at every commit, where it must return at once: what only the other stages need (git,
# the follower records, pathlib) is imported by the functions that use it, after the stage is known.

ZERO = '0' * 40
STAGES = ('pre-push', 'post-commit', 'pre-commit', 'manual')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--stage', choices=STAGES, help='The git stage (default: detected).')
    parser.add_argument('-v', '--verbose', action='store_true')


def _hook_type_of_ancestors() -> str | None:
    """The --hook-type of the `pre-commit hook-impl` process that git started, found among our ancestors."""
    pid = os.getppid()
    for _ in range(6):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as stream:
                arguments = stream.read().split(b'\0')
            with open(f'/proc/{pid}/stat', encoding='utf-8', errors='replace') as stream:
                status = stream.read()
        except OSError:
            return None
        for index, argument in enumerate(arguments):
            text = argument.decode(errors='replace')
            if text.startswith('--hook-type='):
                return text.split('=', 1)[1]
            if text == '--hook-type' and index + 1 < len(arguments):
                return arguments[index + 1].decode(errors='replace')
        # the parent pid is the 4th field, after the command name in parentheses
        pid = int(status.rsplit(')', 1)[1].split()[1])
        if pid <= 1:
            return None
    return None


def detect_stage(explicit: str | None) -> str:
    """pre-push, post-commit, git-commit (pre-commit run by git while committing) or by-hand."""
    if explicit in ('pre-push', 'post-commit'):
        return explicit
    if explicit == 'manual':
        return 'by-hand'
    if os.environ.get('PRE_COMMIT_REMOTE_NAME') or os.environ.get('PRE_COMMIT_TO_REF'):
        return 'pre-push'
    hook_type = _hook_type_of_ancestors()
    if hook_type in ('pre-push', 'post-commit'):
        return hook_type
    if hook_type == 'pre-commit' or os.environ.get('GIT_INDEX_FILE'):
        return 'git-commit'  # git runs pre-commit with GIT_INDEX_FILE set; `pre-commit run` does not
    return 'by-hand'


def _terminal() -> int | None:
    """A descriptor of the user's terminal (not pre-commit's output pipe), or None without one (IDEs, CI)."""
    try:
        return os.open('/dev/tty', os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        return None


def _has_kubeconfig(root: Path) -> bool:
    from pathlib import Path

    paths = [p for p in os.environ.get('KUBECONFIG', '').split(os.pathsep) if p]
    paths.append(str(Path.home() / '.kube' / 'config'))
    # A .flux-monitor.yaml may name the kubeconfig: the follower reads it, so let it decide.
    return any(Path(p).is_file() for p in paths) or (root / '.flux-monitor.yaml').is_file()


def _warn(message: str) -> None:
    """One line the user sees: pre-commit shows a passing hook's output only with verbose, so it goes to the
    terminal when there is one."""
    line = f'flux-monitor: {message}\n'
    terminal = _terminal()
    if terminal is None:
        sys.stderr.write(line)
        sys.stderr.flush()
        return
    try:
        os.write(terminal, line.encode())
    finally:
        os.close(terminal)


def _start_follower(root: Path, branch: str, sha: str, stage: str, *, remote: str | None = None,
                    remote_ref: str | None = None, tag: str | None = None, verbose: bool = False) -> int:
    from flux_monitor_hook import followers
    from flux_monitor_hook import gitctx

    git_dir = gitctx.git_dir(root)
    log = followers.new_log(git_dir, branch)
    arguments = ['--root', str(root), '--branch', branch, '--sha', sha, '--stage', stage, '--log', str(log)]
    if remote:
        arguments += ['--remote', remote]
    if remote_ref:
        arguments += ['--remote-ref', remote_ref]
    if tag:
        arguments += ['--tag', tag]
    if verbose:
        arguments.append('--verbose')
    terminal = _terminal()
    try:
        return followers.spawn(arguments, log, terminal=terminal)
    finally:
        if terminal is not None:
            os.close(terminal)


def _pre_push(root: Path, verbose: bool) -> int:
    """pre-commit passes the first pushed ref only; TO_REF is missing for a new branch's root commit."""
    from flux_monitor_hook import gitctx

    env = os.environ
    remote = env.get('PRE_COMMIT_REMOTE_NAME') or None
    remote_ref = env.get('PRE_COMMIT_REMOTE_BRANCH', '')
    local_ref = env.get('PRE_COMMIT_LOCAL_BRANCH', '')
    sha = env.get('PRE_COMMIT_TO_REF') or ''
    if not sha and local_ref:
        sha = gitctx.resolve_commit(root, local_ref)
    if not sha or sha == ZERO:
        if verbose:
            _warn(f'{remote_ref or "the ref"} is being deleted: nothing to follow')
        return exit_codes.SUCCESS
    tag = remote_ref.removeprefix('refs/tags/') if remote_ref.startswith('refs/tags/') else None
    branch = tag or remote_ref.removeprefix('refs/heads/') or gitctx.current_branch(root) or 'HEAD'
    if not _has_kubeconfig(root):
        _warn('no kubeconfig (KUBECONFIG, ~/.kube/config or .flux-monitor.yaml): not following this push')
        return exit_codes.SUCCESS
    _start_follower(root, branch, sha, 'pre-push', remote=remote, remote_ref=remote_ref or f'refs/heads/{branch}',
                    tag=tag, verbose=verbose)
    print(f'flux-monitor: following {gitctx.short(sha)} ({branch}) in the background; '
          'flux-monitor status --wait attaches to it', flush=True)
    return exit_codes.SUCCESS


def _post_commit(root: Path, verbose: bool) -> int:
    from flux_monitor_hook import gitctx

    branch = gitctx.current_branch(root)
    if branch is None:
        if verbose:
            _warn('detached HEAD: nothing to follow')
        return exit_codes.SUCCESS
    if not _has_kubeconfig(root):
        _warn('no kubeconfig (KUBECONFIG, ~/.kube/config or .flux-monitor.yaml): not following this commit')
        return exit_codes.SUCCESS
    sha = gitctx.resolve_commit(root, 'HEAD')
    _start_follower(root, branch, sha, 'post-commit', verbose=verbose)
    return exit_codes.SUCCESS


def _by_hand(root: Path) -> int:
    """Foreground wait for the current branch's pushed revision, with the wait's exit codes."""
    from flux_monitor_hook import gitctx
    from flux_monitor_hook.commands import wait

    parser = argparse.ArgumentParser()
    wait.add_arguments(parser)
    args = parser.parse_args(['--repo-path', str(root)])
    config = wait.settings(args, root)
    context = wait.git_context(args, config)
    terminal = _terminal()
    if terminal is None:
        return wait.follow_target(context, config)
    # pre-commit shows a hook's output only when it ends: the progress goes to the terminal as it happens.
    with os.fdopen(terminal, 'w', encoding='utf-8', errors='replace') as stream:
        summary = wait.follow_revision(context, config, stream=stream)
    print(f'flux-monitor: {summary.result} for {gitctx.short(summary.revision)} (exit {summary.exit_code})')
    return summary.exit_code


def run(args: argparse.Namespace) -> int:
    stage = detect_stage(args.stage)
    if stage == 'git-commit':
        return exit_codes.SUCCESS
    if os.environ.get('FLUX_MONITOR_NO_FOLLOWER') and stage in ('pre-push', 'post-commit'):
        return exit_codes.SUCCESS  # `flux-monitor push` follows in the foreground itself
    from flux_monitor_hook import gitctx

    try:
        root = gitctx.repo_root()
    except UserError as error:
        if stage == 'by-hand':
            raise
        _warn(str(error))
        return exit_codes.SUCCESS
    if stage == 'by-hand':
        return _by_hand(root)
    try:
        return _pre_push(root, args.verbose) if stage == 'pre-push' else _post_commit(root, args.verbose)
    except UserError as error:  # never let flux-monitor block git
        _warn(str(error))
        return exit_codes.SUCCESS

"""`flux-monitor follower`: the background process a git hook starts (not meant to be run by hand).

It waits until the remote has the pushed commit, follows it with the wait engine, writes the progress to the
user's terminal (when there is one) and to its log, records the result and exits. A newer push of the same
branch supersedes it: it stops and records "superseded by <sha>".
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from flux_monitor_hook import exit_codes
from flux_monitor_hook import followers
from flux_monitor_hook import gitctx
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.git_urls import redact_text


class _Stopped(Exception):
    pass


@dataclass
class _Term:
    armed: bool = False  # SIGTERM raises _Stopped
    pending: bool = False  # a SIGTERM came before it was armed
    newer: str | None = None  # the branch's registered commit when the SIGTERM came


class _Tee(io.TextIOBase):
    """Writes to the log and, while it is open, the user's terminal; never a live (cursor-moving) display."""

    def __init__(self, *streams: TextIO) -> None:
        super().__init__()
        self.streams = list(streams)

    def write(self, text: str) -> int:
        for stream in list(self.streams):
            try:
                stream.write(text)
            except OSError:
                self.streams.remove(stream)  # the terminal went away; the log goes on
        return len(text)

    def flush(self) -> None:
        for stream in list(self.streams):
            try:
                stream.flush()
            except OSError:
                self.streams.remove(stream)

    def isatty(self) -> bool:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--root', type=Path, required=True)
    parser.add_argument('--branch', required=True)
    parser.add_argument('--sha', required=True)
    parser.add_argument('--stage', choices=('pre-push', 'post-commit'), required=True)
    parser.add_argument('--log', type=Path, required=True)
    parser.add_argument('--remote')
    parser.add_argument('--remote-ref')
    parser.add_argument('--tag')
    parser.add_argument('--terminal-fd', type=int)
    parser.add_argument('--queued-at', type=float, help='When the hook started this follower (time.time()).')
    parser.add_argument('--verbose', action='store_true')


def _remote_commit(root: Path, remote: str, ref: str) -> str | None:
    try:
        result = subprocess.run(['git', '-C', str(root), 'ls-remote', '--end-of-options', remote, ref],
                                capture_output=True, text=True, timeout=30, env=gitctx._env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in result.stdout.splitlines():
        sha, _, name = line.partition('\t')
        if name == ref:
            return sha
    return None


def _wait_for_remote(root: Path, remote: str, ref: str, sha: str, deadline: float, out: _Tee) -> bool:
    """The pre-push hook runs before git sends anything: wait until the remote has the commit (or a descendant,
    if someone pushed on top meanwhile)."""
    delay = 0.1
    announce_at = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        found = _remote_commit(root, remote, ref)
        if found == sha or (found and gitctx.is_ancestor(root, sha, found)):
            return True
        if announce_at and time.monotonic() >= announce_at:
            out.write(f'flux-monitor: waiting for {remote} to receive {gitctx.short(sha)}...\n')
            out.flush()
            announce_at = 0.0
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)
    return False


def _no_source_follows(context: object, config: object) -> bool:
    """For post-commit: is there any Flux source for this branch at all? (Quietly, before printing anything.)"""
    from flux_monitor_hook import cluster as kube
    from flux_monitor_hook.commands.wait import GitContext
    from flux_monitor_hook.config import Config
    from flux_monitor_hook.tracker import Tracker

    assert isinstance(context, GitContext) and isinstance(config, Config)
    tracker = Tracker(context.target, lambda commit: None)
    policy = kube.RetryPolicy(2, 0.5, time.monotonic() + 20)
    for name in config.cluster.selected_contexts:
        cluster = kube.connect(config.cluster.kubeconfig, name)
        apis = kube.discover(cluster, policy)
        for kind in ('GitRepository', 'ArtifactGenerator', 'ExternalArtifact', 'OCIRepository'):
            if kind in apis:
                tracker.observe_all(cluster.name, kube.list_objects(cluster, apis[kind], None, policy)[0], 0.0)
    return not tracker.sources()


def _notify(root: Path, record: dict[str, object], *, has_terminal: bool, out: _Tee) -> None:
    from flux_monitor_hook.config import load_config
    from flux_monitor_hook.notify import notify

    try:
        config = load_config(None, root)
    except UserError:
        return  # already reported when the follow started
    for problem in notify(config.notify, record, has_terminal=has_terminal):
        out.write(f'flux-monitor: {problem}\n')
    out.flush()


def run(args: argparse.Namespace) -> int:
    from flux_monitor_hook.commands import wait
    from flux_monitor_hook.config import load_config
    from flux_monitor_hook.tracker import Target

    root: Path = args.root
    git_dir = gitctx.git_dir(root)
    # A newer follower may stop this one as soon as it is registered: until the try below, a SIGTERM is kept
    # for later rather than raised where nothing would record the result. Who stopped it is read at once: by
    # the time the watches have wound down, the newer follower may have finished and unregistered.
    term = _Term()

    def on_term(signum: int, frame: FrameType | None) -> None:
        term.newer = followers.current_sha(git_dir, args.branch)
        if term.armed:
            raise _Stopped()
        term.pending = True

    signal.signal(signal.SIGTERM, on_term)
    me = followers.Follower(args.branch, args.sha, os.getpid(), args.log,
                            args.queued_at if args.queued_at is not None else time.time())
    with followers.branch_lock(git_dir, args.branch):
        previous = followers.running(git_dir, args.branch)
        if previous is not None and previous.pid != me.pid and previous.started > me.started:
            # The follower of a later push came up first (processes start in any order): it is the one to run.
            message = f'superseded by {previous.sha}'
            followers.record_result(git_dir, args.branch, {
                'sha': args.sha, 'stage': args.stage, 'log': str(args.log), 'result': 'superseded',
                'exit_code': exit_codes.INTERRUPTED, 'superseded_by': previous.sha, 'message': message})
            print(f'flux-monitor: {gitctx.short(args.sha)} superseded by {gitctx.short(previous.sha)}', flush=True)
            return exit_codes.INTERRUPTED
        followers.register(git_dir, me)
    if previous is not None and previous.pid != me.pid:
        followers.stop(previous)
    terminal: TextIO | None = None
    if args.terminal_fd is not None:
        try:
            terminal = os.fdopen(args.terminal_fd, 'w', encoding='utf-8', errors='replace')
        except OSError:
            terminal = None
    out = _Tee(*(s for s in (sys.stdout, terminal) if s is not None))
    record: dict[str, object] = {'sha': args.sha, 'stage': args.stage, 'log': str(args.log)}
    try:
        term.armed = True
        if term.pending:
            raise _Stopped()
        config = load_config(None, root)
        remote = args.remote or gitctx.default_remote(root, args.branch)
        url = gitctx.remote_url(root, remote) if remote else ''
        # After a commit, Flux may read this very repository (a mirror, a local server): it matches too.
        local = (str(root),) if args.stage == 'post-commit' else ()
        target = Target(sha=args.sha, repository=url, branch=None if args.tag else args.branch, tag=args.tag,
                        explicit_sources=tuple((s.kind, s.namespace, s.name) for s in config.sources),
                        also_known_as=local)
        context = wait.GitContext(root, target, remote)
        deadline = time.monotonic() + config.timeout
        if args.stage == 'pre-push' and remote and args.remote_ref:
            if not _wait_for_remote(root, remote, args.remote_ref, args.sha, deadline, out):
                message = f'{remote} did not receive {gitctx.short(args.sha)} within {config.timeout:.0f}s'
                out.write(f'flux-monitor: {message}\n')
                record.update(result='timeout', exit_code=exit_codes.TIMEOUT, message=message)
                return exit_codes.TIMEOUT
        if args.stage == 'post-commit' and _no_source_follows(context, config):
            if args.verbose:
                out.write(f'flux-monitor: no Flux source follows {args.branch}\n')
            record.update(result='no-sources', exit_code=exit_codes.SUCCESS)
            return exit_codes.SUCCESS
        out.write(f'\nflux-monitor: following {gitctx.short(args.sha)} ({args.branch}) after the {args.stage}\n')
        summary = wait.follow_revision(context, config, stream=out)  # type: ignore[arg-type]  # a TextIO in all but name
        record.update(summary.to_json())
        return summary.exit_code
    except _Stopped:
        newer = term.newer
        if newer and newer != args.sha:
            record.update(result='superseded', exit_code=exit_codes.INTERRUPTED, superseded_by=newer,
                          message=f'superseded by {newer}')
            out.write(f'flux-monitor: {gitctx.short(args.sha)} superseded by {gitctx.short(newer)}\n')
        else:
            record.update(result='stopped', exit_code=exit_codes.INTERRUPTED, message='stopped')
        return exit_codes.INTERRUPTED
    except UserError as error:
        message = redact_text(str(error))
        out.write(f'flux-monitor: {message}\n')
        record.update(result='error', exit_code=error.exit_code, message=message)
        return error.exit_code
    finally:
        out.flush()
        if 'result' in record:
            record.setdefault('branch', args.branch)
            followers.record_result(git_dir, args.branch, record)
            if record['result'] not in ('superseded', 'no-sources'):
                _notify(root, record, has_terminal=terminal is not None, out=out)
        followers.unregister(git_dir, args.branch, me.pid)
        if terminal is not None:
            terminal.close()


"""`flux-monitor wait`: follow a git revision until Flux has landed it, and exit with the verdict."""
from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import TextIO

from flux_monitor_hook import gitctx
from flux_monitor_hook.config import Config
from flux_monitor_hook.config import load_config
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.git_urls import redact_url
from flux_monitor_hook.objects import ObjectKey
from flux_monitor_hook.revisions import extract_hash
from flux_monitor_hook.tracker import Target
from flux_monitor_hook.tracker import Tracker

if TYPE_CHECKING:
    from flux_monitor_hook.summary import Summary


@dataclass(frozen=True)
class GitContext:
    root: Path
    target: Target
    remote: str | None
    notes: tuple[str, ...] = ()


def add_git_arguments(parser: argparse.ArgumentParser, revision_help: str) -> None:
    """Which revision of which repository: shared by wait and plan."""
    parser.add_argument('--revision', help=revision_help)
    parser.add_argument('--repo-path', type=Path, help='The git repository (default: the current directory).')
    parser.add_argument('--remote', help="The git remote Flux fetches from (default: the branch's upstream, else "
                                         'origin).')
    parser.add_argument('--branch', help='The branch Flux follows (default: the current branch).')


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Which clusters and sources: shared by wait and plan."""
    parser.add_argument('--context', action='append', default=[], help='Kubeconfig context; repeat for several '
                                                                       'clusters.')
    parser.add_argument('--kubeconfig', type=Path)
    parser.add_argument('--namespace', action='append', default=[],
                        help='Namespaces to read when listing across namespaces is forbidden (repeatable).')
    parser.add_argument('--source', action='append', default=[], metavar='KIND/NAMESPACE/NAME',
                        help='Follow these Flux sources instead of matching the git remote (repeatable).')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_git_arguments(parser, 'Commit, branch or tag (default: what the upstream branch points at).')
    parser.add_argument('--timeout', help='How long to wait, e.g. 300, 5m, 1h30m (default 5m).')
    add_cluster_arguments(parser)
    parser.add_argument('--scope', choices=('affected', 'all'))
    parser.add_argument('--no-trigger', action='store_true', help='Do not request reconciliation; wait for Flux.')
    parser.add_argument('--fail-fast', action='store_true', default=None, help='Stop at the first failure.')
    parser.add_argument('--format', choices=('structured', 'simple', 'json'))
    parser.add_argument('--color', choices=('auto', 'always', 'never'))
    parser.add_argument('--timestamps', action='store_true', default=None)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument('-v', '--verbose', action='store_const', const='verbose', dest='verbosity')
    verbosity.add_argument('-q', '--quiet', action='store_const', const='quiet', dest='verbosity')
    parser.add_argument('--config', type=Path, help='Settings file (default: .flux-monitor.yaml at the repository '
                                                    'root).')


def settings(args: argparse.Namespace, root: Path | None) -> Config:
    config = load_config(args.config, root)
    contexts = list(args.context)
    return config.with_overrides(**{
        'timeout': args.timeout,
        'verbosity': args.verbosity,
        'cluster.context': contexts[0] if len(contexts) == 1 else None,
        'cluster.contexts': contexts if len(contexts) > 1 else None,
        'cluster.kubeconfig': str(args.kubeconfig) if args.kubeconfig else None,
        'cluster.namespaces': args.namespace,
        'sources': args.source,
        'scope': args.scope,
        'trigger_reconcile': False if args.no_trigger else None,
        'error_handling.fail_fast': args.fail_fast,
        'output.format': args.format,
        'output.colors': args.color,
        'output.timestamps': args.timestamps,
    })


def git_context(args: argparse.Namespace, config: Config) -> GitContext:
    root = gitctx.repo_root(args.repo_path)
    notes = []
    branch = args.branch or gitctx.current_branch(root)
    remote = args.remote or gitctx.default_remote(root, branch)
    explicit = tuple((s.kind, s.namespace, s.name) for s in config.sources)
    if remote is None and not explicit:
        gitctx.remote_url(root, 'origin')  # raises the "no remote" error with its fix
    url = gitctx.remote_url(root, remote) if remote else ''
    tag = None
    if args.revision:
        sha = gitctx.resolve_commit(root, args.revision)
        kind = gitctx.ref_kind(root, args.revision)
        if kind == 'tag':
            tag = args.revision.removeprefix('refs/tags/')
            if not args.branch:
                # A tag pushed on its own never reaches what follows the branch: follow those sources only
                # when the pushed branch already has the tagged commit.
                branch = pushed_branch_containing(root, remote, branch, sha)
        elif kind == 'branch' and not args.branch:
            # The branch's own name, whether REV is `main`, `HEAD`, `refs/heads/main` or `origin/main`.
            full = gitctx.ref_name(root, args.revision) or ''
            if full.startswith('refs/remotes/'):
                branch = full.split('/', 3)[-1]
            elif full.startswith('refs/heads/'):
                branch = full.removeprefix('refs/heads/')
    else:
        upstream = gitctx.upstream(root, branch) if branch else None
        remote_branch = upstream[1] if upstream else branch
        pushed = gitctx.remote_tracking_commit(root, remote, remote_branch) if remote and remote_branch else None
        head = gitctx.resolve_commit(root, 'HEAD')
        if pushed:
            sha = pushed
            if pushed != head:
                notes.append(f'following the pushed commit {gitctx.short(pushed)} ({remote}/{remote_branch}); '
                             f'HEAD {gitctx.short(head)} differs')
        else:
            sha = head
            notes.append(f'HEAD {gitctx.short(head)} may not be pushed yet: no {remote or "remote"}/{branch} '
                         'tracking branch')
        branch = remote_branch
    if branch is None and tag is None and not explicit:
        raise UserError('HEAD is detached and no branch was given; pass --branch NAME (the branch Flux follows) '
                        'or --revision with a branch or tag')
    if gitctx.is_shallow(root):
        notes.append('this is a shallow clone: a newer commit can only count as containing yours if git knows '
                     'its history')
    target = Target(sha=sha, repository=url, branch=branch, tag=tag, explicit_sources=explicit)
    return GitContext(root, target, remote, tuple(notes))


def pushed_branch_containing(root: Path, remote: str | None, branch: str | None, sha: str) -> str | None:
    """The remote branch the current branch pushes to, when it contains the commit; else None."""
    if not remote or not branch:
        return None
    upstream = gitctx.upstream(root, branch)
    remote_branch = upstream[1] if upstream else branch
    pushed = gitctx.remote_tracking_commit(root, remote, remote_branch)
    return remote_branch if pushed and gitctx.is_ancestor(root, sha, pushed) else None


def ancestry(root: Path, remote: str | None, target_sha: str) -> functools._lru_cache_wrapper[bool | None]:
    """contains(commit): is the target that commit or an ancestor of it? Fetches once when git lacks it."""
    fetched = False

    @functools.lru_cache(maxsize=1024)
    def contains(commit: str) -> bool | None:
        nonlocal fetched
        if commit == target_sha:
            return True
        if not gitctx.has_commit(root, commit) and remote and not fetched:
            fetched = True
            gitctx.fetch(root, remote, timeout=20)
        return gitctx.is_ancestor(root, target_sha, commit)

    return contains


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    root = None
    try:
        root = gitctx.repo_root(args.repo_path)
    except UserError:
        if args.config is None and args.repo_path is not None:
            raise
    config = settings(args, root)
    context = git_context(args, config)
    return follow_target(context, config, started)


def affected_scope(context: GitContext) -> Callable[[str, Tracker], Callable[[ObjectKey], bool]]:
    """--scope affected: the change is what lies between what Flux has now and the target."""
    from flux_monitor_hook import plan

    def scope_for(cluster: str, tracker: Tracker) -> Callable[[ObjectKey], bool]:
        target = context.target
        base = None
        for source in tracker.sources():
            current = extract_hash(source.revision) if source.revision else ''
            if source.key.cluster == cluster and current != target.sha and \
                    gitctx.has_commit(context.root, current) and gitctx.is_ancestor(context.root, current, target.sha):
                base = current
        if base is None:
            base = plan.default_base(context.root, target.sha, context.remote, target.branch)
        followed = {s.key.ref for s in tracker.sources() if s.key.cluster == cluster}
        return plan.affected_scope(context.root, target.sha, base, cluster,
                                   tracker.objects_of(cluster, 'Kustomization'),
                                   tracker.objects_of(cluster, 'HelmRelease'),
                                   tracker.objects_of(cluster, 'ArtifactGenerator'), followed)

    return scope_for


def follow_target(context: GitContext, config: Config, started: float | None = None) -> int:
    return follow_revision(context, config, started).exit_code


def follow_revision(context: GitContext, config: Config, started: float | None = None,
                    stream: TextIO | None = None) -> Summary:
    """The whole wait for one revision, rendered to stream (stdout by default); the verdict."""
    from flux_monitor_hook import cluster as kube
    from flux_monitor_hook import follow
    from flux_monitor_hook.render import make_renderer

    started = started if started is not None else time.monotonic()
    contexts = config.cluster.selected_contexts
    renderer = make_renderer(config.output.format, config.output.colors, timestamps=config.output.timestamps,
                             verbosity=config.verbosity, started=started, multi_cluster=len(contexts) > 1,
                             stream=stream)
    target = context.target
    where = target.tag or target.branch or 'explicit sources'
    renderer.note(f'following {gitctx.short(target.sha)} of {redact_url(target.repository) or "the named sources"} '
                  f'({where})')
    for note in context.notes:
        renderer.note(note)
    policy = kube.RetryPolicy(config.error_handling.retry_attempts, config.error_handling.retry_delay,
                              started + config.timeout)
    try:
        clusters = []
        for name in contexts:
            cluster = kube.connect(config.cluster.kubeconfig, name)
            kube.discover(cluster, policy)
            clusters.append(cluster)
        options = follow.Options(timeout=config.timeout,
                                 trigger=config.trigger_reconcile, fail_fast=config.error_handling.fail_fast,
                                 namespaces=config.cluster.namespaces, retry=policy,
                                 kustomizations=config.monitor.kustomizations,
                                 helmreleases=config.monitor.helmreleases,
                                 scope_for=affected_scope(context) if config.scope == 'affected' else None)
        session = follow.Session(clusters, target, ancestry(context.root, context.remote, target.sha), renderer,
                                 options, branch=target.branch, started=started)
        session.check_flux()
        summary = session.run()
    except UserError as error:
        if config.output.format == 'json':
            # Whoever reads the JSON Lines gets a summary whatever happens; stderr has the same line.
            from flux_monitor_hook.summary import Summary

            renderer.summary(Summary(result='error', revision=target.sha, branch=target.branch,
                                     repository=redact_url(target.repository), duration=time.monotonic() - started,
                                     error=str(error), error_code=error.exit_code))
        raise
    renderer.summary(summary)
    return summary


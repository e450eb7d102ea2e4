"""`flux-monitor plan`: which Flux resources a revision would affect, and why, without waiting for anything."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from flux_monitor_hook import exit_codes
from flux_monitor_hook import gitctx
from flux_monitor_hook import plan
from flux_monitor_hook.commands import wait
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.git_urls import redact_url
from flux_monitor_hook.objects import Obj

if TYPE_CHECKING:
    from flux_monitor_hook.cluster import Cluster
    from flux_monitor_hook.cluster import RetryPolicy

# Listed to match sources as `wait` does (plan.followed_sources), then the resources to assess.
_SOURCE_KINDS = ('GitRepository', 'OCIRepository', 'ArtifactGenerator', 'ExternalArtifact')
_RESOURCE_KINDS = ('Kustomization', 'HelmRelease')
_SHOWN_FILES = 20  # changed files listed in the text format; JSON has them all


@dataclasses.dataclass(frozen=True)
class _ClusterPlan:
    cluster: str
    sources: list[tuple[str, str, str]]
    resources: list[plan.Affected]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    wait.add_git_arguments(parser, 'Commit, branch or tag to plan, pushed or not (default: HEAD).')
    wait.add_cluster_arguments(parser)
    parser.add_argument('--format', choices=('text', 'json'), default='text')
    parser.add_argument('--config', type=Path, help='Settings file (default: .flux-monitor.yaml at the repository '
                                                    'root).')


def run(args: argparse.Namespace) -> int:
    from flux_monitor_hook import cluster as kube

    root = gitctx.repo_root(args.repo_path)
    if args.revision in ('HEAD', '@'):  # the default; as a revision, wait's git context takes it for a branch name
        args.revision = None
    # wait's settings and git context, without wait's own flags (--format here is plan's).
    shared = argparse.Namespace(**{**vars(args), 'timeout': None, 'verbosity': None, 'scope': None,
                                   'no_trigger': False, 'fail_fast': None, 'format': None, 'color': None,
                                   'timestamps': None})
    config = wait.settings(shared, root)
    context = wait.git_context(shared, config)
    target = context.target
    notes = []
    if args.revision is None:  # plan what is committed, pushed or not; wait's default is what was pushed
        target = dataclasses.replace(target, sha=gitctx.resolve_commit(root, 'HEAD'))
    base = plan.default_base(root, target.sha, context.remote, target.branch)
    if base is None:
        shallow = ' (or shallow history stops there)' if gitctx.is_shallow(root) else ''
        notes.append(f'{gitctx.short(target.sha)} has no parent{shallow}: every file counts as changed')
    changed = gitctx.changed_files(root, base, target.sha)

    policy = kube.RetryPolicy(config.error_handling.retry_attempts, config.error_handling.retry_delay,
                              time.monotonic() + config.timeout)
    plans = []
    with contextlib.ExitStack() as stack:
        new = stack.enter_context(gitctx.TreeReader(root, target.sha))
        old = stack.enter_context(gitctx.TreeReader(root, base)) if base else None
        change = plan.Change(new, old, changed)
        for name in config.cluster.selected_contexts:
            cluster = kube.connect(config.cluster.kubeconfig, name)
            listed = _list(cluster, policy, config.cluster.namespaces)
            sources = plan.followed_sources(target, cluster.name, [obj for kind in _SOURCE_KINDS
                                                                   for obj in listed[kind]])
            resources = change.assess(cluster.name, listed['Kustomization'], listed['HelmRelease'],
                                      listed['ArtifactGenerator'], sources)
            plans.append(_ClusterPlan(cluster.name, sorted(sources), resources))
    if not any(p.sources for p in plans):
        where = target.tag or target.branch or 'the named sources'
        notes.append(f'no Flux source follows {redact_url(target.repository) or "the named sources"} ({where})')
    if args.format == 'json':
        print(json.dumps(_json(target.sha, base, changed, plans, notes)))
    else:
        _print_text(target.sha, target.branch or target.tag, base, changed, plans, notes)
    return exit_codes.SUCCESS


def _list(cluster: Cluster, policy: RetryPolicy, namespaces: Sequence[str]) -> dict[str, list[Obj]]:
    """Every object of the kinds plan reads, in all namespaces (or the given ones)."""
    from flux_monitor_hook import cluster as kube

    apis = kube.discover(cluster, policy)
    if 'Kustomization' not in apis:
        raise UserError(f'cluster {cluster.name}: the Flux APIs are not served; install Flux (flux install or flux '
                        'bootstrap)', exit_codes.UNAVAILABLE)
    listed: dict[str, list[Obj]] = {}
    for kind in (*_SOURCE_KINDS, *_RESOURCE_KINDS):
        api = apis.get(kind)
        listed[kind] = []
        if api is None:  # e.g. no source-watcher: no ArtifactGenerators
            continue
        for namespace in namespaces or (None,):
            try:
                listed[kind] += kube.list_objects(cluster, api, namespace, policy)[0]
            except kube.ApiFailure as failure:
                raise kube.unavailable(cluster, failure) from None
    return listed


def _json(revision: str, base: str | None, changed: list[str], plans: list[_ClusterPlan],
          notes: list[str]) -> dict[str, Any]:
    return {
        'revision': revision,
        'base': base,
        'changed_files': changed,
        'sources': [{'kind': kind, 'namespace': namespace, 'name': name, 'cluster': p.cluster}
                    for p in plans for kind, namespace, name in p.sources],
        'resources': [{'kind': r.key.kind, 'namespace': r.key.namespace, 'name': r.key.name, 'cluster': r.key.cluster,
                       'affected': r.affected, 'why': list(r.why)} for p in plans for r in p.resources],
        'notes': notes,
    }


def _print_text(revision: str, ref: str | None, base: str | None, changed: list[str], plans: list[_ClusterPlan],
                notes: list[str]) -> None:
    against = f'against {gitctx.short(base)}' if base else 'against nothing (no parent)'
    print(f'plan for {gitctx.short(revision)}{f" ({ref})" if ref else ""} {against}: '
          f'{len(changed)} changed file{"" if len(changed) == 1 else "s"}')
    for path in changed[:_SHOWN_FILES]:
        print(f'  {path}')
    if len(changed) > _SHOWN_FILES:
        print(f'  … and {len(changed) - _SHOWN_FILES} more (--format json lists them all)')
    for note in notes:
        print(f'note: {note}')
    several = len(plans) > 1
    for cluster_plan in plans:
        where = f' in {cluster_plan.cluster}' if several else ''
        print(f'sources{where}:' if cluster_plan.sources else f'sources{where}: none')
        for kind, namespace, name in cluster_plan.sources:
            print(f'  {kind}/{namespace}/{name}')
        affected = sum(r.affected for r in cluster_plan.resources)
        print(f'resources{where}: {affected} of {len(cluster_plan.resources)} affected')
        for result in cluster_plan.resources:
            print(f'  {"affected  " if result.affected else "unaffected"}  {result.key}')
            if result.affected:
                print(f'              {result.because}')

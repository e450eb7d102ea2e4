"""`flux-monitor check`: a checklist of everything `wait` needs, from the kubeconfig to triggering."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from flux_monitor_hook import exit_codes
from flux_monitor_hook import gitctx
from flux_monitor_hook.commands import wait
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.git_urls import redact_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--repo-path', type=Path)
    parser.add_argument('--remote')
    parser.add_argument('--branch')
    parser.add_argument('--context', action='append', default=[])
    parser.add_argument('--kubeconfig', type=Path)
    parser.add_argument('--namespace', action='append', default=[])
    parser.add_argument('--config', type=Path)


class _Checklist:
    def __init__(self) -> None:
        self.failed = False

    def ok(self, text: str) -> None:
        print(f'✔ {text}', flush=True)

    def fail(self, text: str) -> None:
        self.failed = True
        print(f'✗ {text}', flush=True)

    def warn(self, text: str) -> None:
        print(f'! {text}', flush=True)


def run(args: argparse.Namespace) -> int:
    from flux_monitor_hook import cluster as kube
    from flux_monitor_hook import follow
    from flux_monitor_hook.tracker import Tracker

    checks = _Checklist()
    # check shares wait's settings and git context, without wait's flags.
    for flag in ('revision', 'timeout', 'source', 'scope', 'format', 'color', 'timestamps', 'verbosity'):
        setattr(args, flag, None)
    args.no_trigger, args.fail_fast = False, None
    try:
        root = gitctx.repo_root(args.repo_path)
    except UserError:
        root = None
    config = wait.settings(args, root)
    context = wait.git_context(args, config) if root else None
    if context is not None:
        target = context.target
        checks.ok(f'git: {target.branch or target.tag} at {gitctx.short(target.sha)}, remote '
                  f'{redact_url(target.repository)}')
    else:
        checks.warn('not in a git repository: sources cannot be matched to a remote')
    policy = kube.RetryPolicy(2, 0.5, time.monotonic() + 30)
    for name in config.cluster.selected_contexts:
        try:
            cluster = kube.connect(config.cluster.kubeconfig, name)
        except UserError as error:
            checks.fail(str(error))
            continue
        host = getattr(cluster.api_client.configuration, 'host', '')
        checks.ok(f'kubeconfig context {cluster.name} ({host})')
        try:
            apis = kube.discover(cluster, policy)
        except UserError as error:
            checks.fail(str(error))
            continue
        checks.ok(f'API server reachable and authorised as {cluster.name}')
        if 'Kustomization' not in apis:
            checks.fail('Flux CRDs are not served: install Flux (flux install or flux bootstrap)')
            continue
        checks.ok('Flux APIs served: ' + ', '.join(f'{a.kind} {a.version}' for a in apis.values()))
        line, healthy = follow.flux_health(cluster, policy)
        (checks.ok if healthy else checks.fail)(line)
        if context is None:
            continue
        tracker = Tracker(context.target, lambda commit: None)
        for kind in ('GitRepository', 'ArtifactGenerator', 'ExternalArtifact', 'OCIRepository'):
            api = apis.get(kind)
            if api is None:
                continue
            try:
                items, _ = kube.list_objects(cluster, api, None, policy)
            except kube.ApiFailure as failure:
                checks.fail(f'cannot list {api.plural}: {failure}')
                continue
            tracker.observe_all(cluster.name, items, 0.0)
        sources = tracker.sources()
        if not sources:
            checks.warn(f'no Flux source follows {redact_url(context.target.repository)} '
                        f'({context.target.branch or context.target.tag}): wait would have nothing to follow')
        for source in sources:
            checks.ok(f'{source.key} follows this repository and branch')
            api = apis[source.key.kind]
            try:
                cluster.custom().patch_namespaced_custom_object(
                    api.group, api.version, source.key.namespace, api.plural, source.key.name, {'metadata': {}},
                    dry_run='All', _request_timeout=10)
                checks.ok(f'may request reconciliation of {source.key}')
            except Exception as error:  # a refusal here is information, whatever its type
                status = getattr(error, 'status', None)
                if status == 403:
                    checks.warn(f'not allowed to patch {source.key}: wait will not trigger reconciliation')
                else:
                    checks.warn(f'could not check patch permission on {source.key}: {status or error}')
    return exit_codes.UNAVAILABLE if checks.failed else exit_codes.SUCCESS

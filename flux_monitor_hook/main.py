"""Command-line entry point.

Subcommand modules are imported only when their command runs, so that `--help`, argument errors and the
git-hook fast paths never pay for importing the kubernetes client.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from flux_monitor_hook import exit_codes
from flux_monitor_hook.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits 2, which is our "timed out"; bad usage is 3 here.
        self.exit(exit_codes.USAGE, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def _add_sandbox_parser(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    sandbox = subparsers.add_parser('sandbox', help='Run a local Kubernetes API server with simulated Flux.')
    sandbox_sub = sandbox.add_subparsers(dest='sandbox_command', required=True, parser_class=_Parser)
    up = sandbox_sub.add_parser('up', help='Start the sandbox in the foreground until Ctrl+C or SIGTERM.')
    up.add_argument('--repo', required=True, help='Git repository the simulated Flux fetches from.')
    up.add_argument('--cluster-path', required=True, help='Path in the repository, as for flux bootstrap.')
    up.add_argument('--kubeconfig', required=True, help='Where to write the kubeconfig for the sandbox.')
    up.add_argument('--branch', default='main')
    up.add_argument('--port', type=int, default=0, help='0 picks a free port.')
    up.add_argument('--speed', type=float, default=1.0, help='Scale every interval and delay (10 = ten times faster).')
    up.add_argument('--tls', action='store_true', help='Serve HTTPS with a throwaway CA.')
    up.add_argument('--faults', default='', help='Fault injection spec, see docs/sandbox.md.')
    up.add_argument('--strict-kinds', action='store_true', help='Fail on kinds without a CRD, as a real cluster does.')
    up.add_argument('--old-apis', action='store_true', help='Also serve v1beta2/v2beta1/v2beta2 Flux APIs.')
    up.add_argument('--seed', type=int, default=0)
    up.add_argument('--flux-instance', action='store_true', help='Also create a FluxInstance, as Flux Operator does.')
    up.add_argument('--remote', action='append', default=[], metavar='URL=PATH',
                    help='Serve a local repository for a remote URL that a manifest names (repeatable).')


def _add_explain_parser(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    explain = subparsers.add_parser('explain', help='Explain a Flux failure message.')
    explain.add_argument('--kind', help='Flux kind that reported the message (Kustomization, HelmRelease, ...).')
    explain.add_argument('--reason', help='Condition reason, e.g. ReconciliationFailed.')
    explain.add_argument('--format', choices=('text', 'json'), default='text')
    explain.add_argument('message', nargs='?', default='-', help='The message, or - (default) to read stdin.')


def build_parser() -> _Parser:
    from flux_monitor_hook.commands import check
    from flux_monitor_hook.commands import demo
    from flux_monitor_hook.commands import follower
    from flux_monitor_hook.commands import hook
    from flux_monitor_hook.commands import plan
    from flux_monitor_hook.commands import post_receive
    from flux_monitor_hook.commands import status
    from flux_monitor_hook.commands import stop
    from flux_monitor_hook.commands import wait

    parser = _Parser(prog='flux-monitor', description='Follow a pushed commit until Flux has landed it.')
    subparsers = parser.add_subparsers(dest='command', required=True, parser_class=_Parser)
    wait.add_arguments(subparsers.add_parser('wait', help='Wait until Flux has landed a git revision.'))
    demo.add_arguments(subparsers.add_parser('demo', help='Run the whole flow against a local Flux sandbox.'))
    check.add_arguments(subparsers.add_parser('check', help='Check the kubeconfig, the cluster, Flux and the sources.'))
    plan.add_arguments(subparsers.add_parser('plan', help='Show which Flux resources a revision affects, and why.'))
    _add_explain_parser(subparsers)
    _add_sandbox_parser(subparsers)
    hook.add_arguments(subparsers.add_parser('hook', help='The pre-commit hook entry (see README).'))
    follower.add_arguments(subparsers.add_parser('follower', help='The background follower a hook starts.'))
    status.add_arguments(subparsers.add_parser('status', help='The latest result per branch; --wait attaches.'))
    stop.add_arguments(subparsers.add_parser('stop', help='Stop the background followers.'))
    subparsers.add_parser('push', help='git push, then wait for what Flux follows (git push arguments).',
                          add_help=False)
    post_receive.add_arguments(subparsers.add_parser('post-receive', help="For a bare repository's post-receive "
                                                                          'hook.'))
    return parser


# Each command's module, imported only when that command runs.
_COMMANDS = {
    'wait': 'flux_monitor_hook.commands.wait',
    'check': 'flux_monitor_hook.commands.check',
    'plan': 'flux_monitor_hook.commands.plan',
    'demo': 'flux_monitor_hook.commands.demo',
    'explain': 'flux_monitor_hook.commands.explain',
    'sandbox': 'flux_monitor_hook.sandbox.cli',
    'hook': 'flux_monitor_hook.commands.hook',
    'follower': 'flux_monitor_hook.commands.follower',
    'status': 'flux_monitor_hook.commands.status',
    'stop': 'flux_monitor_hook.commands.stop',
    'push': 'flux_monitor_hook.commands.push',
    'post-receive': 'flux_monitor_hook.commands.post_receive',
}


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(_COMMANDS[args.command])
    return int(module.run(args))


def _hook_parser() -> _Parser:
    """Only the hook's own arguments: git's fast path must not import what the other commands need."""
    from flux_monitor_hook.commands import hook

    parser = _Parser(prog='flux-monitor hook', description='The pre-commit hook (pre-push, post-commit, by hand).')
    hook.add_arguments(parser)
    parser.set_defaults(command='hook')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ['hook']:
        args = _hook_parser().parse_args(arguments[1:])
    elif arguments[:1] == ['push']:
        # Everything after `push` belongs to git push, options included.
        args = argparse.Namespace(command='push', git_args=arguments[1:])
    else:
        args = build_parser().parse_args(arguments)
    try:
        return _run(args)
    except UserError as error:
        print(f'flux-monitor: error: {" ".join(str(error).split())}', file=sys.stderr)  # one line, always
        return error.exit_code
    except KeyboardInterrupt:
        print('flux-monitor: interrupted', file=sys.stderr)
        return exit_codes.INTERRUPTED


if __name__ == '__main__':
    raise SystemExit(main())

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
    from flux_monitor_hook.commands import wait

    parser = _Parser(prog='flux-monitor', description='Follow a pushed commit until Flux has landed it.')
    subparsers = parser.add_subparsers(dest='command', required=True, parser_class=_Parser)
    wait.add_arguments(subparsers.add_parser('wait', help='Wait until Flux has landed a git revision.'))
    demo.add_arguments(subparsers.add_parser('demo', help='Run the whole flow against a local Flux sandbox.'))
    check.add_arguments(subparsers.add_parser('check', help='Check the kubeconfig, the cluster, Flux and the sources.'))
    _add_explain_parser(subparsers)
    _add_sandbox_parser(subparsers)
    return parser


# Each command's module, imported only when that command runs.
_COMMANDS = {
    'wait': 'flux_monitor_hook.commands.wait',
    'check': 'flux_monitor_hook.commands.check',
    'demo': 'flux_monitor_hook.commands.demo',
    'explain': 'flux_monitor_hook.commands.explain',
    'sandbox': 'flux_monitor_hook.sandbox.cli',
}


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(_COMMANDS[args.command])
    return int(module.run(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UserError as error:
        print(f'flux-monitor: error: {error}', file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print('flux-monitor: interrupted', file=sys.stderr)
        return exit_codes.INTERRUPTED


if __name__ == '__main__':
    raise SystemExit(main())

"""`flux-monitor sandbox up`: run the sandbox in the foreground until Ctrl+C or SIGTERM."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from flux_monitor_hook import exit_codes
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.git_urls import redact_text
from flux_monitor_hook.sandbox.faults import FaultSpecError
from flux_monitor_hook.sandbox.faults import parse_fault_spec
from flux_monitor_hook.sandbox.gitsource import is_repository
from flux_monitor_hook.sandbox.gitsource import local_path_for_url
from flux_monitor_hook.sandbox.sandbox import Sandbox


def _remotes(pairs: list[str]) -> dict[str, str]:
    remotes = {}
    for pair in pairs:
        url, sep, path = pair.partition('=')
        if not sep or not url or not path:
            raise UserError(f'--remote {redact_text(pair)!r} is not URL=PATH; e.g. --remote '
                            'https://github.com/org/app=./app.git')
        remotes[url] = str(Path(path).resolve())
    return remotes


def run(args: argparse.Namespace) -> int:
    repo_path = local_path_for_url(args.repo)
    if repo_path is None or not is_repository(repo_path):
        raise UserError(f'--repo {redact_text(args.repo)!r} is not a local git repository; give a path or file:// '
                        'URL')
    if args.speed <= 0:
        raise UserError(f'--speed {args.speed} must be above 0; e.g. --speed 10 runs ten times faster')
    try:
        faults = parse_fault_spec(args.faults)
    except FaultSpecError as error:
        raise UserError(f'--faults: {error}') from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sandbox = Sandbox(
            repo=str(Path(repo_path).resolve()), cluster_path=args.cluster_path, branch=args.branch, port=args.port,
            speed=args.speed, tls=args.tls, faults=faults, strict_kinds=args.strict_kinds, old_apis=args.old_apis,
            seed=args.seed, kubeconfig_path=Path(args.kubeconfig), flux_instance=args.flux_instance,
            remotes=_remotes(args.remote),
        )
    except RuntimeError as error:
        raise UserError(str(error)) from None
    try:
        sandbox.start()
    except OSError as error:
        raise UserError(f'cannot listen on 127.0.0.1:{args.port}: {error.strerror}; pick another --port or 0',
                        exit_codes.UNAVAILABLE) from None
    try:
        print(f'flux sandbox API server at {sandbox.url}', flush=True)
        print(f'kubeconfig written to {sandbox.kubeconfig_path} (context flux-sandbox)', flush=True)
        print(f'export KUBECONFIG={sandbox.kubeconfig_path}', flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
        print('flux sandbox stopped', file=sys.stderr, flush=True)
    return exit_codes.SUCCESS

"""`flux-monitor explain`: diagnose a Flux failure message given as an argument or on stdin."""
from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from flux_monitor_hook import exit_codes
from flux_monitor_hook.errors import UserError
from flux_monitor_hook.explain import Diagnosis
from flux_monitor_hook.explain import explain

# explain() reads only a prefix anyway; this just keeps `cat huge.log | flux-monitor explain` from
# holding the whole file in memory.
MAX_INPUT_BYTES = 8 * 1024 * 1024


def _read_message(argument: str) -> str:
    if argument != '-':
        # argv may hold undecodable bytes as surrogates; round-trip them to U+FFFD like stdin.
        return argument.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
    if sys.stdin is None:
        return ''
    if sys.stdin.isatty():
        print('flux-monitor: reading the message from stdin, end with Ctrl-D', file=sys.stderr)
    data = sys.stdin.buffer.read(MAX_INPUT_BYTES)
    return data.decode('utf-8', errors='replace')


def format_text(diagnosis: Diagnosis) -> str:
    lines = [f'✗ {diagnosis.category}: {diagnosis.summary}']
    if diagnosis.object:
        lines.append(f'  object: {diagnosis.object}')
    if len(diagnosis.objects) > 1:
        lines.append(f'  objects: {", ".join(diagnosis.objects)}')
    if diagnosis.field:
        lines.append(f'  field: {diagnosis.field}')
    if diagnosis.suggestions:
        lines.append('  next steps:')
        lines.extend(f'    - {suggestion}' for suggestion in diagnosis.suggestions)
    if diagnosis.docs:
        lines.append('  docs:')
        lines.extend(f'    {url}' for url in diagnosis.docs)
    return '\n'.join(lines)


def _write(stream: TextIO, text: str) -> None:
    # A pasted message may carry characters the terminal's encoding cannot show; never fail on them.
    encoding = stream.encoding or 'utf-8'
    stream.write(text.encode(encoding, 'replace').decode(encoding) + '\n')
    stream.flush()


def run(args: argparse.Namespace) -> int:
    message = _read_message(args.message)
    if not message.strip():
        raise UserError('explain: the message is empty; pass it as an argument or pipe it in, '
                        'e.g. kubectl -n NS get kustomization NAME -o jsonpath='
                        '\'{.status.conditions[?(@.type=="Ready")].message}\' '
                        '| flux-monitor explain --kind Kustomization',
                        exit_codes.USAGE)
    diagnosis = explain(message, kind=args.kind, reason=args.reason)
    if args.format == 'json':
        _write(sys.stdout, json.dumps(diagnosis.to_json(), ensure_ascii=False))
    else:
        _write(sys.stdout, format_text(diagnosis))
    return exit_codes.SUCCESS

"""Renderers: structured (live, for people), simple (one plain line per change) and json (JSON Lines)."""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Protocol
from typing import TextIO

from flux_monitor_hook.revisions import short_revision
from flux_monitor_hook.summary import Summary
from flux_monitor_hook.summary import status_json
from flux_monitor_hook.tracker import State
from flux_monitor_hook.tracker import Status
from flux_monitor_hook.tracker import Transition

# The flux CLI's symbols.
SYMBOLS = {State.PENDING: '◎', State.LANDED: '✔', State.FAILED: '✗', State.BLOCKED: '✗', State.SUSPENDED: '⏸',
           State.SKIPPED: '–'}
WORDS = {State.PENDING: 'waiting', State.LANDED: 'landed', State.FAILED: 'failed', State.BLOCKED: 'blocked',
         State.SUSPENDED: 'suspended', State.SKIPPED: 'skipped'}


def use_color(mode: str, stream: TextIO) -> bool:
    if mode == 'always':
        return True
    if mode == 'never' or os.environ.get('NO_COLOR') or os.environ.get('TERM') == 'dumb':
        return False
    return stream.isatty()


class Palette:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            import colorama

            colorama.just_fix_windows_console()

    def paint(self, text: str, color: str) -> str:
        if not self.enabled:
            return text
        codes = {'green': '\x1b[32m', 'red': '\x1b[31m', 'yellow': '\x1b[33m', 'cyan': '\x1b[36m',
                 'dim': '\x1b[2m', 'bold': '\x1b[1m'}
        return f'{codes[color]}{text}\x1b[0m'

    def state(self, state: State, text: str) -> str:
        color = {State.LANDED: 'green', State.FAILED: 'red', State.BLOCKED: 'red', State.PENDING: 'yellow',
                 State.SUSPENDED: 'dim', State.SKIPPED: 'dim'}[state]
        return self.paint(text, color)


class Renderer(Protocol):
    def header(self, line: str, ok: bool = True) -> None: ...
    def note(self, line: str) -> None: ...
    def start(self, statuses: list[Status]) -> None: ...
    def transition(self, transition: Transition, statuses: list[Status]) -> None: ...
    def tick(self, statuses: list[Status]) -> None: ...
    def summary(self, summary: Summary) -> None: ...


def _clock() -> str:
    return datetime.now(timezone.utc).strftime('%H:%M:%S')


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f'{seconds:.1f}s'
    minutes, secs = divmod(int(seconds), 60)
    return f'{minutes}m{secs:02d}s'


def _cluster_prefix(status: Status, multi_cluster: bool) -> str:
    return f'[{status.key.cluster}] ' if multi_cluster else ''


class StructuredRenderer:
    """The default on a terminal: a live block of one line per resource, then a summary."""

    def __init__(self, stream: TextIO, *, color: bool, live: bool, timestamps: bool, verbosity: str,
                 started: float, multi_cluster: bool = False) -> None:
        self.stream = stream
        self.palette = Palette(color)
        self.live = live
        self.timestamps = timestamps
        self.quiet = verbosity == 'quiet'
        self.verbose = verbosity == 'verbose'
        self.started = started
        self.multi_cluster = multi_cluster
        self._drawn = 0

    def _write(self, text: str) -> None:
        self.stream.write(text + '\n')
        self.stream.flush()

    def _stamp(self) -> str:
        return f'{_clock()} ' if self.timestamps else ''

    def header(self, line: str, ok: bool = True) -> None:
        if not self.quiet:
            mark = self.palette.paint('✓', 'green') if ok else self.palette.paint('!', 'yellow')
            self._write(f'{self._stamp()}{mark} {line}')

    def note(self, line: str) -> None:
        if not self.quiet:
            self._clear()
            self._write(f'{self._stamp()}{self.palette.paint("►", "cyan")} {line}')

    def _line(self, status: Status) -> str:
        elapsed = (status.duration if status.duration is not None else time.monotonic() - self.started)
        revision = short_revision(status.revision) if status.revision else ''
        text = status.detail if status.state in (State.PENDING, State.LANDED, State.SUSPENDED, State.SKIPPED) \
            else status.reason
        if status.preexisting:
            text += ' (pre-existing)'
        depends = ''
        if status.depends_on:
            depends = self.palette.paint(' after ' + ', '.join(d.name for d in status.depends_on), 'dim')
        symbol = self.palette.state(status.state, SYMBOLS[status.state])
        name = f'{_cluster_prefix(status, self.multi_cluster)}{status.key}'
        word = self.palette.state(status.state, f'{WORDS[status.state]:<9}')
        return f'  {symbol} {name:<48} {word} {_elapsed(elapsed):>7}  {revision:<20} {text}{depends}'.rstrip()

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write(f'\x1b[{self._drawn}F\x1b[J')
            self._drawn = 0

    def _draw(self, statuses: list[Status]) -> None:
        self._clear()
        lines = [self._line(s) for s in statuses]
        for line in lines:
            self.stream.write(line + '\n')
        self.stream.flush()
        self._drawn = len(lines)

    def start(self, statuses: list[Status]) -> None:
        """Everything is listed: say how much there is to follow, and show where each thing stands."""
        if self.quiet:
            return
        resources = sum(1 for s in statuses if s.role != 'source')
        self._write(f'{self._stamp()}{self.palette.paint("→", "cyan")} Monitoring reconciliation for '
                    f'{resources} resource{"s" if resources != 1 else ""}...')
        if self.live:
            self._draw(statuses)
        else:
            for status in statuses:
                self._write(f'{self._stamp()}{self._line(status)}')

    def transition(self, transition: Transition, statuses: list[Status]) -> None:
        if self.quiet:
            return
        if self.live:
            self._draw(statuses)
        else:
            self._write(f'{self._stamp()}{self._line(transition.status)}')

    def tick(self, statuses: list[Status]) -> None:
        if self.live and not self.quiet and self._drawn:
            self._draw(statuses)

    def summary(self, summary: Summary) -> None:
        if self.live and not self.quiet:
            self._draw(summary.sources + summary.resources)
            self._drawn = 0
        for note in summary.notes:
            self.note(note)
        if self.verbose:
            self._inventories(summary)
        if not self.quiet:
            self._timeline(summary)
        self._verdict(summary)

    def _inventories(self, summary: Summary) -> None:
        """What each Kustomization applied, as `flux tree kustomization` shows it."""
        for name, entries in summary.inventories.items():
            self._write('')
            self._write(f'  {name}')
            for index, entry in enumerate(entries):
                branch = '└──' if index == len(entries) - 1 else '├──'
                self._write(f'  {branch} {entry}')

    def _timeline(self, summary: Summary) -> None:
        items = sorted((s for s in summary.sources + summary.resources if s.duration is not None),
                       key=lambda s: s.duration or 0.0)
        if not items or summary.duration <= 0:
            return
        total = max(summary.duration, 0.001)
        width = 30
        self._write('')
        self._write(self.palette.paint(f'  timeline since flux-monitor started (0 → {_elapsed(total)})', 'dim'))
        for status in items:
            end = status.duration or 0.0
            cells = max(1, round(width * end / total))
            bar = self.palette.state(status.state, '█' * cells) + ' ' * (width - cells)
            self._write(f'  {_cluster_prefix(status, self.multi_cluster)}{status.key!s:<48} {bar} {_elapsed(end)}')

    def _verdict(self, summary: Summary) -> None:
        revision = short_revision(summary.revision)
        if summary.result == 'succeeded':
            self._write(f'\n✅ All resources reconciled successfully ({revision} in {_elapsed(summary.duration)})')
            return
        if summary.result == 'no-sources':
            self._write(f'✅ No Flux source follows {summary.repository} ({summary.branch}); nothing to wait for')
            return
        if summary.result == 'timeout':
            self._write(f'\n⏱  Timed out after {_elapsed(summary.duration)} waiting for {revision}; still pending:')
            for status in summary.sources + summary.resources:
                if status.state is State.PENDING:
                    self._write(f'  ◎ {_cluster_prefix(status, self.multi_cluster)}{status.key}: {status.detail} '
                                f'(for {_elapsed(summary.duration)})')
            return
        if summary.result == 'interrupted':
            self._write('\nInterrupted; still pending:')
            for status in summary.sources + summary.resources:
                if status.state is State.PENDING:
                    self._write(f'  ◎ {_cluster_prefix(status, self.multi_cluster)}{status.key}: {status.detail}')
            return
        self._write(f'\n{self.palette.paint("❌ Reconciliation failed", "red")} for {revision}')
        for failure in summary.failures:
            status = failure.status
            diagnosis = failure.diagnosis
            tag = ' (pre-existing: it failed the same way before this revision)' if status.preexisting else ''
            self._write(f'  {self.palette.paint("✗", "red")} {_cluster_prefix(status, self.multi_cluster)}'
                        f'{status.key}{tag}')
            self._write(f'    reason:   {status.reason}')
            if diagnosis.object:
                field = f'  field: {diagnosis.field}' if diagnosis.field else ''
                self._write(f'    object:   {diagnosis.object}{field}')
            self._write(f'    cause:    {diagnosis.summary}')
            self._write(f'    message:  {status.message}')
            for warning in failure.warnings:
                self._write(f'    event:    {warning}')
            if diagnosis.suggestions:
                self._write(f'    suggest:  {diagnosis.suggestions[0]}')
            if failure.next_steps:
                self._write('    next steps:')
                for step in failure.next_steps:
                    self._write(f'      {step}')
        blocked = [s for s in summary.resources if s.state is State.BLOCKED]
        for status in blocked:
            self._write(f'  {self.palette.paint("✗", "red")} {_cluster_prefix(status, self.multi_cluster)}'
                        f'{status.key} blocked: {status.message}')
        # Without --fail-fast the wait can end at its timeout with a failure known and other things pending.
        for status in summary.sources + summary.resources:
            if status.state is State.PENDING:
                self._write(f'  ◎ {_cluster_prefix(status, self.multi_cluster)}{status.key} still pending: '
                            f'{status.detail}')


class SimpleRenderer:
    """One plain line per state change: no colours, no symbols, no cursor movement."""

    def __init__(self, stream: TextIO, *, timestamps: bool, verbosity: str, multi_cluster: bool = False) -> None:
        self.stream = stream
        self.timestamps = timestamps
        self.quiet = verbosity == 'quiet'
        self.multi_cluster = multi_cluster

    def _name(self, status: Status) -> str:
        return f'{_cluster_prefix(status, self.multi_cluster)}{status.key}'

    def _write(self, text: str) -> None:
        stamp = f'{_clock()} ' if self.timestamps else ''
        self.stream.write(f'{stamp}{text}\n')
        self.stream.flush()

    def header(self, line: str, ok: bool = True) -> None:
        if not self.quiet:
            self._write(line if ok else f'warning: {line}')

    def note(self, line: str) -> None:
        if not self.quiet:
            self._write(line)

    def start(self, statuses: list[Status]) -> None:
        if self.quiet:
            return
        self._write(f'following {sum(1 for s in statuses if s.role != "source")} resources')
        for status in statuses:
            self._status_line(status)

    def transition(self, transition: Transition, statuses: list[Status]) -> None:
        if not self.quiet and transition.previous is not transition.status.state:
            self._status_line(transition.status)

    def _status_line(self, status: Status) -> None:
        parts = [self._name(status), WORDS[status.state]]
        if status.revision:
            parts.append(short_revision(status.revision))
        if status.reason:
            parts.append(status.reason)
        if status.detail and status.state is State.PENDING:
            parts.append(f'({status.detail})')
        if status.preexisting:
            parts.append('(pre-existing)')
        self._write(' '.join(parts))

    def tick(self, statuses: list[Status]) -> None:
        pass

    def summary(self, summary: Summary) -> None:
        for note in summary.notes:
            self.note(note)
        for failure in summary.failures:
            status = failure.status
            self._write(f'{self._name(status)} failed: {status.reason}: {status.message}')
            self._write(f'  cause: {failure.diagnosis.summary}')
            for step in failure.next_steps:
                self._write(f'  next: {step}')
        for status in summary.sources + summary.resources:
            if status.state is State.BLOCKED:
                self._write(f'{self._name(status)} blocked: {status.message}')
            if status.state is State.PENDING:
                self._write(f'{self._name(status)} still pending: {status.detail}')
        if summary.result == 'no-sources':
            self._write(f'no Flux source follows {summary.repository} ({summary.branch}); nothing to wait for')
        self._write(f'result: {summary.result} (exit {summary.exit_code}) revision {summary.revision} '
                    f'in {summary.duration:.1f}s')


class JsonRenderer:
    """JSON Lines: one object per state change, then one summary object (schema in the README)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def _emit(self, payload: dict[str, Any]) -> None:
        self.stream.write(json.dumps(payload, separators=(',', ':'), ensure_ascii=False) + '\n')
        self.stream.flush()

    def header(self, line: str, ok: bool = True) -> None:
        self._emit({'type': 'note', 'time': _iso(), 'message': line, 'ok': ok})

    def note(self, line: str) -> None:
        self._emit({'type': 'note', 'time': _iso(), 'message': line, 'ok': True})

    def start(self, statuses: list[Status]) -> None:
        for status in statuses:
            self._event(status, None)

    def transition(self, transition: Transition, statuses: list[Status]) -> None:
        if transition.previous is not transition.status.state:
            self._event(transition.status, transition.previous)

    def _event(self, status: Status, previous: State | None) -> None:
        payload = {'type': 'event', 'time': _iso(), 'previous': previous.value if previous else None,
                   **status_json(status), 'detail': status.detail or None}
        payload.pop('diagnosis', None)
        self._emit(payload)

    def tick(self, statuses: list[Status]) -> None:
        pass

    def summary(self, summary: Summary) -> None:
        self._emit(summary.to_json())


def _iso() -> str:
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def make_renderer(output_format: str, color_mode: str, *, timestamps: bool, verbosity: str, started: float,
                  multi_cluster: bool = False, stream: TextIO | None = None) -> Renderer:
    stream = stream or sys.stdout
    if output_format == 'json':
        return JsonRenderer(stream)
    if output_format == 'simple':
        return SimpleRenderer(stream, timestamps=timestamps, verbosity=verbosity, multi_cluster=multi_cluster)
    return StructuredRenderer(stream, color=use_color(color_mode, stream), live=stream.isatty(),
                              timestamps=timestamps, verbosity=verbosity, started=started,
                              multi_cluster=multi_cluster)

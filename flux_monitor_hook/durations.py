"""Durations as users write them (300, 5m, 1h30m) and as Flux prints them (4m30s, 1.2s, 350ms)."""
from __future__ import annotations

import math
import re

HINT = 'use e.g. 300, 300s, 5m or 1h30m'

# Go's time.ParseDuration units, so that anything copied from a Flux manifest or message parses.
_UNIT_SECONDS = {
    'ns': 1e-9,
    'us': 1e-6,
    'µs': 1e-6,  # U+00B5 MICRO SIGN, as Go prints it
    'μs': 1e-6,  # U+03BC GREEK SMALL LETTER MU, which Go also accepts
    'ms': 1e-3,
    's': 1.0,
    'm': 60.0,
    'h': 3600.0,
}
_NUMBER = r'(?:\d+(?:\.\d*)?|\.\d+)'
_PART = re.compile(rf'({_NUMBER})(ns|us|µs|μs|ms|s|m|h)')
_PLAIN_NUMBER = re.compile(rf'[+-]?{_NUMBER}')


def parse_duration(value: str | int | float) -> float:
    """Return `value` in seconds.

    A bare number is seconds; a string may also be a Go duration such as 250ms, 5m or 1h30m.
    Raises ValueError, with a message saying what is accepted, for anything else and for
    negative values.
    """
    # bool is an int subclass, and `timeout: true` is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f'{value!r} is not a duration; {HINT}')
    try:
        seconds = _parse_string(value) if isinstance(value, str) else float(value)
    except OverflowError:
        seconds = math.inf
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f'{value!r} is not a duration; {HINT}')
    if seconds < 0:
        raise ValueError(f'{value!r} is negative; {HINT}')
    return seconds


def _parse_string(value: str) -> float:
    text = value.strip()
    if _PLAIN_NUMBER.fullmatch(text):
        return float(text)
    sign = 1.0
    if text and text[0] in '+-':
        sign = -1.0 if text[0] == '-' else 1.0
        text = text[1:]
    total = 0.0
    position = 0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f'{value!r} is not a duration; {HINT}')
    return sign * total


def format_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String(), which Flux uses: 4m30s, 1h0m0s, 1.2s, 350ms.

    Unlike Go, digits finer than a thousandth of the unit shown are rounded away (1.235s, not
    1.234567891s): for a measured interval they are noise on a terminal.
    """
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f'cannot format {seconds!r} as a duration')
    nanos = round(abs(seconds) * 1e9)
    if nanos >= 1_000_000_000:
        nanos = round(nanos, -6)
    elif nanos >= 1_000_000:
        nanos = round(nanos, -3)
    sign = '-' if seconds < 0 and nanos else ''
    return sign + _format_nanos(nanos)


def _format_nanos(nanos: int) -> str:
    if nanos == 0:
        return '0s'
    if nanos < 1_000:
        return f'{nanos}ns'
    if nanos < 1_000_000:
        return _decimal(nanos, 1_000) + 'µs'
    if nanos < 1_000_000_000:
        return _decimal(nanos, 1_000_000) + 'ms'
    whole_seconds, fraction = divmod(nanos, 1_000_000_000)
    hours, rest = divmod(whole_seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = _decimal(secs * 1_000_000_000 + fraction, 1_000_000_000) + 's'
    if hours or minutes:
        text = f'{minutes}m{text}'
    if hours:
        text = f'{hours}h{text}'
    return text


def _decimal(value: int, unit: int) -> str:
    """`value / unit` without float rounding and without trailing zeros, as Go does."""
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f'{whole}.{fraction:0{digits}d}'.rstrip('0')

from __future__ import annotations

import pytest

from flux_monitor_hook.durations import format_duration
from flux_monitor_hook.durations import parse_duration


@pytest.mark.parametrize(
    ('value', 'expected'),
    (
        (300, 300.0),
        (0, 0.0),
        (1.5, 1.5),
        ('300', 300.0),
        ('  300  ', 300.0),
        ('2.5', 2.5),
        ('300s', 300.0),
        ('5m', 300.0),
        ('1h30m', 5400.0),
        ('1h30m15s', 5415.0),
        ('1.5s', 1.5),
        ('.5s', 0.5),
        ('250ms', 0.25),
        ('2h', 7200.0),
        ('1h0m0s', 3600.0),  # as Go prints it
        ('4m30s', 270.0),
        ('1m1ms', 60.001),
        ('100us', 100e-6),
        ('100µs', 100e-6),
        ('100ns', 100e-9),
        ('0s', 0.0),
        ('+5m', 300.0),
        ('90m', 5400.0),
    ),
)
def test_parse_duration(value, expected):
    assert parse_duration(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    'value',
    ('', '   ', '5 minutes', '5min', '5M', 'abc', '1h30', 'h', 's5', '5s5', '1e3', 'nan', 'inf',
     '5m 30s', '--5m', '+', True, False, None, [], float('nan'), float('inf'), 10**400),
)
def test_parse_duration_rejects_junk(value):
    with pytest.raises(ValueError) as excinfo:
        parse_duration(value)
    message = str(excinfo.value)
    assert 'is not a duration; use e.g. 300, 300s, 5m or 1h30m' in message
    assert '\n' not in message


@pytest.mark.parametrize('value', (-1, -0.5, '-1', '-5m', '-1h30m'))
def test_parse_duration_rejects_negative(value):
    with pytest.raises(ValueError, match=r'is negative; use e.g. 300, 300s, 5m or 1h30m$'):
        parse_duration(value)


def test_parse_duration_message_quotes_the_value():
    with pytest.raises(ValueError) as excinfo:
        parse_duration('5 minutes')
    assert str(excinfo.value) == "'5 minutes' is not a duration; use e.g. 300, 300s, 5m or 1h30m"


@pytest.mark.parametrize(
    ('seconds', 'expected'),
    (
        (0, '0s'),
        (270, '4m30s'),
        (300, '5m0s'),
        (3600, '1h0m0s'),
        (5400, '1h30m0s'),
        (90061, '25h1m1s'),
        (1.2, '1.2s'),
        (1.0, '1s'),
        (59.5, '59.5s'),
        (61.25, '1m1.25s'),
        (0.35, '350ms'),
        (0.001, '1ms'),
        (0.0015, '1.5ms'),
        (1.2345678, '1.235s'),  # no finer than a thousandth of the unit shown
        (0.0123456789, '12.346ms'),
        (59.9996, '1m0s'),
        (0.0005, '500µs'),
        (1.5e-6, '1.5µs'),
        (1e-7, '100ns'),
        (-270, '-4m30s'),
    ),
)
def test_format_duration(seconds, expected):
    assert format_duration(seconds) == expected


@pytest.mark.parametrize('seconds', (0, 0.25, 1.5, 270, 3600, 5415, 60.001, 0.0005))
def test_format_then_parse_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize('seconds', (float('nan'), float('inf')))
def test_format_duration_rejects_non_finite(seconds):
    with pytest.raises(ValueError):
        format_duration(seconds)

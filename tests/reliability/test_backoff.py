"""The retry budget the README's "Reliability and security" section states, from the backoff itself."""
from __future__ import annotations

import time

import pytest

from flux_monitor_hook import cluster
from flux_monitor_hook.config import Config


@pytest.mark.parametrize(('jitter', 'total'), [(0.5, 15.5), (1.0, 31.0)])
def test_the_default_retries_span_15_5_to_31_seconds(monkeypatch: pytest.MonkeyPatch, jitter: float,
                                                     total: float) -> None:
    defaults = Config().error_handling
    policy = cluster.RetryPolicy(defaults.retry_attempts, defaults.retry_delay)
    monkeypatch.setattr(cluster.random, 'uniform', lambda low, high: jitter)

    waits = [cluster.backoff(policy, retry) for retry in range(1, policy.attempts + 1)]

    assert sum(waits) == pytest.approx(total)


def test_retry_after_and_the_deadline_bound_the_backoff() -> None:
    assert cluster.backoff(cluster.RetryPolicy(5, 0.1), 1, retry_after=7) == 7
    assert cluster.backoff(cluster.RetryPolicy(5, 10, time.monotonic() + 0.5), 3) <= 0.5
    assert cluster.backoff(cluster.RetryPolicy(20, 1), 20) <= cluster.BACKOFF_MAX
    assert cluster.request_timeout(cluster.RetryPolicy(5, 1, time.monotonic() + 3), 30) <= 3
    assert cluster.request_timeout(cluster.RetryPolicy(5, 1, time.monotonic() - 5), 30) == 1.0

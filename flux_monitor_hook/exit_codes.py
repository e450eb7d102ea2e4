"""Exit codes of every flux-monitor command, as documented in the README."""
from __future__ import annotations

SUCCESS = 0
FAILED = 1  # a followed resource failed to reconcile
TIMEOUT = 2
USAGE = 3  # bad arguments, configuration or input
UNAVAILABLE = 4  # cluster or Flux unreachable, missing or not authorised
INTERRUPTED = 130

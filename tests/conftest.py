from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux_monitor_hook.sandbox import Sandbox

SHARED = Path(__file__).resolve().parents[2] / 'shared'

requires_kubectl = pytest.mark.skipif(shutil.which('kubectl') is None, reason='kubectl is not installed')


@pytest.fixture
def api_sandbox() -> Iterator[Sandbox]:
    """A sandbox with no git repository: the API server and store only (controllers idle)."""
    with Sandbox(bookmark_interval=0.2) as sandbox:
        yield sandbox

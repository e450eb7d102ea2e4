from __future__ import annotations

import contextlib
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wait import fleet

MakeWorld = Callable[..., fleet.World]


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[MakeWorld]:
    """Build a World (fleet.world's arguments); several per test get their own directories."""
    with contextlib.ExitStack() as stack:
        yield fleet.world_factory(tmp_path, stack)

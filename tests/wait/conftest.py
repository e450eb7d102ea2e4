from __future__ import annotations

import contextlib
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.wait import fleet

MakeWorld = Callable[..., fleet.World]


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[MakeWorld]:
    """Build a World (fleet.world's arguments); several per test get their own directories."""
    with contextlib.ExitStack() as stack:
        count = 0

        def make(files: fleet.Files | None = None, **kwargs: Any) -> fleet.World:
            nonlocal count
            count += 1
            root = tmp_path / f'world{count}'
            root.mkdir()
            return stack.enter_context(fleet.world(root, files, **kwargs))

        yield make

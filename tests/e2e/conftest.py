"""Fixtures of the end-to-end tests: a set of real processes per test, always stopped at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ProcessSet


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessSet]:
    """Register every process (and cleanup callable) a test starts; all are stopped, newest first, when the
    test ends, passed or failed."""
    started = ProcessSet(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()

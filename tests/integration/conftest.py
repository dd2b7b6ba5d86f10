"""Fixtures for tests that run Scrapeledger's processes against the real broker."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from scrapeledger.settings import Settings
from tests.support.stack import Stack, start_pages


@pytest.fixture(scope="session")
def pages() -> Iterator[str]:
    """Base URL of the local page server process (see tests/support/pages.py for its routes)."""
    with start_pages() as url:
        yield url


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(settings, tmp_path)
    yield s
    s.stop_all()


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test, so a leaked socket is reported against the test that leaked it."""
    yield
    gc.collect()

"""Fixtures for tests that run Scrapeledger's processes against the real broker."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop

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
    """Collect after each test, so a leaked socket is reported against the test that leaked it.

    A new IOLoop first: Tornado keeps a closed asyncio loop's IOLoop, and every stream still
    registered with it, in ``IOLoop._ioloop_for_asyncio`` until the next IOLoop is made, so a
    socket leaked by one test used to be collected in the teardown of the next test that ran
    Tornado (test_resume's first test failed for a leak it passed alone).
    """
    yield
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case; Playwright's sync API keeps a loop running here
        asyncio.run(_next_ioloop())
    gc.collect()


async def _next_ioloop() -> None:
    IOLoop.current()  # making one drops the IOLoops of closed asyncio loops

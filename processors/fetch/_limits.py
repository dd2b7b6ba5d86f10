"""Per-host in-flight limits, so one slow site cannot take every fetch slot.

A request first waits for its host's slot and only then for a global slot, so requests queued
behind a full host hold nothing that other hosts need. Semaphores are created on demand and
dropped when their host has no holder or waiter left, so a crawl over a million hosts does not
keep a million semaphores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class _Entry:
    __slots__ = ("holders", "semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0  # holders and waiters: the entry goes when this reaches 0
        self.holders = 0


class HostSlots:
    """At most ``per_host`` holders per host key at once."""

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self._entries: dict[str, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        """Hold one of ``host``'s slots for the duration of the ``async with`` block."""
        entry = self._entries.get(host)
        if entry is None:
            entry = self._entries[host] = _Entry(self.per_host)
        entry.users += 1
        try:
            async with entry.semaphore:
                entry.holders += 1
                try:
                    yield
                finally:
                    entry.holders -= 1
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[host]

    def in_use(self, host: str) -> int:
        """Holders of ``host``'s slots right now (waiters excluded)."""
        entry = self._entries.get(host)
        return 0 if entry is None else entry.holders

    def __len__(self) -> int:
        return len(self._entries)

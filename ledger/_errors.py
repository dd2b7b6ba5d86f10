"""The root of Scrapeledger's exceptions, and the errors of the ledger itself.

They live here, in the lowest layer, because ``ledger`` imports nothing of the project above it
(only the standard library and orjson): the one root every other error derives from has to be
defined where the ledger can see it. :mod:`scrapeledger.errors` re-exports these very classes
(the same objects, so ``isinstance`` and ``except`` work through either name) and draws the whole
tree.
"""

from __future__ import annotations


class ScrapeledgerError(Exception):
    """Root of every error Scrapeledger raises on purpose."""


class EventError(ScrapeledgerError):
    """An event cannot be decoded or applied."""


class MalformedEventError(EventError):
    """Bytes that are not a well-formed ledger event (bad JSON, missing or mistyped fields)."""


class UnknownEventTypeError(EventError):
    """An event whose ``type`` this code does not know."""


class UnsupportedVersionError(EventError):
    """An event whose schema version ``v`` this code cannot read."""


class InvalidTransitionError(EventError):
    """An event that does not belong to the job it is applied to."""

"""Moved: expiry lives with the materializer that runs it, in :mod:`processors.expiry`. These
names stay importable from here for ``replay.cli`` and older imports."""

from processors.expiry import ExpiryLoop, expire

__all__ = ["ExpiryLoop", "expire"]

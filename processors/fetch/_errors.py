"""The fetch engine's errors, :class:`Rejection` and :class:`ResolutionError`: re-exported here
from :mod:`scrapeledger.errors`, where every public error class is defined (and where the tree
says why the two are kept apart), so the fetch modules' imports stay as they were.
"""

from __future__ import annotations

from scrapeledger.errors import Rejection, ResolutionError

__all__ = ["Rejection", "ResolutionError"]

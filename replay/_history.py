"""Moved: a job's history and state are read by :mod:`scrapeledger.reader`. These names stay
importable from here for ``replay.cli`` and older imports."""

from scrapeledger.reader import current_state, history, latest_states

__all__ = ["current_state", "history", "latest_states"]

"""Replay: read a job's history, rebuild state from the ledger, re-drive failed jobs, tail.

Each command is a library call returning a result; ``replay.cli`` is a thin shell over them.
"""

from ._expire import ExpiryLoop, expire
from ._follow import CAUGHT_UP, follow
from ._history import current_state, history, latest_states
from ._reader import committed_offsets, consumer, partitions_of, read_to_end
from ._rebuild import RebuildResult, fold_ledger, rebuild
from ._redrive import redrive, redrive_events, select, unreadable
from ._tail import LedgerTail, PoisonRecord

__all__ = [
    "CAUGHT_UP",
    "ExpiryLoop",
    "LedgerTail",
    "PoisonRecord",
    "RebuildResult",
    "committed_offsets",
    "consumer",
    "current_state",
    "expire",
    "fold_ledger",
    "follow",
    "history",
    "latest_states",
    "partitions_of",
    "read_to_end",
    "rebuild",
    "redrive",
    "redrive_events",
    "select",
    "unreadable",
]

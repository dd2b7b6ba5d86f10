"""Replay, the operator's package: a job's history and state, rebuild, redrive, tail, expire.

It reads a job's history and state, rebuilds ``job-state`` from the ledger, re-drives failed
jobs, tails the ledger live and expires jobs past the replay window.

Each command is a library call returning a result; ``replay.cli`` is a thin shell over them.
The readers they share with the processors and the edge live below all three, in
:mod:`scrapeledger.reader`, and expiry with the materializer that runs it, in
:mod:`processors.expiry`; their names are re-exported here so ``replay.history`` and the rest
keep working.
"""

from processors.expiry import ExpiryLoop, expire
from scrapeledger.reader import (
    CAUGHT_UP,
    committed_offsets,
    consumer,
    current_state,
    follow,
    history,
    latest_states,
    partitions_of,
    read_to_end,
)

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

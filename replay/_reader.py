"""Moved: the ledger readers live in :mod:`scrapeledger.reader` (below the processors and the
edge, which use them too). These names stay importable from here for ``replay.cli`` and older
imports; new code imports ``scrapeledger.reader``."""

from scrapeledger.reader import (
    TRANSIENT_S,
    committed_offsets,
    consumer,
    job_partition,
    partitions_of,
    read_to_end,
)

__all__ = ["TRANSIENT_S", "committed_offsets", "consumer", "job_partition", "partitions_of", "read_to_end"]

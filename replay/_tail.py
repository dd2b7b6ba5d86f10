"""Following the whole ledger live, every job and every partition: what ``replay tail`` prints.

Unlike :func:`scrapeledger.reader.follow` (one job, from the start of its partition, for the
edge's SSE stream), a tail starts where the ledger ends *now* (or at its beginning, on request)
and shows what is written from then on, optionally only some event types or one job. The start
offsets are the concrete end offsets read at assignment, not Kafka's "latest", so "tailing" is a
promise: nothing written after the tail said so is missed. A record that does not decode is reported as
poison, with its place in the topic, and the tail goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from types import TracebackType

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import ledger
from scrapeledger import topics
from scrapeledger.errors import EventError
from scrapeledger.settings import Settings

# through the package, not its modules: where the readers live is replay's business
from . import consumer, partitions_of

POLL_S = 0.5
"""How long one poll waits: also how soon a stop request is noticed."""


@dataclass(frozen=True)
class PoisonRecord:
    """A ledger record that is not a valid event: where it is, and why it did not decode."""

    topic: str
    partition: int
    offset: int
    error: EventError


class LedgerTail:
    """``with LedgerTail(settings) as tail: tail.start(); for item in tail.records(stop): ...``.

    The constructor only remembers what to follow; :meth:`start` does the I/O (a consumer,
    the ledger's partitions and their end offsets) and raises
    :class:`~scrapeledger.errors.ScrapeledgerError` if the ledger cannot be read.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        types: Collection[str] = (),
        job_id: str | None = None,
        from_beginning: bool = False,
    ) -> None:
        """``types`` (event type names; empty: all) and ``job_id`` narrow what is yielded."""
        self.settings = settings
        self.topic = settings.topic(topics.LEDGER)
        self.types = frozenset(types)
        self.job_id = job_id
        self.from_beginning = from_beginning
        self._consumer: Consumer | None = None

    def start(self) -> None:
        """Assign every ledger partition at its current end (or at the beginning)."""
        c = self._consumer = consumer(self.settings)
        parts = partitions_of(c, self.topic)
        if self.from_beginning:
            c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        else:  # concrete end offsets, so "tailing" is a promise: nothing later is missed
            c.assign([TopicPartition(self.topic, p, self._end(c, p)) for p in parts])

    def _end(self, c: Consumer, partition: int) -> int:
        """The partition's high watermark: where the next record written will be."""
        return int(c.get_watermark_offsets(TopicPartition(self.topic, partition))[1])

    def records(
        self, stop: Callable[[], bool], limit: int | None = None
    ) -> Iterator[ledger.Event | PoisonRecord]:
        """The wanted events (and any poison record) as they arrive, until ``stop()`` holds or
        ``limit`` events (poison does not count) were yielded."""
        seen = 0
        while not stop() and (limit is None or seen < limit):
            item = self._next(POLL_S)
            if item is None:
                continue
            if not isinstance(item, PoisonRecord):
                seen += 1
            yield item

    def _next(self, timeout: float) -> ledger.Event | PoisonRecord | None:
        """One poll: a wanted event, a poison record, or None (nothing, an error, not wanted)."""
        assert self._consumer is not None, "start() first"
        msg = self._consumer.poll(timeout)
        if msg is None or msg.error() is not None:
            return None
        try:
            event = ledger.decode_event(msg.value())
        except EventError as exc:
            return PoisonRecord(self.topic, msg.partition(), msg.offset(), exc)
        return event if self._wanted(event) else None

    def _wanted(self, event: ledger.Event) -> bool:
        if self.types and event.TYPE not in self.types:
            return False
        return not self.job_id or event.job_id == self.job_id

    def close(self) -> None:
        """Leave the ledger (nothing was committed: the tail has no group offsets)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> LedgerTail:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""Scraper: ``JobValidated`` / ``RetryScheduled`` / ``JobRedriven`` -> one outcome per attempt.

Quix Streams processes one record at a time on one thread, so a blocking fetch per record would
cap a process at ~1/latency jobs per second. Instead the records end in a :class:`FetchSink`:
``add()`` starts the attempt on an asyncio loop in a background thread (at most
``SCRAPER_CONCURRENCY`` x ``SINK_WINDOW_FACTOR`` attempts started, 256 by default, of which the
fetcher lets ``SCRAPER_CONCURRENCY`` fetch at once; ``add()`` blocks when every slot is taken,
which is the backpressure), each finished fetch writes its body and its events to Kafka at
once, and ``flush()`` - which the checkpoint calls before it commits offsets - waits until every
started attempt's events are acknowledged. Offsets are therefore committed only after the
results are durable (at-least-once); a crash replays the attempt, and the replay's outcome
shares the first one's event id, so the fold keeps whichever was recorded first.

Two of the three kinds of retry meet here, each told whole in its own module:

* **attempt retry** (``_attempt_retry``): every attempt ends in exactly one outcome event;
  a retryable failure with attempts left schedules the next attempt (``RetryScheduled``), which
  comes back through the ledger and is waited out here before it is fetched;
* **crash recovery** (``_crashes``): before each fetch the scraper writes ``AttemptStarted`` and
  waits for Kafka to acknowledge it, so a fetch that kills the process leaves a count in the
  ledger; the next process reads it back into a ``CrashLog``, whose plan per trigger this sink
  follows: skip an attempt whose outcome is recorded, run a suspect alone, dead-letter
  (``scraper_crashed``) one that kept killing the scraper running alone.

The third, **record failure** (``_record_failure``), is any processor's step raising on a
ledger record; the scraper's step (:func:`scrape_trigger`) is total, and a fetch that raises
ends the job ``scraper_error`` instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaException
from quixstreams.sinks import BaseSink
from w3lib.encoding import html_to_unicode

import ledger
from processors.fetch import Fetcher, FetchError, FetchOk, FetchRequest
from scrapeledger import faults, topics
from scrapeledger.clients import AsyncProducer
from scrapeledger.errors import BrokerError, CredentialsUnreadableError, EventError, ScrapeledgerError
from scrapeledger.observability import ATTEMPTS, EVENTS, FETCH_SECONDS, IN_FLIGHT, REPLAYS_SKIPPED
from scrapeledger.redact import job_ref
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault

from . import formats as output_formats
from ._app import Processor
from ._attempt_retry import CANCELLED_CODE, outcome_events
from ._cancels import CancelWatch
from ._crashes import FINISHED_KEPT, CrashLog, Plan

log = logging.getLogger(__name__)

SINK_WINDOW_FACTOR = 4
"""The sink admits this many times ``SCRAPER_CONCURRENCY`` attempts (256 by default): attempts
queued behind one slow host's per-host limit, or waiting out a back-off, must not take every
slot from the other hosts' attempts, while the fetcher bounds what actually fetches."""


_WATCHED: tuple[type[ledger.Event], ...] = (
    *ledger.SCRAPE_TRIGGERS, ledger.ScrapeSucceeded, ledger.JobFailed, ledger.JobDeadLettered,
    ledger.JobCancelled,
)

def scrape_trigger(raw: bytes, crashes: CrashLog) -> ledger.FetchSpec | ledger.JobCancelled | None:
    """The fetch request (or cancel) in a ledger record, or None for records the scraper does
    not act on.

    Outcomes passing by are noted in ``crashes``: a trigger that a restarted validator writes
    again comes after its attempt's outcome in the same partition, and is then not refetched.
    Cancels are noted there too (no attempt of the job starts after one) and handed to the sink,
    which abandons the job's attempt in flight. The pipeline counts the record in the metrics
    around this call (:func:`instrumented_trigger`).
    """
    if not ledger.may_be(raw, _WATCHED):
        return None
    try:
        event = ledger.decode_event(raw)
    except EventError:
        return None  # the materializer dead-letters undecodable records
    crashes.add(event)
    if isinstance(event, ledger.JobCancelled):
        return event
    if isinstance(event, ledger.SCRAPE_TRIGGERS) and isinstance(event, ledger.FetchSpec):
        return event
    return None


def decode_text(body: bytes, headers: dict[str, str]) -> str:
    """The page as text, never an exception: a byte-order mark first, then the charset the
    server declared, then the page's own ``<meta charset>`` (or XML declaration), else UTF-8,
    with the WHATWG names browsers use (``iso-8859-1`` is read as windows-1252). w3lib's
    ``html_to_unicode`` (Scrapy's) does exactly this; before it, a page that declared its
    charset only in a ``<meta>`` was read as UTF-8 and its every non-ASCII letter was lost."""
    return html_to_unicode(headers.get("content-type", ""), body)[1]


def stored_body(
    text: str, formats: tuple[str, ...], result: FetchOk, limit: int
) -> tuple[bytes, bool]:
    """The outputs document of a page (see ``ledger._outputs``) and whether it was cut to fit.

    Runs in the scraper's converter threads, never on its event loop: markdown and text cost
    milliseconds per page (bench/formats.py), and html-to-markdown releases the GIL while it
    converts, so the loop's fetches go on meanwhile on the other core.
    """
    outputs = output_formats.render(
        text,
        formats,
        base_url=result.final_url,
        content_type=result.headers.get("content-type", ""),
        http_status=result.http_status,
        content_language=result.headers.get("content-language", ""),
    )
    return ledger.encode_outputs(outputs, limit=limit)


class FetchSink(BaseSink):
    """Runs many fetch attempts at once; commits wait until their results are in Kafka."""

    def __init__(self, settings: Settings, crashes: CrashLog, vault: Vault) -> None:
        """Nothing starts here: the loop, the producer, the fetcher and the cancel reader are
        made by :meth:`setup`, which the Application calls when it starts."""
        super().__init__()
        self.settings = settings
        self.crashes = crashes
        self.vault = vault
        # A window wider than the fetcher's own bound: attempts queued behind one slow host's
        # per-host limit must not take every slot from the other hosts' attempts.
        self._slots = threading.BoundedSemaphore(settings.scraper_concurrency * SINK_WINDOW_FACTOR)
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._fetcher: Fetcher | None = None
        self._producer: AsyncProducer | None = None
        # formats are CPU work (milliseconds per page for markdown): off the fetch loop, see
        # stored_body
        self._converters = concurrent.futures.ThreadPoolExecutor(
            settings.scraper_format_threads, thread_name_prefix="scraper-formats"
        )
        self.in_flight = 0
        self._running: dict[str, set[asyncio.Task[FetchOk | FetchError | None]]] = {}
        """Per job, its attempts' cancellable part (back-off wait, start, fetch); loop thread only."""
        self._cancelled: dict[str, None] = {}
        """Jobs cancelled as heard by the :class:`CancelWatch` (loop thread only, bounded)."""
        self._watch: CancelWatch | None = None
        self.abandoned = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def setup(self) -> None:
        if self._loop is not None:  # every Application start calls it; one loop per process
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="scraper-loop", daemon=True)
        self._thread.start()
        self._producer = AsyncProducer(self.settings, name="scraper-producer")
        # the fetcher (and its HTTP client) must be created on the loop that will use it
        self._fetcher = asyncio.run_coroutine_threadsafe(self._make_fetcher(), loop).result()
        self._watch = CancelWatch(self.settings, self.settings.group("scraper"), self._heard)
        self._watch.start()

    def _heard(self, event: ledger.JobCancelled) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._abandon, event.job_id)

    async def _make_fetcher(self) -> Fetcher:
        return Fetcher.from_settings(self.settings)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self.flush()
        loop = self._loop
        if loop is not None and self._fetcher is not None:
            asyncio.run_coroutine_threadsafe(self._fetcher.aclose(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        if self._producer is not None:
            self._producer.close()
        self._converters.shutdown(wait=True)

    # --- BaseSink ----------------------------------------------------------------------------

    def add(
        self,
        value: Any,
        key: Any,
        timestamp: int,
        headers: Any,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        if self._loop is None:
            self.setup()
        assert self._loop is not None
        if isinstance(value, ledger.JobCancelled):
            self._loop.call_soon_threadsafe(self._abandon, value.job_id)
            return
        trigger: ledger.FetchSpec = value
        plan = self.crashes.plan(
            trigger.job_id, trigger.attempt, max_crashes=self.settings.scraper_max_crashes
        )
        if plan == "skip":
            log.info("job %s attempt %d: outcome already recorded", job_ref(trigger.job_id), trigger.attempt)
            REPLAYS_SKIPPED.inc()
            return
        if plan == "solo":
            log.warning("job %s attempt %d was in flight when the scraper died twice; running it alone",
                        job_ref(trigger.job_id), trigger.attempt)
            self._wait_idle()
        self._slots.acquire()  # blocks the poll loop while every slot is busy: backpressure
        fut = asyncio.run_coroutine_threadsafe(self._attempt(trigger, plan), self._loop)
        with self._lock:
            self._pending.add(fut)
            self.in_flight += 1
        fut.add_done_callback(self._done)
        if plan == "solo":
            concurrent.futures.wait([fut])  # nothing else starts while a suspect runs

    def _wait_idle(self) -> None:
        """Wait until every started attempt has finished (their errors surface in ``flush``)."""
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending)

    def _done(self, fut: Future[None]) -> None:
        with self._lock:
            self.in_flight -= 1
        self._slots.release()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
        failures = 0
        for fut in pending:
            try:
                fut.result()
            except Exception as exc:
                failures += 1
                log.error("scrape attempt could not record its result: %r", exc)
        if failures:
            # abort the checkpoint: offsets stay uncommitted, the attempts are replayed
            raise BrokerError(f"{failures} attempt(s) could not be recorded in Kafka")

    @property
    def _body_limit(self) -> int:
        """The largest stored body: the bodies topic's record limit less half a MiB of headroom
        for the record's own overhead (topics.py sizes it at max body + 1 MiB)."""
        return self.settings.scraper_max_body_bytes + topics.MiB // 2

    # --- one attempt -------------------------------------------------------------------------

    def _abandon(self, job_id: str) -> None:
        """The job was cancelled: stop its attempt wherever it is (waiting, starting, fetching)."""
        self._cancelled[job_id] = None
        if len(self._cancelled) > FINISHED_KEPT:
            del self._cancelled[next(iter(self._cancelled))]
        for task in self._running.get(job_id, ()):
            task.cancel()

    def _is_cancelled(self, job_id: str) -> bool:
        return job_id in self._cancelled or self.crashes.is_cancelled(job_id)

    async def _attempt(self, trigger: ledger.FetchSpec, plan: Plan) -> None:
        if plan == "dead":
            await self._record_crashed(trigger)
            return
        started: list[bool] = []
        run = asyncio.ensure_future(self._run(trigger, plan, started))
        running = self._running.setdefault(trigger.job_id, set())
        running.add(run)
        try:
            result = await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the loop is going away, not a cancel of this job
            result = FetchError(code=CANCELLED_CODE, message="abandoned: the job was cancelled",
                                retryable=False) if started else None
            self.abandoned += 1
            log.info("job %s attempt %d abandoned: cancelled", trigger.job_id, trigger.attempt)
        finally:
            running.discard(run)
            if not running:
                self._running.pop(trigger.job_id, None)
        if result is not None:
            await self._record(trigger, result)

    async def _run(
        self, trigger: ledger.FetchSpec, plan: Plan, started: list[bool]
    ) -> FetchOk | FetchError | None:
        """Wait out the back-off, record the start, fetch; None if the job was cancelled before
        anything started. A cancel cancels this task (see :meth:`_abandon`)."""
        assert self._fetcher is not None and self._producer is not None
        if self._is_cancelled(trigger.job_id):
            return None
        if isinstance(trigger, ledger.RetryScheduled):
            wait = trigger.not_before - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        if self._is_cancelled(trigger.job_id):
            return None
        # durable before the fetch: if the fetch takes the process down, the count survives it
        started_event = ledger.AttemptStarted(
            job_id=trigger.job_id, event_id=ledger.new_event_id(), at=ledger.now(),
            source=self.settings.pod_name,
            attempt=trigger.attempt, solo=plan == "solo",
        )
        started.append(True)  # from here on an abandoned attempt records an outcome
        await self._producer.produce(
            self.settings.topic(topics.LEDGER), trigger.job_id, ledger.encode_event(started_event)
        )
        began = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            result = await self._fetch(trigger)
        finally:
            IN_FLIGHT.dec()
        FETCH_SECONDS.observe(time.perf_counter() - began)
        ATTEMPTS.labels("ok" if isinstance(result, FetchOk) else result.code).inc()
        return result

    async def _fetch(self, trigger: ledger.FetchSpec) -> FetchOk | FetchError:
        assert self._fetcher is not None
        try:
            headers, proxy = self.vault.open(trigger.job_id, trigger.headers, trigger.proxy, trigger.sealed)
        except CredentialsUnreadableError as exc:
            # no retry can open it; a redrive can, once the key is configured again
            return FetchError(code="credentials_unreadable", message=str(exc), retryable=False)
        try:
            faults.check(self.settings.faults, "scraper", trigger.url)
            return await self._fetcher.fetch(
                FetchRequest(url=trigger.url, headers=headers, timeout_s=trigger.timeout_s, proxy=proxy)
            )
        except Exception as exc:
            # a bug in the fetch path for this page: replaying it would fail the same way, so
            # it ends the job (recorded, redrivable) instead of failing the checkpoint forever
            log.exception("job %s attempt %d: the fetch raised", job_ref(trigger.job_id), trigger.attempt)
            return FetchError(code="scraper_error", message=repr(exc)[:500], retryable=False)

    async def _record_crashed(self, trigger: ledger.FetchSpec) -> None:
        """Dead-letter an attempt that kept killing the scraper (DLQ copy first, then the ledger)."""
        assert self._producer is not None
        key = (trigger.job_id, trigger.attempt)
        event = ledger.JobDeadLettered(
            job_id=trigger.job_id, event_id=ledger.outcome_id(trigger.job_id, trigger.attempt),
            at=ledger.now(),
            source=self.settings.pod_name, attempt=trigger.attempt, code="scraper_crashed",
            message=f"attempt {trigger.attempt} was in flight at {self.crashes.starts[key]} scraper "
            f"process deaths, {self.crashes.solo_starts[key]} of them running alone",
        )
        raw = ledger.encode_event(event)
        await self._producer.produce(self.settings.topic(topics.DLQ), trigger.job_id, raw)
        await self._producer.produce(self.settings.topic(topics.LEDGER), trigger.job_id, raw)
        ATTEMPTS.labels("scraper_crashed").inc()
        log.warning("job %s attempt %d dead-lettered: %s", job_ref(trigger.job_id), trigger.attempt,
                    event.message)

    async def _record(self, trigger: ledger.FetchSpec, result: FetchOk | FetchError) -> None:
        """Write the body (if any) and the attempt's events; return once Kafka acknowledged them."""
        assert self._producer is not None
        settings = self.settings
        body_ref: tuple[int, int] | None = None
        body_inline: str | None = None
        cut = False
        if isinstance(result, FetchOk):
            text = decode_text(result.body, result.headers)
            if trigger.formats == ledger.DEFAULT_FORMATS:
                stored, size = text, len(result.body)
            else:
                loop = asyncio.get_running_loop()
                raw, cut = await loop.run_in_executor(
                    self._converters, stored_body, text, trigger.formats, result, self._body_limit
                )
                stored, size = raw.decode(), len(raw)
            if size <= settings.inline_body_bytes:
                body_inline = stored
            else:
                msg = await self._producer.produce(
                    settings.topic(topics.BODIES), trigger.job_id, stored.encode()
                )
                body_ref = (msg.partition(), msg.offset())
        events = outcome_events(
            trigger, result, settings=settings, body_ref=body_ref, body_inline=body_inline, cut=cut
        )
        ledger_topic = settings.topic(topics.LEDGER)
        for e in events:  # the DLQ copy first: a durable ledger outcome implies its copy exists
            if isinstance(e, ledger.JobDeadLettered):
                await self._producer.produce(settings.topic(topics.DLQ), e.job_id, ledger.encode_event(e))
        # one producer, one partition, idempotent: acknowledged in order, so a durable
        # RetryScheduled implies its AttemptFailed (the crash log relies on it)
        await asyncio.gather(
            *(self._producer.produce(ledger_topic, e.job_id, ledger.encode_event(e)) for e in events)
        )
        last = events[-1]
        # one line per job at INFO costs ~13 % of the stack's CPU per job: successes are DEBUG
        level = logging.DEBUG if isinstance(result, FetchOk) else logging.INFO
        log.log(level, "job %s attempt %d: %s", job_ref(trigger.job_id), trigger.attempt,
                _describe(last, result))


def _describe(event: ledger.Event, result: FetchOk | FetchError) -> str:
    if isinstance(result, FetchOk):
        return f"{event.TYPE} {result.http_status} {len(result.body)} bytes"
    return f"{event.TYPE} {result.code}"


def instrumented_trigger(raw: bytes, crashes: CrashLog) -> ledger.FetchSpec | ledger.JobCancelled | None:
    """:func:`scrape_trigger` as the pipeline runs it, counted in the metrics. The scraper's
    fault point is in the fetch itself (``FetchSink._fetch``), where a real crash would be."""
    EVENTS.labels("scraper").inc()
    return scrape_trigger(raw, crashes)


def build(settings: Settings) -> tuple[Processor, FetchSink]:
    """The scraper's processor and sink, not started (no broker is asked yet)."""
    # Commit less often than the other processors: each checkpoint waits for every attempt it
    # started, so a longer interval keeps the sink's window (SCRAPER_CONCURRENCY x
    # SINK_WINDOW_FACTOR, 256 attempts by default) full between barriers.
    proc = Processor(settings, "scraper", commit_interval=max(settings.commit_interval_s, 2.0))
    crashes = proc.crashes  # filled by proc.start(), from the ledger
    # one sink for the process's life, across the Applications of a broker outage: attempts in
    # flight when the broker went away finish (their producer retries) and the next
    # Application's first checkpoint waits for them
    sink = FetchSink(settings, crashes, Vault.from_settings(settings))

    def topology(proc: Processor) -> None:
        sdf = proc.app.dataframe(proc.topic(topics.LEDGER))
        sdf = sdf.apply(lambda raw: instrumented_trigger(raw, crashes))
        sdf = sdf.filter(lambda trigger: trigger is not None)
        sdf.sink(sink)

    proc.define(topology)
    return proc, sink


def main(settings: Settings | None = None) -> None:
    proc, sink = build(settings or Settings())
    proc.start()
    try:
        proc.run()
    except KafkaException as exc:
        raise ScrapeledgerError(f"scraper stopped: {exc}") from exc
    finally:
        sink.close()

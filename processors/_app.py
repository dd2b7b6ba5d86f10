"""What every Quix Streams processor shares: the Application, the topics, and routed outputs.

Processors stay thin: each turns one ledger record into a list of :class:`Out` records with a
step function (the scraper's step picks the trigger its ``FetchSink`` runs instead), and the
Quix Streams app routes each ``Out`` to its topic. The step does no I/O of its own (the record
and the job's state in, outputs out; its only effect is on that state); what the running
process adds around it - the Prometheus counters and the ``SCRAPELEDGER_FAULTS`` fault points -
is wrapped around it in each processor's app wiring (``instrumented_step``; the scraper's
``instrumented_trigger``, whose fault point sits in the fetch itself), never inside it. Values
are encoded by our own code (``ledger.encode_event``), so the framework's serializers only pass
bytes through and a record that does not decode reaches our step function instead of crashing
the consumer.

Building a :class:`Processor` is cheap; :meth:`Processor.start` (or :meth:`Processor.run`)
does the I/O: health server, broker wait, topics, crash-log read, the Application.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quixstreams import Application
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import Deserializer, SerializationContext, Serializer
from quixstreams.models.topics import Topic

from scrapeledger import topics
from scrapeledger.clients import IDLE_FETCH_WAIT_MS, fetch_config, producer_config
from scrapeledger.clusters import attach
from scrapeledger.errors import BrokerOutageError
from scrapeledger.observability import HealthServer, LagReporter
from scrapeledger.outage import BROKER_ERRORS, Outage, retry
from scrapeledger.settings import Settings

from ._compat import StopAwareApplication, assigned_partitions
from ._crashes import CrashLog, read_crash_log
from ._record_failure import RecordFailures, Salvage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Out:
    """One output record: logical topic name, key and already-encoded value (None = tombstone)."""

    topic: str
    key: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Skip:
    """A record a step does not apply: what it writes instead (a DLQ notice, or nothing) and
    whether the record was poison (did not decode), which the app layer counts."""

    outs: tuple[Out, ...] = ()
    undecodable: bool = False


class RawDeserializer(Deserializer):
    """Hand the record's bytes to the step function untouched; decoding is the domain's job."""

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        return value


class OutSerializer(Serializer):
    """Serialize an :class:`Out` (or raw bytes) as its bytes; ``None`` stays a tombstone."""

    # Quix declares (*args, **kwargs) -> str | bytes; tombstones need None, which it passes on.
    def __call__(self, value: Any, ctx: SerializationContext) -> bytes | None:  # type: ignore[override]
        if isinstance(value, Out):
            return value.value
        if value is None or isinstance(value, bytes):
            return value
        raise TypeError(f"cannot serialize {type(value).__name__} to a Scrapeledger topic")


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        **fetch_config(settings),
        "fetch.wait.max.ms": IDLE_FETCH_WAIT_MS,
        "max.poll.interval.ms": 300_000,
        # longer than a cluster takes to move the group coordinator off a dead node: it is
        # fenced after broker.session.timeout.ms (9 s, Kafka's default, which no broker config
        # here changes) and only then does __consumer_offsets get a new leader; a 10 s session
        # ran out first, so librdkafka dropped the assignment as lost and rejoined, which
        # killed a processor (see is_broker_failure). 45 s is Kafka's own default (KIP-735); a
        # restarted process still takes its partitions back at once (static membership, below)
        "session.timeout.ms": 45_000,
        "heartbeat.interval.ms": 3_000,
        # static membership: a restarted process (same POD_NAME: a container restart, a
        # supervisor restart) takes its partitions back at once instead of after a rebalance
        # that waits out the dead member's session
        "group.instance.id": settings.pod_name,
    }


Topology = Callable[["Processor"], None]
"""Defines a processor's dataframes on ``proc.app`` (run again for every new Application)."""

STABLE_S = 30.0
"""An Application that ran this long before failing was healthy: its failure starts a new outage
rather than continuing the last one."""


def is_broker_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is Kafka going away (to ride out) rather than a bug (to crash on).

    Quix Streams 3.28 raises its own ``BaseKafkaException`` subclasses (a failed checkpoint
    commit: ``CheckpointConsumerCommitError`` "Waiting for coordinator"; a failed delivery;
    a fenced static member), ``CheckpointProducerTimeout`` and ``KafkaBrokerUnavailableError``;
    librdkafka raises ``KafkaException`` ("Local: Fatal error" of an idempotent producer); our
    sinks raise ``BrokerError`` when a checkpoint's records could not be written.

    A consumer whose group session ran out while the coordinator was away loses its
    assignment, and Quix does not get through the rejoin: the new assignment's watermark read
    fails on a partition whose new leader is not caught up yet (``OFFSET_NOT_AVAILABLE``, raised
    as a ``PartitionAssignmentError`` *caused by* the ``KafkaException``, hence the walk down
    the causes), or the checkpoint still holds the lost partitions' offsets and refuses the
    records the consumer reads again from the committed ones (``InvalidStoredOffset``). Either
    way a new Application, resuming from the committed offsets, is the way through.
    """
    from quixstreams.checkpointing.exceptions import CheckpointProducerTimeout, InvalidStoredOffset
    from quixstreams.kafka.exceptions import BaseKafkaException, KafkaBrokerUnavailableError

    kinds = (*BROKER_ERRORS, BaseKafkaException, CheckpointProducerTimeout, KafkaBrokerUnavailableError,
             InvalidStoredOffset)
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, kinds):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


class Processor:
    """A Quix Streams application bound to Scrapeledger's topics, restarted through outages.

    When the broker goes away, Quix Streams' run loop raises (a checkpoint commit that cannot
    reach the group coordinator, an idempotent producer gone fatal, a static member fenced after
    the broker's restart) and its Application is finished: its consumer is closed and its
    producer may be unusable. Instead of patching Quix's internals, :meth:`run` builds a **new**
    Application (new consumer, new producers, the same state dir, the same topology) in the same
    process and runs it again, with back-off, until the broker is back or it has been away
    longer than ``SCRAPELEDGER_BROKER_OUTAGE_S``. The new consumer resumes from the group's last
    committed offsets (at-least-once, as after a crash), the crash log is kept (nothing died), and
    a new member with the same ``group.instance.id`` takes over the fenced one's partitions.
    """

    app: Application
    """The current Application: built by :meth:`start`, and anew after each outage."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        commit_interval: float | None = None,
        commit_every: int = 0,
        stateful: bool = False,
        salvage: Salvage | None = None,
    ) -> None:
        """Keep the configuration; nothing is served, asked or read until :meth:`start`.

        ``salvage`` turns an event this processor gave up on into events that keep what the
        job cannot do without (the materializer keeps the client's pod of a ``JobSubmitted``).
        Call :meth:`define` with the topology, then :meth:`run` (which starts first if
        :meth:`start` was not called)."""
        self.settings = settings
        self.name = name
        self._commit_interval = settings.commit_interval_s if commit_interval is None else commit_interval
        self._commit_every = commit_every
        self._stateful = stateful
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._topology: Topology | None = None
        self._topics: dict[str, Topic] = {}
        self.crashes = CrashLog()
        """What the ledger says about this group's unfinished work. The same object for the
        process's life: the topology and the sinks may hold it before :meth:`start` fills it."""
        self.record_failures = RecordFailures(settings, name, self.crashes, salvage)
        self.health: HealthServer | None = None
        self.specs: dict[str, topics.TopicSpec] = {}
        self._rf = 1
        self._rf_config: dict[str, str] = {}
        self._started = False

    def define(self, topology: Topology) -> Processor:
        """Keep ``topology``: :meth:`start` runs it on the Application (and on every new one)."""
        self._topology = topology
        return self

    def start(self) -> Processor:
        """Everything before the first record, in this order (once; later calls do nothing):

        1. the health server, before the broker wait: liveness must pass (no restart storm
           while Kafka is down) and readiness must answer "not ready" rather than refuse
           connections;
        2. wait for the broker (up to ``SCRAPELEDGER_BROKER_WAIT_S``);
        3. attach: which cluster, and whether it is ours to create topics on (the default
           address); not retried, since a refusal is an answer;
        4. create the topics, read the crash log and the replication factor, retried as a whole
           through an outage (a broker that has just come up answers metadata before its
           partitions have leaders);
        5. build the Application and define the topology on it.
        """
        if self._started:
            return self
        settings, name = self.settings, self.name
        if self.health is None:
            self.health = HealthServer(settings.metrics_port_for(name), self.assigned, name,
                                       settings.metrics_host)
        topics.wait_for_broker(settings)
        attach(settings, name)
        self.specs = {s.name: s for s in topics.topic_specs(settings)}

        def start_up() -> tuple[CrashLog, tuple[int, dict[str, str]]]:
            admin = topics.admin_client(settings)
            topics.ensure_topics(settings, admin=admin)
            return read_crash_log(settings, name), topics.replication(settings, admin)

        crashes, (self._rf, self._rf_config) = retry(settings, f"{name} start-up", start_up)
        self.crashes.restore(crashes)
        self.app = self._build()
        self._started = True
        return self

    def _new_app(self) -> Application:
        settings = self.settings
        return StopAwareApplication(
            on_stop=self._stop_requested,
            broker_address=settings.bootstrap_servers,
            consumer_group=settings.group(self.name),
            auto_offset_reset="earliest",
            commit_interval=self._commit_interval,
            commit_every=self._commit_every,
            consumer_extra_config=consumer_config(settings),
            producer_extra_config={
                k: v for k, v in producer_config(settings).items()
                if k not in ("bootstrap.servers", "logger")  # Quix passes its own logger
            },
            state_dir=f"{settings.state_dir}/{settings.pod_name}",
            loglevel=None,
            auto_create_topics=True,
            use_changelog_topics=self._stateful,
            auto_recover_from_source_offset_out_of_range=False,
            on_processing_error=self._on_processing_error,
            request_timeout=30,
            # Quix gives up after this much continuous unavailability; so do we (run())
            broker_availability_timeout=settings.broker_outage_s,
        )

    def _build(self, outage: Outage | None = None) -> Application:
        """A new Application with the topology defined; retried while the broker is away
        (defining a topic asks the broker about it)."""
        assert self._topology is not None, "define() the topology first"
        outage = outage or Outage(self.settings, self.name)
        while True:
            try:
                self._topics = {}
                self.app = self._new_app()
                self._topology(self)
                return self.app
            except Exception as exc:
                if not is_broker_failure(exc):
                    raise
                if self._stopping.wait(outage.failed(exc)):
                    raise BrokerOutageError(f"{self.name}: stopped while Kafka was unusable") from exc

    def topic(self, name: str) -> Topic:
        """The Quix ``Topic`` for a logical topic, with the spec's config (bytes in, ``Out`` out)."""
        found = self._topics.get(name)
        if found is None:
            spec = self.specs[name]
            found = self.app.topic(
                self.settings.topic(name),
                key_deserializer="str",
                value_deserializer=RawDeserializer(),  # type: ignore[no-untyped-call]
                key_serializer="str",
                value_serializer=OutSerializer(),
                config=TopicConfig(
                    num_partitions=spec.partitions,
                    replication_factor=self._rf,
                    extra_config={**spec.config, **self._rf_config},
                ),
            )
            self._topics[name] = found
        return found

    def route(self, value: Out, key: Any, timestamp: int, headers: Any) -> Topic:
        return self.topic(value.topic)

    def assigned(self) -> bool:
        """Readiness: this consumer holds partitions (so it is connected and in its group).
        Not built yet (the broker wait) or not running means not ready."""
        return assigned_partitions(getattr(self, "app", None)) > 0

    def run(self) -> None:
        """Run the Application until SIGTERM/SIGINT; through a broker outage, run a new one."""
        self.start()
        assert self.health is not None
        log.info("%s started (group %s)", self.name, self.settings.group(self.name))
        lag = LagReporter(self.settings, self.name)
        outage = Outage(self.settings, self.name)
        try:
            while not self._stopping.is_set():
                began = time.monotonic()
                try:
                    self.app.run()  # installs its own SIGTERM/SIGINT handlers: a stop returns
                    break
                except Exception as exc:
                    if not is_broker_failure(exc):
                        raise
                    if self._stopping.is_set():  # the final commit of a stop met a lost broker
                        log.warning("%s: stopping without the final commit (%s: %s); the records "
                                    "since the last commit will be processed again", self.name,
                                    type(exc).__name__, exc)
                        break
                    self._ride_out(exc, outage, ran_s=time.monotonic() - began)
        finally:
            lag.close()
            self.health.close()
            self._stopped.set()
        log.info("%s stopped", self.name)

    def _stop_requested(self) -> None:
        """SIGTERM/SIGINT: stop, and make sure the stop ends within ``SCRAPELEDGER_STOP_GRACE_S``.

        A stop flushes the producer and commits; with the broker away that flush would wait up
        to Quix's flush timeout (``max.poll.interval.ms``, 5 minutes). Past the grace the process
        ends the way Kubernetes' SIGKILL after ``terminationGracePeriodSeconds`` would end it:
        without the final commit, so what it did not commit is processed again by the next
        consumer, as after any crash (nothing is lost; deterministic event ids drop the repeats).
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        grace = self.settings.stop_grace_s

        def watchdog() -> None:
            if self._stopped.wait(grace):
                return
            log.warning("%s: the stop did not finish within SCRAPELEDGER_STOP_GRACE_S=%g (Kafka "
                        "away?); exiting without the final commit: the records since the last "
                        "commit will be processed again", self.name, grace)
            logging.shutdown()
            os._exit(0)

        threading.Thread(target=watchdog, name="stop-grace", daemon=True).start()

    def _ride_out(self, exc: Exception, outage: Outage, *, ran_s: float) -> None:
        """The Application died of the broker: pause, then build a new one (or give up)."""
        from quixstreams.kafka.exceptions import KafkaBrokerUnavailableError

        if isinstance(exc, KafkaBrokerUnavailableError):  # already away for the whole budget
            raise BrokerOutageError(
                f"{self.name}: Kafka at {self.settings.bootstrap_servers} unusable for longer "
                f"than SCRAPELEDGER_BROKER_OUTAGE_S={self.settings.broker_outage_s:g}; giving up"
            ) from exc
        if ran_s > STABLE_S:
            outage.recovered()
        if outage.began is None:
            log.warning("%s: the application stopped on a Kafka error (%s: %s); starting a new "
                        "one", self.name, type(exc).__name__, exc)
        pause = outage.failed(exc)
        # between two Applications nobody handles signals: a stop must end the wait
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop_requested())
        if self._stopping.wait(pause):
            return
        try:
            self._build(outage)
        except BrokerOutageError:
            if self._stopping.is_set():
                return
            raise

    def _on_processing_error(self, exc: Exception, row: Any, logger: logging.Logger) -> bool:
        """Quix's ``on_processing_error``: a step raised on ``row``. A Kafka error is not the
        record's fault (nothing counted; :meth:`run` starts a new Application); anything else
        is a record failure (``_record_failure``): counted in the ledger, then crash or give up."""
        if is_broker_failure(exc):
            log.warning("%s: Kafka error while processing (%s); not counted against the record",
                        self.name, exc)
            return False
        return self.record_failures.handle(exc, row)


def out_key(value: Out) -> str:
    return value.key

"""Riding out a lost broker: back-off, sparse logging, a limit, and what counts as an outage."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException
from quixstreams.checkpointing.exceptions import CheckpointConsumerCommitError, InvalidStoredOffset
from quixstreams.exceptions import PartitionAssignmentError

from processors._app import is_broker_failure
from scrapeledger import outage
from scrapeledger.errors import BrokerError, BrokerOutageError, InjectedFault
from scrapeledger.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(outage.time, "monotonic", fake)
    return fake


def _down() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused"))


def test_an_outage_logs_once_per_back_off_step_and_gives_up_past_the_limit(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = outage.Outage(Settings(broker_outage_s=600), "validator")
    pauses = []
    with caplog.at_level(logging.WARNING, logger="scrapeledger.outage"):
        while clock.now < 1000.0 + 590:
            pauses.append(tracker.failed(_down()))
            clock.now += pauses[-1] + 1.0  # each try itself takes a moment
        lines = [r.getMessage() for r in caplog.records]
    assert len(pauses) > 90  # retried every few seconds the whole time...
    assert max(pauses) <= outage.MAX_PAUSE_S * 1.2 and pauses[0] <= outage.FIRST_PAUSE_S * 1.2
    assert 5 <= len(lines) <= 9, lines  # ...but logged at tries 1, 2, 4, 8, ... only
    assert "Connection refused" in lines[0] and "validator" in lines[0]
    clock.now += 20
    with pytest.raises(BrokerOutageError, match=r"SCRAPELEDGER_BROKER_OUTAGE_S=600"):
        tracker.failed(_down())


def test_a_recovery_ends_the_outage_and_the_next_one_starts_from_zero(clock: Clock) -> None:
    tracker = outage.Outage(Settings(broker_outage_s=10), "state")
    tracker.failed(_down())
    clock.now += 9
    tracker.recovered()
    clock.now += 5
    assert tracker.failed(_down()) <= outage.FIRST_PAUSE_S * 1.2  # not 14 s into one outage


def test_retry_repeats_a_call_until_the_broker_answers(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.now += s

    monkeypatch.setattr(outage.time, "sleep", sleep)
    answers = iter([_down(), BrokerError("no leader"), "ledger"])

    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert outage.retry(Settings(), "start-up", call) == "ledger"
    assert len(slept) == 2


def test_retry_lets_other_errors_through(clock: Clock) -> None:
    def call() -> None:
        raise InjectedFault("a bug, not the broker")

    with pytest.raises(InjectedFault):
        outage.retry(Settings(), "start-up", call)


def test_kafka_failures_are_ridden_out_and_bugs_are_not() -> None:
    assert is_broker_failure(_down())
    assert is_broker_failure(BrokerError("materializer outputs not written"))
    commit = CheckpointConsumerCommitError(KafkaError(KafkaError._WAIT_COORD, "Waiting for coordinator"))
    assert is_broker_failure(commit)
    assert not is_broker_failure(InjectedFault("x"))
    assert not is_broker_failure(ValueError("x"))


def _wrapped(cause: Exception) -> PartitionAssignmentError:
    """How Quix raises an error of a rebalance callback: wrapped, the original as the cause."""
    wrapped = PartitionAssignmentError("Error during partition assignment")
    wrapped.__cause__ = cause
    return wrapped


def test_a_lost_assignment_is_ridden_out() -> None:
    """What Quix raised after a group session ran out while a cluster moved its coordinator
    (test_broker_cluster): a rejoin's watermark read on a just-elected leader, wrapped by Quix,
    and the replay from the committed offsets that the stale checkpoint refused."""
    watermarks = KafkaException(KafkaError(KafkaError.OFFSET_NOT_AVAILABLE,
                                           "Leader high watermark is not caught up"))
    assert is_broker_failure(_wrapped(watermarks))
    assert is_broker_failure(InvalidStoredOffset("Cannot store offset smaller or equal than "
                                                 "already processed one: 160 <= 211"))
    assert not is_broker_failure(_wrapped(ValueError("a bug in a callback")))


def test_a_lost_brokers_client_chatter_passes_once_per_back_off_step(clock: Clock) -> None:
    chatter = outage.KafkaChatterFilter()

    def record(msg: str, name: str = "quixstreams.kafka.consumer") -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    passed = [chatter.filter(record('Kafka consumer error: 2/2 brokers are down code="-187"'))
              for _ in range(300)]
    assert sum(passed) == 9  # the 1st, 2nd, 4th, ... 256th of 300
    assert chatter.filter(record("a job failed: nothing to do with the broker"))
    assert chatter.filter(record("Connection refused", name="scrapeledger.kafka"))  # its own count
    clock.now += outage.QUIET_GAP_S + 1  # the next outage starts counting again
    assert chatter.filter(record('Kafka consumer error: 1/1 brokers are down code="-187"'))


def test_the_outage_clocks_own_lines_are_not_filtered_again(clock: Clock) -> None:
    chatter = outage.KafkaChatterFilter()
    lines = [logging.LogRecord(outage.__name__, logging.WARNING, __file__, 1,
                               "state: Kafka unusable (Connection refused)", None, None) for _ in range(3)]
    assert all(chatter.filter(r) for r in lines)

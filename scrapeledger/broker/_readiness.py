"""When a local Kafka node is "ready": *this* cluster accepted a topic creation.

Not that a port opened or a log line appeared: a port can accept connections while the controller
is still electing itself, and a port can belong to someone else's broker. So readiness asks the
node for its cluster id (it must be ours) and then has it validate a topic creation, which goes
through the controller's full checks (replica placement on a registered, unfenced broker
included) without writing anything.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ..clusters import record_local
from ..errors import LocalBrokerError

# one logger for the whole launcher, as when it was one module: lines keep their name
log = logging.getLogger("scrapeledger.broker")

_T = TypeVar("_T")

_POLL_PAUSE_S = 0.2
_FUTURE_WAIT_S = 0.25


def wait_usable(bootstrap: str, cluster_id: str, check_progress: Callable[[], None]) -> None:
    """Poll until the cluster on ``bootstrap`` is ours and accepts a topic creation.

    ``check_progress`` raises once waiting is pointless (the JVM exited, the deadline passed, an
    abort came); it runs between polls and while a request is outstanding, so a dead JVM is
    noticed within a fraction of a second rather than after a request timeout. ``validate_only``
    instead of a real probe topic: one had to be deleted again, and deleting it made the group
    coordinator log ``ERROR Could not delete offsets for deleted partitions`` on every start.
    The cluster is recorded as local once usable, so components on the default address trust it.
    """
    admin = AdminClient({
        "bootstrap.servers": bootstrap,
        "log_level": 0,  # connection refused is expected while the JVM starts
        "socket.connection.setup.timeout.ms": 3000,
        "reconnect.backoff.max.ms": 250,
    })
    probe = f"__scrapeledger-probe-{uuid.uuid4().hex[:12]}"
    while True:
        check_progress()
        try:
            _probe(admin, bootstrap, cluster_id, probe, check_progress)
            record_local(bootstrap, cluster_id)  # components on the default address trust it
            return
        except KafkaException as exc:
            log.debug("Kafka on %s not usable yet: %s", bootstrap, exc)
        time.sleep(_POLL_PAUSE_S)  # pause between polls of a condition; check_progress bounds it


def _probe(
    admin: AdminClient, bootstrap: str, cluster_id: str, probe: str, check_progress: Callable[[], None]
) -> None:
    """One attempt: raises KafkaException while not usable yet, LocalBrokerError if never will be."""
    seen = await_result(admin.describe_cluster(request_timeout=10), check_progress)
    if seen.cluster_id != cluster_id:
        raise LocalBrokerError(
            f"{bootstrap} is served by another Kafka cluster ({seen.cluster_id}, ours is {cluster_id})"
        )
    created = admin.create_topics(
        [NewTopic(probe, 1, 1)], operation_timeout=10, request_timeout=15, validate_only=True,
    )
    await_result(created[probe], check_progress)


def await_result(future: Future[_T], check_progress: Callable[[], None]) -> _T:
    """A client future's result, calling ``check_progress`` every fraction of a second meanwhile."""
    while True:
        try:
            return future.result(timeout=_FUTURE_WAIT_S)
        except TimeoutError:
            check_progress()

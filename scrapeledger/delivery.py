"""The delivery route: how a job's result reaches the edge pod that holds its client.

This module owns the route. The pieces both ends must agree on live here - the record key, the
partition a pod reads, the notice's bytes - and the materializer (writer) and the edge (reader)
both use them, so the two cannot drift apart. The rest of the route lives where its work is
done, and is named here:

1. **Who holds the client.** An edge pod that accepts a submit writes ``JobSubmitted`` with
   ``source`` = its pod id (``POD_NAME``); a pod that takes a ``resume`` writes
   ``ClientAttached(pod=...)``. The fold collects those pod ids in ``JobState.pods``. If the
   materializer has to give up on a ``JobSubmitted`` it cannot process, it keeps the route with
   a salvaged ``ClientAttached`` (``processors.materializer.salvage``).
2. **When a result is due.** :func:`ledger.deliveries_due` (pure, ``ledger/_fold.py``) names the
   pods to tell after one event: every pod of the job when it turns terminal, the attaching pod
   when a client attaches to a job that has already finished, and every pod when a finished job
   expires (an edge answers repeated resumes from the last answer it was sent, which must not
   outlive the result). The first two cover both orders of "attach" and "finish".
3. **What the materializer writes** (``processors/materializer.py``): per pod due, one notice
   to the ``deliveries`` topic (``topics.DELIVERIES``, ``SCRAPELEDGER_DELIVERY_PARTITIONS``
   partitions, kept one hour), keyed by :func:`notice_key`, its value :func:`encode_notice`: the
   job's state without the request (headers, proxy, sealed credentials), which the edge never
   uses. Answers to request events - a keyed submit, a cancel - go the same way to the pod that
   wrote the event (``event.source``), as :func:`encode_reply` (the state plus ``reply_to``, the
   event it answers). A resume of an id the ledger never saw is answered with a bare
   ``unknown`` state.
4. **Where a notice lands.** Every producer uses Kafka's murmur2 partitioner
   (:data:`scrapeledger.partitioner.KAFKA_PARTITIONER`, set in
   ``scrapeledger.clients.producer_config``; librdkafka's own default would put records
   elsewhere), so a notice goes to ``toPositive(murmur2(key)) % partitions``.
   :func:`pod_partition` computes that same number in Python (``scrapeledger.partitioner``,
   tested against Kafka's own vectors): all of a pod's notices are in one partition.
5. **What the edge reads** (``ws_edge/_kafka.py``, ``EdgeKafka``): it assigns itself just that
   partition (no consumer-group rebalance; it never reads another pod's share), from the end
   offset it saw at start-up, read before ``/readyz`` turns ready, so no notice for a job this
   pod accepted can be skipped. Two pod ids may hash to one partition, so it drops notices
   that are not its own (:func:`is_for_pod`) and decodes the rest (:func:`decode_notice`).
6. **Bodies.** A succeeded job's notice carries the page inline when it is small (at most
   ``SCRAPELEDGER_INLINE_BODY_BYTES``, default 0: only an empty body), else a (partition, offset)
   reference into the ``bodies`` topic, where the scraper wrote it once (lz4, by the producer)
   and where it stays for the replay window. The edge resolves a batch of references with one
   sequential read per run of nearby offsets (``ws_edge._kafka.read_bodies``).
7. **Into the socket** (``ws_edge/_server.py``, ``Edge._on_deliveries``): each result goes to
   the sockets (or waiting HTTP requests) that wait for the job on this pod; the pod then
   records ``ResultDelivered`` (once per job and attach window). A notice nobody waits for is
   dropped: its client has left and will resume.
8. **Reconnect to another pod.** The client (``ws_edge._client``) reconnects to any pod and
   sends ``resume``; that pod writes ``ClientAttached`` with its own id. A job that already
   finished is routed to the new pod at once (step 2: an attach to a finished job); a running
   one has the new pod in ``pods`` when it finishes. The old pod may still get its notice and
   finds no socket for it. A client may thus see a result twice; ``job_id`` makes that
   idempotent.
"""

from __future__ import annotations

import dataclasses

import orjson

import ledger

from .errors import MalformedEventError
from .partitioner import partition_for

REPLY_TO = "reply_to"
"""The field of a notice that answers a request event: that event's ``event_id``."""


def notice_key(pod: str) -> str:
    """The record key of a notice for ``pod``: the pod id itself, so the partitioner puts every
    notice of one pod in one partition."""
    return pod


def pod_partition(pod: str, partitions: int) -> int:
    """The partition of the ``deliveries`` topic (``partitions`` wide) that holds ``pod``'s notices."""
    return partition_for(notice_key(pod), partitions)


def is_for_pod(key: bytes | None, pod: str) -> bool:
    """Whether a notice read with record key ``key`` is meant for ``pod`` (another pod whose id
    hashes to the same partition shares it)."""
    return key is not None and key.decode() == notice_key(pod)


def _bare(state: ledger.JobState) -> ledger.JobState:
    """The state without the request: the deliveries topic need not hold credentials."""
    return dataclasses.replace(state, headers={}, proxy=None, sealed=None)


def encode_notice(state: ledger.JobState) -> bytes:
    """A result notice: the job's state without its request (headers, proxy, sealed
    credentials), which the edge never uses for its result frame."""
    return _bare(state).to_json()


def encode_reply(state: ledger.JobState, reply_to: str) -> bytes:
    """A notice answering one request event (a keyed submit, a cancel) to the pod that wrote it:
    the job's state after the event, and which event it answers, so the edge can tell "new job"
    from "already submitted", "conflicting URL", "cancelled" or "too late" with the
    materializer's own state - ordered with every other event of the job by its partition."""
    return orjson.dumps({**_bare(state).to_dict(), REPLY_TO: reply_to})


def decode_notice(raw: bytes | None) -> tuple[ledger.JobState, str | None]:
    """A notice's state, and the event it answers (None for a result notice).

    Raises :class:`MalformedEventError` or :class:`orjson.JSONDecodeError` for bytes that are
    not a notice.
    """
    data = orjson.loads(raw)  # type: ignore[arg-type]  # None raises JSONDecodeError, as wanted
    if not isinstance(data, dict):
        raise MalformedEventError("a notice is a JSON object")
    reply_to = data.pop(REPLY_TO, None)
    return ledger.JobState.from_dict(data), reply_to if isinstance(reply_to, str) else None

"""Which Kafka cluster a process attaches to, and whether it may create its topics there.

``KAFKA_BOOTSTRAP_SERVERS`` defaults to ``127.0.0.1:9092``, the port every Kafka uses. Without a
check, a component started with the default would attach to whatever broker another program runs
on this machine and create Scrapeledger's topics in it. So every local broker that
``scrapeledger broker``/``up`` (or a test) starts records its cluster id under
``$SCRAPELEDGER_CACHE_DIR/local-brokers/``, and a component that was *not* given an address
explicitly attaches to the default address only if the cluster there is one of those; otherwise
it stops with a one-line error saying to set ``KAFKA_BOOTSTRAP_SERVERS``. An explicit address is
always used: the operator chose it. Either way the component logs the cluster id and topic prefix
it uses, so two terminals that disagree show it in their first lines.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from .errors import BrokerError, BrokerUnavailableError
from .settings import Settings

log = logging.getLogger(__name__)


def registry_dir() -> Path:
    from .broker import cache_root  # the broker package records into it (broker/_readiness.py)

    return cache_root() / "local-brokers"


def _entry(address: str) -> Path:
    return registry_dir() / re.sub(r"[^A-Za-z0-9.-]", "_", address)


def record_local(address: str, cluster_id: str) -> None:
    """Remember that the local broker at ``address`` is cluster ``cluster_id`` (atomically)."""
    path = _entry(address)
    path.parent.mkdir(parents=True, exist_ok=True)
    pending = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pending.write_text(cluster_id)
    pending.replace(path)


def recorded(address: str) -> str | None:
    """The cluster id of the last local broker started at ``address``, if any."""
    try:
        return _entry(address).read_text().strip() or None
    except OSError:
        return None


def cluster_id(settings: Settings, timeout_s: float, *, fail_fast: bool = False) -> str:
    """The id of the cluster at ``settings.bootstrap_servers``.

    ``fail_fast`` (the replay CLI) gives up as soon as librdkafka reports every broker down,
    instead of after ``timeout_s``, and librdkafka's own connection-failure lines stay quiet: the
    error raised says it once.
    """
    down: list[KafkaError] = []
    admin = AdminClient({
        "bootstrap.servers": settings.bootstrap_servers,
        "log_level": 0,
        "error_cb": down.append,
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
    })
    future = admin.describe_cluster(request_timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(future.result(timeout=0.1).cluster_id)
        except TimeoutError:
            pass
        except Exception as exc:  # KafkaException, or the future's own errors
            raise BrokerUnavailableError(
                f"Kafka at {settings.bootstrap_servers} did not answer: {exc}"
            ) from None
        admin.poll(0)  # serves error_cb
        gone = [e for e in down if e.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)]
        if (fail_fast and gone) or time.monotonic() > deadline:
            why = gone[0].str() if gone else f"no answer in {timeout_s:.0f}s"
            raise BrokerUnavailableError(
                f"Kafka at {settings.bootstrap_servers} is not reachable ({why}); is the broker "
                "running (scrapeledger broker / up), or KAFKA_BOOTSTRAP_SERVERS wrong?"
            )


def check(settings: Settings, found: str) -> None:
    """Refuse an implicit default address that leads to a cluster no local broker recorded."""
    if "bootstrap_servers" in settings.model_fields_set:
        return
    if recorded(settings.bootstrap_servers) == found:
        return
    raise BrokerError(
        f"the Kafka at {settings.bootstrap_servers} (cluster {found}) was not started by "
        "`scrapeledger broker` or `scrapeledger up` on this machine; set "
        f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} to use it anyway"
    )


def attach(settings: Settings, component: str, *, timeout_s: float = 30.0, fail_fast: bool = False) -> str:
    """Identify the cluster, :func:`check` it, and log which cluster and prefix ``component`` uses."""
    found = cluster_id(settings, timeout_s, fail_fast=fail_fast)
    check(settings, found)
    log.info("%s: Kafka cluster %s at %s, topic prefix %r", component, found,
             settings.bootstrap_servers, settings.topic_prefix)
    return found

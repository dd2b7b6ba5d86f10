"""Shared fixtures: one real Kafka broker per test session, one topic prefix per test.

The broker is, in order of preference: the cluster ``KAFKA_BOOTSTRAP_SERVERS`` points at; a
testcontainers Kafka (KRaft) when a Docker engine answers; else the project's own local broker
(Apache Kafka from Maven Central jars, ``scrapeledger.broker``). Never a mock.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

# quixstreams imports authlib (via confluent_kafka.schema_registry), which installs an "always"
# filter for its own deprecation warning about httpx and fires it at import. Import it once here
# with warnings silenced, so the filter list is restored and the tests' "error" filter stands.
with warnings.catch_warnings():
    import authlib.deprecate  # noqa: F401 - installs the "always" filter...

    warnings.simplefilter("ignore")  # ...which this one, now in front of it, overrides
    import quixstreams  # noqa: F401

from pydantic import SecretStr

from scrapeledger.settings import Settings
from scrapeledger.vault import new_key

# No test sends a name lookup off this machine: names other than IP literals and localhost
# (/etc/hosts) are refused here, so tests resolve through an injected lookup they control
# (processors.fetch's ``lookup=``). Child processes (the stacks) are not affected.
_system_getaddrinfo = socket.getaddrinfo


def _local_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name in ("localhost", "localhost.") or _is_ip(name):
        return _system_getaddrinfo(host, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, f"tests resolve {name!r} through an injected lookup only")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]").partition("%")[0])
    except ValueError:
        return False
    return True


socket.getaddrinfo = _local_getaddrinfo

# property tests share 2 cores with brokers and processes: time limits would make them flaky
hypothesis_settings.register_profile("scrapeledger", deadline=None, print_blob=True)
hypothesis_settings.load_profile("scrapeledger")


_CONTAINER_TESTS = Path(__file__).parent / "containers"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/containers builds images and runs a compose stack in podman (minutes): only a run that
    names that directory collects it (``./dev containers test``, its own CI step), never ``./dev test``."""
    if collection_path != _CONTAINER_TESTS:
        return None
    asked = (Path(arg.split("::")[0]).resolve() for arg in config.args)
    return not any(path == _CONTAINER_TESTS or _CONTAINER_TESTS in path.parents for path in asked)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path) or "tests/chaos" in str(item.path):
            item.add_marker(pytest.mark.integration)


def _docker_kafka() -> Any | None:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return None  # no engine to ask; probing one leaves unclosed sockets behind
    try:
        from docker.errors import DockerException
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from testcontainers.community.kafka import KafkaContainer  # type: ignore[import-not-found]
        except ImportError:
            from testcontainers.kafka import KafkaContainer
    try:
        container = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
        container.start(timeout=120)
    except DockerException:
        return None  # no Docker engine here: fall back to the local broker
    return container


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    container = _docker_kafka()
    if container is not None:
        try:
            yield str(container.get_bootstrap_server())
        finally:
            container.stop()
        return
    from scrapeledger.broker import LocalBroker

    with LocalBroker(port=0, data_dir=tmp_path_factory.mktemp("kafka")) as broker:
        yield broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix of this test's own: its topics and consumer groups are seen by no other test."""
    return f"t{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        state_dir=str(tmp_path / "state"),
        partitions=3,
        delivery_partitions=8,
        secret_keys=[SecretStr(new_key())],  # each test its own key; Stack hands it to its processes
    )

"""One compose stack in podman for the container tests, under a project name of its own.

The images must exist (``./dev containers test`` builds them first). The stack is compose.yml +
deploy/compose.local.yml (image names only) + compose.test.yml here (the page server, and the SSRF
guard lifted for it), with free host ports on 127.0.0.1 for the edge, Kafka and the page server.
Where podman cannot run containers, every test here is skipped with podman's own reason.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import images
from deploy.podman import cannot_run_containers, image_exists
from deploy.stack import COMPOSE_FILES, SERVICES, Stack

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Deployed:
    stack: Stack
    edge_port: int
    pages_port: int
    startup: dict[str, float]

    @property
    def edge(self) -> str:
        return f"ws://127.0.0.1:{self.edge_port}"

    @property
    def pages(self) -> str:
        """The page server as the host reaches it (published port)."""
        return f"http://127.0.0.1:{self.pages_port}"

    pages_inside = "http://pages:8000"
    """The page server as the containers reach it (its compose service name)."""


@pytest.fixture(scope="session")
def deployed() -> Iterator[Deployed]:
    reason = cannot_run_containers(images.BASE_IMAGE)
    if reason is not None:
        pytest.skip(reason)
    missing = [i for i in (images.KAFKA_IMAGE, images.APP_IMAGE) if not image_exists(i)]
    assert not missing, f"images {missing} are missing: ./dev containers build makes them"
    edge_port, kafka_port, pages_port = _free_port(), _free_port(), _free_port()
    stack = Stack(
        project=f"sl-test-{uuid.uuid4().hex[:8]}",
        files=(*COMPOSE_FILES, HERE / "compose.test.yml"),
        services=(*SERVICES, "pages"),
        env={
            "SCRAPELEDGER_EDGE_HOST_PORT": str(edge_port),
            "SCRAPELEDGER_KAFKA_HOST_PORT": str(kafka_port),
            "SCRAPELEDGER_PAGES_HOST_PORT": str(pages_port),
        },
    )
    try:
        stack.up()
        startup = stack.wait_healthy(timeout=300)
        yield Deployed(stack, edge_port, pages_port, startup)
    finally:
        if stack.containers():
            stack.down()

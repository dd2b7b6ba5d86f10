"""The compose stack in containers: ``compose.yml`` plus ``deploy/compose.local.yml``, under podman-compose.

podman-compose runs the compose file as Docker Compose would; two things differ on this machine
and are handled here, not in the compose file:

* podman 4.3 (Debian bookworm's) has no ``wait --condition=healthy``, so podman-compose starts the
  app services without waiting for ``kafka`` to be healthy (it says so in a warning). That is
  harmless: every process waits for the broker with back-off on its own (ARCHITECTURE: Startup).
* no systemd, so nothing runs the health checks on their interval (``deploy.podman``):
  :meth:`Stack.wait_healthy` runs each container's own check (``podman healthcheck run``) until it
  passes, and reports how long after the container's start that was.

A stack is one compose *project*: its containers, network and volumes carry the project's name,
so several (a developer's and a test's) can run side by side, and :meth:`Stack.down` removes
exactly its own, anonymous volumes included (``podman-compose down -v`` leaves those behind).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .podman import ContainersError, healthcheck, inspect, podman, run

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = (ROOT / "compose.yml", ROOT / "deploy" / "compose.local.yml")
SERVICES = ("keys", "kafka", "edge", "validator", "scraper", "state")
"""What ``up`` starts by default: kafka-ui is left out (its image cannot be had without a registry).
``keys`` is a one-shot (it writes the shared key file and exits 0): it has no health check."""
KAFKA_UI = "kafka-ui"
PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def podman_compose() -> str:
    """The podman-compose of this interpreter's environment (the project venv's, from ``[dev]``)."""
    candidate = Path(sys.executable).with_name("podman-compose")
    if not candidate.exists():
        raise ContainersError(f"{candidate} is missing: ./dev setup installs it (pyproject [dev])")
    return str(candidate)


@dataclass
class Stack:
    """One compose project of ``files`` (relative paths resolve from the first file's directory)."""

    project: str = "scrapeledger"
    files: tuple[Path, ...] = COMPOSE_FILES
    services: tuple[str, ...] = SERVICES
    env: Mapping[str, str] = field(default_factory=dict)
    """Interpolation variables for the compose files (host ports, publish address), on top of ours."""

    def compose(self, *args: str, timeout: float = 600.0) -> str:
        command = [podman_compose(), "--in-pod=false", "-p", self.project]
        for path in self.files:
            command += ["-f", str(path)]
        return run([*command, *args], timeout=timeout, env={**os.environ, **self.env}).stdout

    def up(self) -> None:
        """Create and start :attr:`services` (images must exist: nothing is built or pulled here)."""
        self.compose("up", "-d", "--no-build", *self.services)

    def containers(self, *, running_only: bool = False) -> dict[str, str]:
        """Service name -> container name, for this project's containers (``podman ps``)."""
        args = ["ps", "--format", "json", "--filter", f"label={PROJECT_LABEL}={self.project}"]
        if not running_only:
            args.insert(1, "-a")
        listed = json.loads(podman(*args).stdout or "[]")
        return {c["Labels"][SERVICE_LABEL]: c["Names"][0] for c in listed}

    def container(self, service: str) -> str:
        try:
            return self.containers()[service]
        except KeyError:
            raise ContainersError(f"project {self.project} has no {service} container") from None

    def wait_healthy(self, services: Iterable[str] | None = None, timeout: float = 300.0) -> dict[str, float]:
        """Run each service's health check until it passes; return seconds from container start to healthy.

        One thread per container, each running its container's check again as soon as the last
        one failed (at most every :data:`POLL_S`), so a figure is exact to within one check and a
        slow check (Kafka's starts a JVM) delays no other container's. A container that exits
        fails the wait with its last log lines.
        """
        names = self.containers()
        wanted = list(services) if services is not None else list(self.services)
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="health") as pool:
            futures = {s: pool.submit(_until_healthy, names[s], deadline) for s in wanted}
            return {s: f.result() for s, f in futures.items()}

    def kill(self, service: str) -> None:
        """SIGKILL the service's container (``podman kill``), as an OOM kill or a node loss would."""
        podman("kill", "--signal", "KILL", self.container(service))

    def start(self, service: str) -> None:
        """Start the service's stopped container again (``restart: unless-stopped`` does not restart a
        container that was killed with ``podman kill``: that counts as stopped by the user)."""
        podman("start", self.container(service))

    def volumes(self) -> set[str]:
        """Every volume of this project's containers, named and anonymous."""
        found: set[str] = set()
        for container in self.containers().values():
            for mount in inspect(container).get("Mounts") or []:
                if mount.get("Type") == "volume" and mount.get("Name"):
                    found.add(mount["Name"])
        label = f"label={PROJECT_LABEL}={self.project}"
        listed = podman("volume", "ls", "--format", "{{.Name}}", "--filter", label)
        found.update(line for line in listed.stdout.split() if line)
        return found

    def down(self) -> None:
        """``podman-compose down -v``, then remove the anonymous volumes it leaves behind."""
        volumes = self.volumes()
        self.compose("down", "-v", timeout=900)
        leftover = [v for v in volumes if podman("volume", "exists", v, check=False).returncode == 0]
        if leftover:
            podman("volume", "rm", "--force", *leftover)

    def leftovers(self) -> dict[str, list[str]]:
        """Whatever of this project still exists: containers, pods, networks, volumes (empty after down)."""
        label = f"label={PROJECT_LABEL}={self.project}"
        found = {
            "containers": podman("ps", "-a", "--format", "{{.Names}}", "--filter", label).stdout.split(),
            "pods": podman("pod", "ps", "--format", "{{.Name}}", "--filter", label).stdout.split(),
            "networks": [n for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split()
                         if n.startswith(f"{self.project}_")],
            "volumes": podman("volume", "ls", "--format", "{{.Name}}", "--filter", label).stdout.split(),
        }
        return {kind: names for kind, names in found.items() if names}


POLL_S = 0.5
"""Least time between two health checks of one container (a refused check returns at once)."""


def _until_healthy(container: str, deadline: float) -> float:
    """Seconds from ``container``'s start until its health check passed (raises past ``deadline``).

    A one-shot container (``restart: "no"``, such as ``keys``) counts once it exited 0: the
    figure is then its run time. (It still has a health check: the image's ``HEALTHCHECK``.)
    """
    while True:
        began = time.monotonic()
        info = inspect(container)
        state = info["State"]
        restart = ((info.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
        if restart == "no" and state["Status"] in ("exited", "stopped") and state.get("ExitCode") == 0:
            return _between(state["StartedAt"], state["FinishedAt"])
        if state["Status"] not in ("created", "configured", "running"):  # created: not started yet
            logs = podman("logs", "--tail", "30", container, check=False)
            raise ContainersError(
                f"{container} is {state['Status']} (exit {state.get('ExitCode')}):\n"
                f"{(logs.stdout + logs.stderr).strip()}"
            )
        if state["Status"] == "running" and healthcheck(container, timeout=_check_timeout(info) + 5):
            return _since(state["StartedAt"])
        if time.monotonic() > deadline:
            raise ContainersError(f"{container} is not healthy by the deadline")
        threading.Event().wait(max(0.0, POLL_S - (time.monotonic() - began)))


def _check_timeout(info: dict[str, Any]) -> float:
    """A container's health-check timeout in seconds (podman inspect gives nanoseconds), 30 if unset."""
    configured = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Timeout") or 0
    return configured / 1e9 if configured else 30.0


def _since(started_at: str) -> float:
    """Seconds from a podman ``StartedAt`` timestamp (RFC 3339, nanoseconds) until now."""
    return time.time() - _timestamp(started_at)


def _between(started_at: str, finished_at: str) -> float:
    return _timestamp(finished_at) - _timestamp(started_at)


def _timestamp(text: str) -> float:
    """A podman timestamp (RFC 3339 with nanoseconds) as epoch seconds."""
    from datetime import datetime

    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, _, rest = text.partition(".")
    if rest:  # python parses at most microseconds: cut the fraction to 6 digits
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text).timestamp()

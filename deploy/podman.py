"""Podman on a machine without a Docker engine: install it, configure it, ask it things.

Debian's podman runs containers here (as root) once two defaults change, which is what
``/work/shared/notes/containers-podman.md`` found: crun, podman's default runtime, fails on this
kernel's hybrid cgroups ("cgroups in hybrid mode not supported"), so runc is the runtime; and the
default ulimits cannot be applied inside this sandbox ("setrlimit RLIMIT_NOFILE: Operation not
permitted"), so none are set. Health checks are podman's own (``podman healthcheck run`` runs the
image's or compose file's check and records the result), but podman schedules them with systemd
timers, and machines of this kind have no systemd: whoever waits for health runs the checks.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scrapeledger.errors import ScrapeledgerError

log = logging.getLogger(__name__)

CONTAINERS_CONF = Path("/etc/containers/containers.conf")
CONTAINERS_CONF_TEXT = '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n'
"""What ``/etc/containers/containers.conf`` must say on this kind of machine (see the module doc)."""

APT_PACKAGES = ("podman", "runc", "debootstrap")
"""Debian packages the container tooling needs: podman itself, the runtime that works here, and
debootstrap for the base images (``deploy.images``)."""


class ContainersError(ScrapeledgerError):
    """Podman cannot be installed or configured, or a container command failed."""


def podman(*args: str, timeout: float = 600.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS``; raise :class:`ContainersError` with its output when it fails and ``check``."""
    return run(["podman", *args], timeout=timeout, check=check)


def run(command: Sequence[str], *, timeout: float = 600.0, check: bool = True,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A tool's command line, captured; a failure's message carries the command and its output tail."""
    try:
        proc = subprocess.run(
            list(command), capture_output=True, text=True, check=False, timeout=timeout,
            stdin=subprocess.DEVNULL, env=None if env is None else dict(env),
        )
    except subprocess.TimeoutExpired as exc:
        raise ContainersError(f"{' '.join(command)} did not finish within {timeout:.0f}s") from exc
    except FileNotFoundError as exc:
        raise ContainersError(f"{command[0]} is not installed") from exc
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ContainersError(f"{' '.join(command)} failed (exit {proc.returncode}):\n{tail}")
    return proc


def installed() -> bool:
    """Whether every tool of :data:`APT_PACKAGES` is on PATH."""
    return all(shutil.which(tool) for tool in APT_PACKAGES)


def ensure_podman() -> None:
    """Install podman, runc and debootstrap from Debian's packages if missing; configure podman.

    The configuration file is written only when it lacks the two settings; an existing file that
    says something else is kept as ``containers.conf.orig`` first, so nothing is lost silently.
    """
    if not installed():
        if shutil.which("apt-get") is None:
            raise ContainersError(f"{', '.join(APT_PACKAGES)}: missing, and no apt-get to install them")
        log.info("installing %s from Debian's packages", " ".join(APT_PACKAGES))
        env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
        run([*env_cmd, "apt-get", "update", "-q"], timeout=900)
        run([*env_cmd, "apt-get", "install", "-y", "-q", *APT_PACKAGES], timeout=1800)
    configure()


def configure(conf: Path = CONTAINERS_CONF) -> bool:
    """Make ``conf`` select runc and no default ulimits; return whether it was changed."""
    current = conf.read_text() if conf.exists() else ""
    if 'runtime = "runc"' in current and "default_ulimits = []" in current:
        return False
    if current.strip():
        backup = conf.with_name(conf.name + ".orig")
        if not backup.exists():
            backup.write_text(current)
        log.warning("replacing %s (kept as %s): it did not set runc and default_ulimits = []", conf, backup)
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONTAINERS_CONF_TEXT)
    return True


def cannot_run_containers(image: str) -> str | None:
    """Why podman cannot run a container of ``image`` here, or None when it can (``true`` ran)."""
    if shutil.which("podman") is None:
        return "podman is not installed (./dev containers build installs it on Debian)"
    if not image_exists(image):
        return f"no local image {image} to try a container with (./dev containers build makes it)"
    proc = podman("run", "--rm", "--network", "none", image, "true", timeout=120, check=False)
    if proc.returncode != 0:
        return f"podman cannot run containers here: {(proc.stderr or proc.stdout).strip()[-400:]}"
    return None


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def inspect(name: str, kind: str = "container") -> dict[str, Any]:
    """``podman KIND inspect NAME`` as a dict (the first and only object of its JSON list)."""
    data = json.loads(podman(kind, "inspect", name).stdout)
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise ContainersError(f"podman {kind} inspect {name}: unexpected answer {data!r:.200}")
    return data[0]


def healthcheck(container: str, timeout: float = 60.0) -> bool:
    """Run the container's health check now (podman records the result); True when it passed.

    A check that outlives ``timeout`` counts as failed, as a timed-out check does in Docker
    (podman 4.3 does not always enforce the check's own ``timeout``: a ``kafka-topics.sh`` against a
    broker that is still starting can take a minute).
    """
    try:
        return podman("healthcheck", "run", container, timeout=timeout, check=False).returncode == 0
    except ContainersError:
        log.info("health check of %s took over %.0fs: not healthy yet", container, timeout)
        return False

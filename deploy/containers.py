"""``./dev containers {build|up|down|test}``: the image and the compose stack in real containers.

For machines of this project's kind: no Docker engine, no reachable container registry, Debian's
packages and PyPI/Maven Central reachable. ``build`` installs and configures podman
(:mod:`deploy.podman`) and makes the base, Kafka and app images (:mod:`deploy.images`); ``up``
builds, starts ``compose.yml`` + ``deploy/compose.local.yml`` (:mod:`deploy.stack`) and waits until
every container's health check passes; ``down`` removes the stack; ``test`` builds and runs the
container tests (``tests/containers``), which start and remove a stack of their own.

Every step prints what it did and how long it took: those are the figures in ``docs/deploy.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time

from . import images
from .podman import ContainersError, cannot_run_containers, ensure_podman, image_exists
from .stack import KAFKA_UI, SERVICES, Stack

log = logging.getLogger("deploy.containers")


def _mib(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def build(*, base_again: bool = False) -> bool:
    """Install podman, make every image; False (with the reason printed) if containers cannot run here."""
    began = time.monotonic()
    ensure_podman()
    base = images.build_base(again=base_again)
    if base is not None:
        print(f"base image {base.image}: made in {base.seconds:.0f}s, {_mib(base.size)}", flush=True)
    reason = cannot_run_containers(images.BASE_IMAGE)
    if reason is not None:
        print(f"SKIP: {reason}", flush=True)
        return False
    kafka = images.build_kafka()
    print(f"kafka image {kafka.image}: built in {kafka.seconds:.0f}s, {_mib(kafka.size)}", flush=True)
    app = images.build_app()
    print(f"app image {app.image}: built in {app.seconds:.0f}s, {_mib(app.size)}", flush=True)
    print(f"build: {time.monotonic() - began:.0f}s in all", flush=True)
    return True


def default_stack() -> Stack:
    """The developer's stack: project ``scrapeledger``, kafka-ui only if its image is here."""
    services = SERVICES + ((KAFKA_UI,) if image_exists("ghcr.io/kafbat/kafka-ui:v1.4.2") else ())
    return Stack(services=services)


def up() -> int:
    if not build():
        return 0
    stack = default_stack()
    began = time.monotonic()
    try:
        stack.up()
        took = stack.wait_healthy()
    except ContainersError:
        stack.down()  # half a stack helps nobody: the error says what to change (a busy port, ...)
        raise
    print(f"up: every container healthy {time.monotonic() - began:.0f}s after podman-compose up", flush=True)
    for service, seconds in took.items():
        print(f"  {service:<10} healthy {seconds:5.1f}s after its start", flush=True)
    port = os.environ.get("SCRAPELEDGER_EDGE_HOST_PORT", "3001")
    print(f"edge: ws://127.0.0.1:{port}  (./dev containers down to remove the stack)", flush=True)
    return 0


def down() -> int:
    stack = default_stack()
    stack.down()
    left = stack.leftovers()
    if left:
        print(f"left behind: {left}", file=sys.stderr)
        return 1
    print(f"down: nothing of project {stack.project} is left", flush=True)
    return 0


def test(pytest_args: list[str]) -> int:
    """Build, then run ``tests/containers`` (which skip, saying why, when containers cannot run)."""
    began = time.monotonic()
    try:
        build()
    except ContainersError as exc:  # the tests then fail or skip with the same reason, visibly
        print(f"build failed: {exc}", file=sys.stderr, flush=True)
        return 1
    command = [sys.executable, "-m", "pytest", "tests/containers", *pytest_args]
    code = subprocess.run(command, check=False).returncode
    print(f"containers step: {time.monotonic() - began:.0f}s (build and tests)", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev containers", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="install podman, make the base, Kafka and app images")
    b.add_argument("--base-again", action="store_true", help="debootstrap the base image again")
    sub.add_parser("up", help="build, start the compose stack, wait for every health check")
    sub.add_parser("down", help="remove the stack: containers, network, volumes")
    sub.add_parser("test", help="build, then run tests/containers (further arguments go to pytest)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "build":
            build(base_again=args.base_again)
            return 0
        if args.command == "up":
            return up()
        if args.command == "down":
            return down()
        return test(extra)
    except ContainersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

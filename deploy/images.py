"""The three images ``./dev containers`` builds, without pulling anything from a registry.

1. **Base**: a Debian bookworm rootfs made by ``debootstrap --variant=minbase`` from Debian's own
   packages, with Python 3.11 (bookworm's ``python3``), ``python3-venv`` and ``python-is-python3``
   (the Dockerfile calls ``python``), imported with ``podman import`` as :data:`BASE_IMAGE` and
   tagged with every name the Dockerfile's ``FROM`` lines use (``python:3.11-slim``), for the
   local build only: the Dockerfile stays what users build against the real registry. This
   machine's extra CA certificates (``/usr/local/share/ca-certificates``, its TLS-inspecting egress)
   are added to the rootfs and ``pip`` is pointed at the system bundle, as the host's own
   ``/etc/pip.conf`` does, so ``pip install`` inside ``podman build`` reaches PyPI as the host does.
2. **Kafka**: :data:`KAFKA_IMAGE`, a stand-in for ``apache/kafka:4.1.1`` (``deploy/kafka/``) from
   the jars ``scrapeledger.broker.kafka_classpath()`` already resolves from Maven Central, plus
   ``kafka-tools`` for the ``kafka-topics.sh`` that compose.yml's health check calls.
3. **App**: :data:`APP_IMAGE` from the repository's ``Dockerfile``, ``podman build --pull=never
   --format docker`` (the OCI format has no ``HEALTHCHECK``; Docker's keeps it).

Builds 2 and 3 always run: podman's layer cache makes an unchanged rebuild take seconds. The base
is made once (it takes minutes) unless asked to be made again.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scrapeledger.broker import KAFKA_VERSION, cache_root, kafka_classpath

from .podman import ContainersError, image_exists, inspect, podman, run

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_SUITE = "bookworm"
BASE_IMAGE = "localhost/scrapeledger-base/python:3.11-bookworm"
KAFKA_IMAGE = f"localhost/scrapeledger-kafka:{KAFKA_VERSION}"
APP_IMAGE = "localhost/scrapeledger:latest"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "netbase")
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"


@dataclass(frozen=True)
class Built:
    """One image build: what, how long (seconds, wall clock) and how big (bytes, uncompressed)."""

    image: str
    seconds: float
    size: int


def dockerfile_bases(dockerfile: Path) -> list[str]:
    """The images a Dockerfile's ``FROM`` lines pull (stage names and ``scratch`` left out), in order."""
    stages: set[str] = set()
    bases: list[str] = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if not match:
            continue
        image, stage = match.group(1), match.group(2)
        if image.lower() not in stages and image != "scratch" and image not in bases:
            bases.append(image)
        if stage:
            stages.add(stage.lower())
    return bases


def qualified(name: str) -> str:
    """The fully qualified name a registry-less short name means: ``python:3.11-slim`` ->
    ``docker.io/library/python:3.11-slim`` (what podman's short-name table says for it too)."""
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"


def image_size(name: str) -> int:
    return int(inspect(name, "image")["Size"])


def build_base(*, again: bool = False, dockerfile: Path = ROOT / "Dockerfile") -> Built | None:
    """Make :data:`BASE_IMAGE` (unless it exists and not ``again``) and tag it as the Dockerfile's bases.

    Returns the build's figures, or None when the existing image was kept.
    """
    made: Built | None = None
    if again or not image_exists(BASE_IMAGE):
        began = time.monotonic()
        workdir = Path(tempfile.mkdtemp(prefix="scrapeledger-rootfs-"))
        try:
            rootfs = workdir / DEBIAN_SUITE
            log.info("debootstrap %s into %s (a few minutes)", DEBIAN_SUITE, rootfs)
            run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                 DEBIAN_SUITE, str(rootfs)], timeout=1800)
            _trust_host_cas(rootfs)
            _slim(rootfs)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            try:
                imported = subprocess.run(
                    ["podman", "import", "--change", "CMD [\"python3\"]", "-", BASE_IMAGE],
                    stdin=tar.stdout, capture_output=True, text=True, check=False, timeout=600,
                )
            finally:
                if tar.stdout is not None:
                    tar.stdout.close()
                tar.wait()
            if imported.returncode != 0 or tar.returncode != 0:
                raise ContainersError(f"podman import of {rootfs} failed: {imported.stderr.strip()[-600:]}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        made = Built(BASE_IMAGE, time.monotonic() - began, image_size(BASE_IMAGE))
    for base in dockerfile_bases(dockerfile):
        podman("tag", BASE_IMAGE, qualified(base))
    return made


def _trust_host_cas(rootfs: Path) -> None:
    """Give the rootfs this machine's extra CAs and point pip at the system bundle (module doc)."""
    extra = sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []
    if extra:
        target = rootfs / EXTRA_CA_DIR.relative_to("/")
        target.mkdir(parents=True, exist_ok=True)
        for cert in extra:
            shutil.copy2(cert, target / cert.name)
        run(["chroot", str(rootfs), "update-ca-certificates"], timeout=300)
    (rootfs / "etc" / "pip.conf").write_text(PIP_CONF)


def _slim(rootfs: Path) -> None:
    """Drop what slim images drop: apt's package lists and downloaded archives."""
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin"):
        for path in rootfs.glob(pattern):
            if path.is_file():
                path.unlink()


def kafka_tools_jar() -> Path:
    """``kafka-tools-<version>.jar`` (``kafka-topics.sh``'s TopicCommand), fetched once by Maven."""
    tools = cache_root() / f"kafka-{KAFKA_VERSION}" / "tools"
    jar = tools / f"kafka-tools-{KAFKA_VERSION}.jar"
    if not jar.is_file():
        tools.mkdir(parents=True, exist_ok=True)
        run(["mvn", "-B", "-q", "dependency:copy", f"-Dartifact=org.apache.kafka:kafka-tools:{KAFKA_VERSION}",
             f"-DoutputDirectory={tools}"], timeout=900)
        if not jar.is_file():
            raise ContainersError(f"Maven did not leave {jar}")
    return jar


def build_kafka() -> Built:
    """Build :data:`KAFKA_IMAGE` from ``deploy/kafka/`` and the project's cached Kafka jars."""
    libs = kafka_classpath()
    tools = kafka_tools_jar()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scrapeledger-kafka-image-") as tmp:
        context = Path(tmp)
        source = ROOT / "deploy" / "kafka"
        shutil.copytree(source / "bin", context / "bin")
        for name in ("Containerfile", "run"):
            shutil.copy2(source / name, context / name)
        shutil.copy2(ROOT / "scrapeledger" / "kafka" / "log4j2.properties", context / "log4j2.properties")
        (context / "libs").mkdir()
        for jar in [*sorted(libs.glob("*.jar")), tools]:
            shutil.copy2(jar, context / "libs" / jar.name)
        podman("build", "--pull=never", "--format", "docker", "--build-arg", f"BASE={BASE_IMAGE}",
               "-t", KAFKA_IMAGE, "-f", str(context / "Containerfile"), str(context), timeout=1800)
    return Built(KAFKA_IMAGE, time.monotonic() - began, image_size(KAFKA_IMAGE))


def build_app(root: Path = ROOT) -> Built:
    """Build :data:`APP_IMAGE` from ``root``'s unchanged ``Dockerfile``, local images only."""
    began = time.monotonic()
    podman("build", "--pull=never", "--format", "docker", "-t", APP_IMAGE, "-f", str(root / "Dockerfile"),
           str(root), timeout=1800)
    return Built(APP_IMAGE, time.monotonic() - began, image_size(APP_IMAGE))

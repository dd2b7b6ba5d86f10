"""The container tooling's pure parts (deploy/), and that ``./dev test`` never collects tests/containers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from deploy import images, podman
from deploy.stack import SERVICES, _since
from tests import conftest as tests_conftest

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_bases_are_the_from_images_not_the_stages(tmp_path: Path) -> None:
    assert images.dockerfile_bases(ROOT / "Dockerfile") == ["python:3.11-slim"]
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM build AS test\n"
        "from scratch\nFROM debian:bookworm-slim\nFROM golang:1.22\n"
    )
    assert images.dockerfile_bases(dockerfile) == ["golang:1.22", "debian:bookworm-slim"]


@pytest.mark.parametrize(("name", "full"), [
    ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
    ("apache/kafka:4.1.1", "docker.io/apache/kafka:4.1.1"),
    ("ghcr.io/kafbat/kafka-ui:v1.4.2", "ghcr.io/kafbat/kafka-ui:v1.4.2"),
    ("localhost/scrapeledger:latest", "localhost/scrapeledger:latest"),
    ("localhost:5000/x/y:1", "localhost:5000/x/y:1"),
])
def test_qualified_names(name: str, full: str) -> None:
    assert images.qualified(name) == full


def test_configure_writes_the_two_settings_and_keeps_an_old_file(tmp_path: Path) -> None:
    conf = tmp_path / "containers.conf"
    assert podman.configure(conf) is True
    assert conf.read_text() == podman.CONTAINERS_CONF_TEXT
    assert podman.configure(conf) is False  # already right: left alone

    conf.write_text('[engine]\nruntime = "crun"\n')
    assert podman.configure(conf) is True
    assert conf.read_text() == podman.CONTAINERS_CONF_TEXT
    assert (tmp_path / "containers.conf.orig").read_text() == '[engine]\nruntime = "crun"\n'


def test_since_reads_podmans_nanosecond_timestamps() -> None:
    started = datetime.now(UTC) - timedelta(seconds=12)
    text = started.strftime("%Y-%m-%dT%H:%M:%S.%f") + "789Z"  # podman prints nanoseconds
    assert 11.5 < _since(text) < 13.0


def test_override_only_swaps_image_names() -> None:
    override = yaml.safe_load((ROOT / "deploy" / "compose.local.yml").read_text())
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    assert set(override) == {"services"}
    for name, service in override["services"].items():
        assert set(service) == {"image"}, name
        assert name in compose["services"], name
    assert override["services"]["kafka"]["image"] == images.KAFKA_IMAGE
    ours = {name for name, s in compose["services"].items() if s.get("image") == "scrapeledger:latest"}
    assert {"keys", "edge", "validator", "scraper", "state"} <= ours
    assert {name for name, s in override["services"].items() if s["image"] == images.APP_IMAGE} == ours
    assert f"localhost/{compose['services']['edge']['image']}" == images.APP_IMAGE
    assert set(SERVICES) <= set(compose["services"]) and "kafka-ui" not in SERVICES


def test_compose_defaults_keep_the_ssrf_guard_on() -> None:
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    for name, service in compose["services"].items():
        assert "SCRAPER_ALLOW_PRIVATE" not in (service.get("environment") or {}), name


@pytest.mark.parametrize(("args", "ignored"), [
    ([], True),                                              # ./dev test: testpaths = tests
    (["tests"], True),
    (["tests/unit", "tests/integration/test_edge.py"], True),
    (["tests/containers"], False),                           # ./dev containers test
    (["tests/containers/test_stack.py::test_compose_down_leaves_nothing"], False),
])
def test_only_a_run_naming_tests_containers_collects_it(args: list[str], ignored: bool) -> None:
    config = SimpleNamespace(args=[str(ROOT / a) for a in args])
    assert tests_conftest.pytest_ignore_collect(ROOT / "tests" / "containers", config) is ignored  # type: ignore[arg-type]
    assert tests_conftest.pytest_ignore_collect(ROOT / "tests" / "unit", config) is None  # type: ignore[arg-type]


def test_compose_app_services_run_like_the_k8s_pods() -> None:
    """compose.yml's app services get the k8s securityContext: read-only root, scratch /tmp, no caps."""
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        k8s = next(d for d in yaml.safe_load_all((ROOT / "k8s" / f"{service['command'][0]}.yaml").read_text())
                   if d and d["kind"] == "Deployment")
        security = k8s["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        assert service["read_only"] is security["readOnlyRootFilesystem"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == security["capabilities"]["drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_compose_publishes_on_loopback_unless_told_otherwise() -> None:
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published
    assert all(p.startswith("${SCRAPELEDGER_PUBLISH_ADDR:-127.0.0.1}:") for p in published), published

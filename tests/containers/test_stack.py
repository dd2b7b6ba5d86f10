"""The image and compose.yml, running for real in podman (the fixture's stack, conftest.py).

Order matters in one place: ``test_compose_down_leaves_nothing`` takes the stack down, so it is
the last test of this module (pytest runs a module's tests in file order).
"""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import images
from deploy.podman import inspect, podman
from tests.containers.conftest import Deployed
from tests.integration.wsclient import Raw
from tests.support.stack import eventually
from ws_edge import Client

ROOT = Path(__file__).resolve().parents[2]
APPS = ("edge", "validator", "scraper", "state")


def _deployment(name: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all((ROOT / "k8s" / f"{name}.yaml").read_text()):
        if doc and doc["kind"] == "Deployment":
            found: dict[str, Any] = doc
            return found
    raise AssertionError(f"k8s/{name}.yaml has no Deployment")


def _exec(container: str, *command: str) -> tuple[int, str]:
    proc = podman("exec", container, *command, check=False, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _answers(container: str, url: str) -> bool:
    """Whether ``url`` answers 2xx from inside ``container`` (where the kubelet's probe would ask)."""
    fetch = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5)"
    return _exec(container, "python", "-c", fetch)[0] == 0


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # the host's published 127.0.0.1 port
        body: bytes = response.read()
        return body


@pytest.mark.parametrize("app", APPS)
def test_containers_run_as_the_manifests_say(deployed: Deployed, app: str) -> None:
    """Same image, user, read-only root, ports and probe endpoints as k8s/<app>.yaml, checked on
    the running container (not on the files: tests/unit/test_manifests.py does that offline)."""
    pod = _deployment(app)["spec"]["template"]["spec"]
    spec = pod["containers"][0]
    container = deployed.stack.container(app)
    info = inspect(container)

    assert info["ImageName"] == f"localhost/{spec['image']}" == images.APP_IMAGE
    assert _exec(container, "id", "-u") == (0, str(pod["securityContext"]["runAsUser"]))
    assert _exec(container, "id", "-g") == (0, str(pod["securityContext"]["runAsGroup"]))
    assert info["HostConfig"]["ReadonlyRootfs"] is spec["securityContext"]["readOnlyRootFilesystem"] is True
    code, _ = _exec(container, "touch", "/home/app/probe")
    assert code != 0, "the root filesystem is writable"
    for mount in spec["volumeMounts"]:  # what k8s mounts writable (emptyDir) is writable here too
        assert _exec(container, "touch", f"{mount['mountPath']}/probe")[0] == 0, mount["mountPath"]

    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    image = inspect(images.APP_IMAGE, "image")["Config"]
    assert {f"{port}/tcp" for port in ports.values()} <= set(image["ExposedPorts"])
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    health = " ".join(info["Config"]["Healthcheck"]["Test"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = spec[probe]["httpGet"]
        port = ports.get(get["port"], get["port"])
        if probe != "readinessProbe":  # the container's health check is the liveness endpoint
            assert env["HEALTH_PORT"] == str(port) and "/healthz" in health and get["path"] == "/healthz"
        url = f"http://127.0.0.1:{port}{get['path']}"
        # /readyz may answer 503 for a while after /healthz passes (the pod is live but not yet
        # reading its partitions): ready within the probe's own patience, as k8s would wait
        eventually(functools.partial(_answers, container, url), timeout=120, interval=1.0,
                   what=f"{app}: {probe} {url} answering 200")


def test_the_original_clients_frame_gets_its_page(deployed: Deployed) -> None:
    async def scenario() -> dict[str, Any]:
        raw = await Raw.connect(deployed.edge)
        try:
            await raw.send({"event": "job", "message": f"{deployed.pages_inside}/page/7"})
            accepted = await raw.recv(timeout=120)
            assert accepted["event"] == "accepted", accepted
            result = await raw.recv(timeout=120)
            assert result["job_id"] == accepted["job_id"]
            return result
        finally:
            raw.conn.close()

    result = asyncio.run(scenario())
    assert result["event"] == "result" and result["status"] == "succeeded", result
    assert result["http_status"] == 200 and "<title>page 7</title>" in result["html"]


def test_sigkill_of_edge_and_scraper_while_jobs_run_loses_no_job(deployed: Deployed) -> None:
    """Jobs wait at a gate in the page server, so they are in flight in the scraper and unanswered
    at the edge when both containers are SIGKILLed; both start again, the client reconnects and
    resumes each job by id, the restarted scraper fetches again, and every job answers."""
    stack, jobs, gate = deployed.stack, 6, f"/gate/{uuid.uuid4().hex}"

    def hits() -> int:
        count: int = json.loads(_get(f"{deployed.pages}/stats"))["hits"].get(gate, 0)
        return count

    async def scenario() -> tuple[list[str], list[dict[str, Any]], Client]:
        async with Client(deployed.edge, max_reconnect_s=240) as client:
            ids = [await client.submit(f"{deployed.pages_inside}{gate}?job={i}") for i in range(jobs)]
            results = [asyncio.ensure_future(client.result(job_id)) for job_id in ids]
            await asyncio.to_thread(eventually, lambda: hits() >= jobs, timeout=180, interval=0.5,
                                    what="every job fetched (waiting at the gate)")
            for service in ("edge", "scraper"):
                await asyncio.to_thread(stack.kill, service)
            assert not any(r.done() for r in results), "a result arrived before the gate opened"
            for service in ("edge", "scraper"):
                await asyncio.to_thread(stack.start, service)
            await asyncio.to_thread(stack.wait_healthy, ["edge", "scraper"], 180)
            # the killed scraper's fetches were lost with it: its successor fetches them again
            await asyncio.to_thread(eventually, lambda: hits() > jobs, timeout=180, interval=0.5,
                                    what="the restarted scraper fetching again")
            _get(f"{deployed.pages}/release/{gate.rsplit('/', 1)[1]}")
            done = await asyncio.wait_for(asyncio.gather(*results), timeout=240)
            return ids, list(done), client

    ids, done, client = asyncio.run(scenario())
    assert [r["job_id"] for r in done] == ids
    assert [r["status"] for r in done] == ["succeeded"] * jobs, done
    assert client.reconnects >= 1 and client.resumes >= jobs


def test_compose_down_leaves_nothing(deployed: Deployed) -> None:
    """Last in this module: ``down`` removes the project's containers, network and volumes."""
    stack = deployed.stack
    assert set(stack.containers(running_only=True)) == {*APPS, "kafka", "pages"}  # keys ran once, exited
    assert inspect(stack.container("keys"))["State"]["ExitCode"] == 0
    stack.down()
    assert stack.leftovers() == {}
    assert stack.containers() == {}

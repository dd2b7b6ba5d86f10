"""Offline checks of the deployment files: k8s/, compose.yml and the Dockerfile.

* built-in Kubernetes kinds: ``kubernetes_validate`` (bundled schemas, strict) for Kubernetes 1.30;
* Strimzi / KEDA custom resources: hand-written schema subsets in ``k8s/schemas`` (see its README);
* ``k8s/topics.yaml`` is what ``k8s/generate_topics.py`` writes now, and matches ``topic_specs``;
* ``compose.yml``: the Compose Specification schema vendored by ``check-jsonschema``;
* commands in compose / k8s / the Dockerfile are real ``scrapeledger`` subcommands;
* the conventions of k8s/: POD_NAME from the Downward API, probes, drain budget, resources, PDBs.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer.main
import yaml

from scrapeledger import topics
from scrapeledger.cli import app
from scrapeledger.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
K8S_VERSION = "1.30"
IMAGE = "scrapeledger:latest"
NAMESPACE = "scrapeledger"
CRD_SCHEMAS = {
    ("kafka.strimzi.io/v1", "Kafka"): "strimzi-kafka-v1.json",
    ("kafka.strimzi.io/v1", "KafkaNodePool"): "strimzi-kafkanodepool-v1.json",
    ("kafka.strimzi.io/v1", "KafkaTopic"): "strimzi-kafkatopic-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
}
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
TOPIC_SETTINGS_ENV = (  # the variables topic_specs() and the KafkaTopic replicas depend on
    "SCRAPELEDGER_TOPIC_PREFIX", "SCRAPELEDGER_PARTITIONS", "SCRAPELEDGER_DELIVERY_PARTITIONS",
    "SCRAPELEDGER_REPLICATION_FACTOR", "SCRAPELEDGER_REPLAY_WINDOW_S", "SCRAPER_MAX_BODY_BYTES",
)


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _load_all() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in _manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


DOCS = _load_all()


def _id(entry: tuple[str, dict[str, Any]]) -> str:
    file, doc = entry
    return f"{file}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in _kind(kind) if doc["metadata"]["name"] == name]
    return found


BUILTIN = [e for e in DOCS if (e[1].get("apiVersion"), e[1].get("kind")) not in CRD_SCHEMAS]
CUSTOM = [e for e in DOCS if (e[1].get("apiVersion"), e[1].get("kind")) in CRD_SCHEMAS]


@cache
def _crd_validator(file: str) -> Any:
    schema = json.loads((K8S / "schemas" / file).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = _crd_validator(CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@cache
def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_topics", K8S / "generate_topics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None = None) -> Settings:
    """``Settings()`` with the defaults (plus ``env``), whatever the developer's shell exports."""
    for name in TOPIC_SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return Settings()


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _app_deployments() -> list[dict[str, Any]]:
    return [d for d in _kind("Deployment") if _containers(d)[0]["image"] == IMAGE]


def _cli_commands() -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


# --- (a) built-in kinds ------------------------------------------------------------------------


@pytest.mark.parametrize("entry", BUILTIN, ids=_id)
def test_builtin_kinds_validate_strict(entry: tuple[str, dict[str, Any]]) -> None:
    _, doc = entry
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


def test_builtin_validation_is_not_vacuous() -> None:
    bad = json.loads(json.dumps(_one("Deployment", "edge")))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_every_document_is_a_known_kind_with_a_valid_name() -> None:
    for file, doc in DOCS:
        name = doc["metadata"]["name"]
        assert DNS1123_SUBDOMAIN.match(name) and len(name) <= 253, (file, name)
        assert "namespace" not in doc["metadata"], f"{file}: kustomization.yaml sets the namespace"
    kinds = {doc["kind"] for _, doc in DOCS}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    assert {kind for _, kind in CRD_SCHEMAS} <= kinds


# --- (b) Strimzi and KEDA custom resources -----------------------------------------------------


@pytest.mark.parametrize("entry", CUSTOM, ids=_id)
def test_custom_resources_match_crd_schemas(entry: tuple[str, dict[str, Any]]) -> None:
    _, doc = entry
    assert _crd_errors(doc) == []


@pytest.mark.parametrize(
    ("kind", "name", "path", "value"),
    [
        ("KafkaTopic", "ledger", ("spec", "partitions"), 0),
        ("KafkaTopic", "ledger", ("spec", "replicas"), "one"),
        ("KafkaTopic", "ledger", ("spec", "partition"), 6),
        ("KafkaNodePool", "dual-role", ("spec", "roles"), ["leader"]),
        ("Kafka", "scrapeledger", ("spec", "kafka", "listeners"), []),
        ("ScaledObject", "scraper", ("spec", "triggers", 0, "metadata", "lagThreshold"), 50),
        ("ScaledObject", "scraper", ("spec", "maxReplicaCount"), 0),
    ],
)
def test_crd_schemas_reject_mistakes(kind: str, name: str, path: tuple[Any, ...], value: Any) -> None:
    doc = json.loads(json.dumps(_one(kind, name)))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert _crd_errors(doc)


def test_strimzi_resources_belong_to_the_kafka_cluster() -> None:
    (kafka,) = _kind("Kafka")
    cluster = kafka["metadata"]["name"]
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    (pool,) = _kind("KafkaNodePool")
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"] and pool["spec"]["replicas"] == 1
    for doc in [pool, *_kind("KafkaTopic")]:
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    config = _one("ConfigMap", "scrapeledger-env")["data"]
    (plain,) = [lsn for lsn in kafka["spec"]["kafka"]["listeners"] if not lsn["tls"]]
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == f"{cluster}-kafka-bootstrap:{plain['port']}"


# --- (c) topics.yaml is generated from the code's topic spec ------------------------------------


def test_topics_yaml_is_up_to_date() -> None:
    expected = _generator().render()
    assert (K8S / "topics.yaml").read_text() == expected, "run: .venv/bin/python k8s/generate_topics.py"


def test_topics_yaml_matches_topic_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch)
    by_name = {doc["spec"]["topicName"]: doc for doc in _kind("KafkaTopic")}
    specs = topics.topic_specs(settings)
    assert sorted(by_name) == sorted(settings.topic(s.name) for s in specs)
    for spec in specs:
        doc = by_name[settings.topic(spec.name)]
        assert doc["spec"]["partitions"] == spec.partitions, spec.name
        assert doc["spec"]["config"] == spec.config, spec.name
        assert doc["spec"]["replicas"] == settings.replication_factor, spec.name


def test_configmap_keeps_the_generated_topic_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pods' ensure_topics() must want the same topics as the KafkaTopic CRs."""
    defaults = topics.topic_specs(_settings(monkeypatch))
    deployed = _settings(monkeypatch, _one("ConfigMap", "scrapeledger-env")["data"])
    assert topics.topic_specs(deployed) == defaults
    assert {t["spec"]["replicas"] for t in _kind("KafkaTopic")} == {deployed.replication_factor}


def test_scaledobject_follows_the_scraper_group(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch)
    (so,) = _kind("ScaledObject")
    assert so["spec"]["scaleTargetRef"]["name"] == "scraper" and _one("Deployment", "scraper")
    (trigger,) = so["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["consumerGroup"] == settings.group("scraper")
    assert meta["topic"] == settings.topic(topics.LEDGER)
    assert all(isinstance(v, str) for v in meta.values())
    ledger = next(s for s in topics.topic_specs(settings) if s.name == topics.LEDGER)
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"] <= ledger.partitions
    cluster = _kind("Kafka")[0]["metadata"]["name"]  # KEDA runs in its own namespace: FQDN
    assert meta["bootstrapServers"].startswith(f"{cluster}-kafka-bootstrap.{NAMESPACE}.svc:")


def test_generated_names_are_valid_k8s_names() -> None:
    k8s_name = _generator().k8s_name
    assert k8s_name("job-state") == "job-state"
    names = {k8s_name(t) for t in ("Team_A.ledger", "team-a.ledger", "team_a.ledger", "x" * 249)}
    assert len(names) == 4
    assert all(DNS1123_SUBDOMAIN.match(n) and len(n) <= 253 for n in names)


# --- (d) kustomization -------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == NAMESPACE
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    assert sorted(resources) == [p.name for p in _manifest_files()]
    assert [doc["metadata"]["name"] for doc in _kind("Namespace")] == [NAMESPACE]


# --- (e) compose.yml and the Dockerfile --------------------------------------------------------


def test_compose_matches_the_compose_spec() -> None:
    text = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(text.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    bad = {**compose, "services": {**compose["services"], "edge": {**compose["services"]["edge"], "x": 1}}}
    assert list(validator.iter_errors(bad)), "the compose schema should reject unknown service keys"


def test_compose_services() -> None:
    services = yaml.safe_load((ROOT / "compose.yml").read_text())["services"]
    commands = _cli_commands()
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    healthcheck = " ".join(kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 --list" in healthcheck
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert any(s.get("image", "").endswith("kafka-ui:v1.4.2") for s in services.values())
    ours = {name: s for name, s in services.items() if "build" in s}
    assert {s["command"][0] for s in ours.values()} == {"edge", "validator", "scraper", "state"}
    for name, service in ours.items():
        assert service["command"][0] in commands, name
        assert "container_name" not in service, name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert "healthcheck" in service, name
    assert "ports" not in services["scraper"]  # `docker compose up --scale scraper=N` must not clash
    assert "scale" in services["scraper-extra"]["profiles"]


def test_dockerfile() -> None:
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())  # join continuation lines
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]

    def instruction(keyword: str) -> list[str]:
        return [ln.split(None, 1)[1] for ln in lines if ln.split(None, 1)[:1] == [keyword]]

    assert json.loads(instruction("ENTRYPOINT")[-1]) == ["scrapeledger"]
    (cmd,) = json.loads(instruction("CMD")[-1])
    assert cmd in _cli_commands()
    froms = instruction("FROM")
    assert len(froms) >= 2 and all(f.startswith("python:3.11-slim") for f in froms)
    assert instruction("USER")[-1].split(":")[0] not in ("root", "0")
    assert sorted(instruction("EXPOSE")[-1].split()) == ["3001", "9000"]
    env = " ".join(instruction("ENV")).split()
    assert "METRICS_PORT=9000" in env and "METRICS_HOST=0.0.0.0" in env  # what EXPOSE and probes expect
    (healthcheck,) = instruction("HEALTHCHECK")
    assert "urllib.request" in healthcheck and "http://127.0.0.1:${HEALTH_PORT:-3001}/healthz" in healthcheck
    assert (ROOT / ".dockerignore").exists()


def test_k8s_commands_are_cli_subcommands() -> None:
    commands = _cli_commands()
    deployments = _app_deployments()
    assert sorted(d["metadata"]["name"] for d in deployments) == ["edge", "scraper", "state", "validator"]
    for deployment in deployments:
        container = _containers(deployment)[0]
        assert container["args"][0] in commands
        assert container["args"][0] == deployment["metadata"]["name"]
        assert container["imagePullPolicy"] == "IfNotPresent"


# --- (f) and the other k8s conventions ---------------------------------------------------------


@pytest.mark.parametrize("deployment", _kind("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_deployment_conventions(deployment: dict[str, Any]) -> None:
    for container in _containers(deployment):
        assert _env(container)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        resources = container["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound]), (container["name"], bound)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, (container["name"], probe)


def test_processors_serve_metrics_where_probes_and_prometheus_look() -> None:
    # the metrics server binds loopback and a per-component port unless configured: the
    # deployments must set both, to what their probes, annotations and compose expect
    config = _one("ConfigMap", "scrapeledger-env")["data"]
    assert config["METRICS_HOST"] == "0.0.0.0" and config["METRICS_PORT"] == "9000"
    for deployment in _app_deployments():
        if deployment["metadata"]["name"] == "edge":
            continue
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == config["METRICS_PORT"]
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    env = compose["x-scrapeledger"]["environment"]
    assert env["METRICS_HOST"] == "0.0.0.0" and env["METRICS_PORT"] == "9000"


def test_app_probes_and_ports() -> None:
    for deployment in _app_deployments():
        container = _containers(deployment)[0]
        port = 3001 if deployment["metadata"]["name"] == "edge" else 9000
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert port in ports.values()
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                            ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path
            assert ports.get(get["port"], get["port"]) == port
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_edge_drains_within_its_grace_period() -> None:
    edge = _one("Deployment", "edge")
    spec = edge["spec"]
    container = _containers(edge)[0]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(_env(container)["EDGE_DRAIN_S"])
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= pre_stop + drain + 5
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = _one("Service", "edge")
    assert [p["port"] for p in service["spec"]["ports"]] == [3001]
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    hpa = _one("HorizontalPodAutoscaler", "edge")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "edge"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_processors_have_a_writable_state_dir() -> None:
    state_dir = Path(_one("ConfigMap", "scrapeledger-env")["data"]["SCRAPELEDGER_STATE_DIR"])
    for deployment in _app_deployments():
        if deployment["metadata"]["name"] == "edge":
            continue
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = _containers(deployment)[0]["volumeMounts"]
        assert any(
            state_dir.is_relative_to(m["mountPath"]) and "emptyDir" in volumes[m["name"]] for m in mounts
        ), deployment["metadata"]["name"]


def test_every_app_deployment_has_a_pdb() -> None:
    pdbs = _kind("PodDisruptionBudget")
    for deployment in _app_deployments():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, deployment["metadata"]["name"]


def test_credential_keys_come_from_a_secret_reference_never_from_a_manifest() -> None:
    """Edge, validator and scraper seal or open jobs' credentials; the materializer never does."""
    ref = {"secretKeyRef": {"name": "scrapeledger-secret-keys", "key": "keys"}}
    for deployment in _app_deployments():
        env = _env(_containers(deployment)[0])
        if deployment["metadata"]["name"] == "state":
            assert "SCRAPELEDGER_SECRET_KEYS" not in env
        else:
            assert env["SCRAPELEDGER_SECRET_KEYS"] == ref, deployment["metadata"]["name"]
    assert _kind("Secret") == []
    assert "SCRAPELEDGER_SECRET_KEYS" not in _one("ConfigMap", "scrapeledger-env")["data"]
    services = yaml.safe_load((ROOT / "compose.yml").read_text())["services"]
    assert services["keys"]["command"][0] in _cli_commands()
    for name in ("edge", "validator", "scraper"):
        assert "secret-keys:/var/lib/scrapeledger/keys:ro" in services[name]["volumes"], name
        assert services[name]["depends_on"]["keys"]["condition"] == "service_completed_successfully"
    assert not any("secret-keys" in v for v in services["state"]["volumes"])


def test_api_keys_come_from_an_optional_secret_reference_never_from_a_manifest() -> None:
    """Only the edge authenticates; no Secret means keys off (optional), never a value here."""
    ref = {"secretKeyRef": {"name": "scrapeledger-api-keys", "key": "keys", "optional": True}}
    for deployment in _app_deployments():
        env = _env(_containers(deployment)[0])
        if deployment["metadata"]["name"] == "edge":
            assert env["SCRAPELEDGER_API_KEYS"] == ref
        else:
            assert "SCRAPELEDGER_API_KEYS" not in env, deployment["metadata"]["name"]
    assert "SCRAPELEDGER_API_KEYS" not in _one("ConfigMap", "scrapeledger-env")["data"]
    services = yaml.safe_load((ROOT / "compose.yml").read_text())["services"]
    assert services["edge"]["environment"]["SCRAPELEDGER_API_KEYS"] == "${SCRAPELEDGER_API_KEYS:-}"
    for name, service in services.items():
        if name != "edge":
            assert "SCRAPELEDGER_API_KEYS" not in (service.get("environment") or {}), name

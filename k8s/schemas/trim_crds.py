"""Regenerate the trimmed CRD schemas in this directory from upstream CRD YAML files.

Not run by the tests (they only read the JSON output, offline). Usage, with the upstream files
checked out somewhere (see README.md for the exact tags)::

    python k8s/schemas/trim_crds.py STRIMZI_DIR/packaging/install/cluster-operator KEDA_DIR/config/crd/bases

Each output is the CRD's ``openAPIV3Schema`` for one served version, cut down to the properties our
manifests use (``KEEP`` below). Everything kept is copied verbatim (types, enums, minimums, patterns,
``required``, descriptions). One addition: every object schema with ``properties`` (and without
``x-kubernetes-preserve-unknown-fields`` or its own ``additionalProperties``) gets
``additionalProperties: false``. The API server prunes unknown fields of a structural schema and
``kubectl apply`` (default ``--validate=strict``) rejects them, so a typo or a field we cut fails the
test as it would fail the apply; free-form maps (``config``, ``metadata``, trigger ``metadata``) stay open.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

# property tree to keep: name -> True (whole subtree) or a nested dict (trim further); "[]" = array items
KEEP: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "strimzi-kafka-v1.json": ("040-Crd-kafka.yaml", "v1", "strimzi", {
        "apiVersion": True, "kind": True, "metadata": True,
        "spec": {
            "kafka": {
                "version": True, "metadataVersion": True, "config": True,
                "listeners": {"[]": {"name": True, "port": True, "type": True, "tls": True}},
            },
            "entityOperator": {"topicOperator": {"reconciliationIntervalMs": True, "resources": True}},
        },
    }),
    "strimzi-kafkanodepool-v1.json": ("045-Crd-kafkanodepool.yaml", "v1", "strimzi", {
        "apiVersion": True, "kind": True, "metadata": True,
        "spec": {"replicas": True, "roles": True, "storage": True, "resources": True},
    }),
    "strimzi-kafkatopic-v1.json": ("043-Crd-kafkatopic.yaml", "v1", "strimzi", {
        "apiVersion": True, "kind": True, "metadata": True,
        "spec": {"topicName": True, "partitions": True, "replicas": True, "config": True},
    }),
    "keda-scaledobject-v1alpha1.json": ("keda.sh_scaledobjects.yaml", "v1alpha1", "keda", {
        "apiVersion": True, "kind": True, "metadata": True,
        "spec": {
            "scaleTargetRef": True, "pollingInterval": True, "cooldownPeriod": True,
            "minReplicaCount": True, "maxReplicaCount": True,
            "triggers": {"[]": {"type": True, "name": True, "metadata": True}},
        },
    }),
}


def trim(schema: dict[str, Any], keep: dict[str, Any] | bool) -> dict[str, Any]:
    if keep is True:
        return schema
    assert isinstance(keep, dict)
    out = {k: v for k, v in schema.items() if k not in ("properties", "items")}
    if "[]" in keep:
        out["items"] = trim(schema["items"], keep["[]"])
        return out
    props = schema.get("properties", {})
    missing = set(keep) - set(props)
    if missing:
        raise KeyError(f"not in the upstream schema: {sorted(missing)}")
    out["properties"] = {name: trim(props[name], sub) for name, sub in keep.items()}
    if "required" in out:  # required fields must be kept
        assert set(out["required"]) <= set(keep), out["required"]
    return out


def close(schema: Any) -> Any:
    """Add ``additionalProperties: false`` to every closed object schema (see the module docstring)."""
    if isinstance(schema, list):
        return [close(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k == "enum" else close(v)) for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {name: close(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def main(strimzi_dir: str, keda_dir: str) -> None:
    dirs = {"strimzi": Path(strimzi_dir), "keda": Path(keda_dir)}
    for out_name, (src, version, origin, keep) in KEEP.items():
        crd = yaml.safe_load((dirs[origin] / src).read_text())
        (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = close(trim(entry["schema"]["openAPIV3Schema"], keep))
        doc = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$comment": (
                f"Trimmed copy of {crd['metadata']['name']} {version} openAPIV3Schema from {src}; "
                "see README.md. Regenerate with trim_crds.py; do not edit by hand."
            ),
            **schema,
        }
        (HERE / out_name).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
        print(f"wrote {out_name}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

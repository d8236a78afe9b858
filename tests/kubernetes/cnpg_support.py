"""The CloudNativePG and Barman Cloud plugin CRD schemas, and the rendered objects they check."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tests.conftest import rendered
from tests.kubernetes.conftest import ident

__all__ = ["APIS", "CRDS", "cnpg_objects", "schema", "schema_errors"]


def _crds() -> Path:
    """The CRDs are test data beside the checkout (../shared/crds), not in it.

    ``LUNA_CNPG_CRDS`` names another folder; a clone elsewhere than the work
    folder finds the work folder's copy.
    """
    candidates = [
        Path(os.environ["LUNA_CNPG_CRDS"]) if os.environ.get("LUNA_CNPG_CRDS") else None,
        Path(__file__).resolve().parents[3] / "shared" / "crds",
        Path("/work/shared/crds"),
    ]
    for folder in candidates:
        if folder and (folder / "postgresql.cnpg.io_clusters.yaml").is_file():
            return folder
    raise AssertionError(
        "CloudNativePG CRDs not found: set LUNA_CNPG_CRDS to a folder holding "
        "postgresql.cnpg.io_clusters.yaml (../shared/crds beside the checkout)"
    )


CRDS = _crds()
KINDS = {
    "Cluster": "postgresql.cnpg.io_clusters",
    "ScheduledBackup": "postgresql.cnpg.io_scheduledbackups",
    "Pooler": "postgresql.cnpg.io_poolers",
    "ObjectStore": "barmancloud.cnpg.io_objectstores",
}
APIS = ("postgresql.cnpg.io/v1", "barmancloud.cnpg.io/v1")


@functools.cache
def schema(kind: str) -> dict[str, Any]:
    """The CRD's v1 schema, closed; shared by every caller, so never modify it.

    Parsed once per process with libyaml: the Cluster CRD is 600 kB of YAML, and
    parsing it per call in pure Python was a fifth of the Kubernetes tests' time."""
    crd = yaml.load((CRDS / f"{KINDS[kind]}.yaml").read_text(), Loader=yaml.CSafeLoader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    closed: dict[str, Any] = _closed(version["schema"]["openAPIV3Schema"])
    return closed


def _closed(node: Any) -> Any:
    """Structural schemas prune unknown fields; refuse them instead, so typos fail here."""
    if isinstance(node, dict):
        out = {k: _closed(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


def _ints(value: Any) -> Any:
    """Pulumi's wire numbers are floats (3.0); the API server reads them as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def cnpg_objects(stack: str, extra: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
    return [_ints(m) for m in rendered(stack, "kubernetes", extra).manifests()
            if m.get("apiVersion") in APIS]  # fmt: skip


def schema_errors(objects: list[dict[str, Any]]) -> list[str]:
    errors = []
    for obj in objects:
        validator = Draft202012Validator(schema(obj["kind"]))
        errors += [f"{ident(obj)}: {'/'.join(map(str, e.path))}: {e.message}"
                   for e in validator.iter_errors(obj)]  # fmt: skip
    return errors

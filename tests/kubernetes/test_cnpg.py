"""CloudNativePG objects in the staging and prod renders, against the operator's own CRDs.

The schemas are CloudNativePG v1.30's (cloudnative-pg/cloudnative-pg
config/crd/bases/, copied to ../shared/crds/); jsonschema validates each object's
``spec`` against the CRD's ``openAPIV3Schema`` (structural schema: every field
typed, unknown fields pruned by the API server, so this test also refuses them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tests.kubernetes.conftest import KUBE_STACKS, ident, manifests, render_k8s


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
KINDS = {"Cluster": "clusters", "ScheduledBackup": "scheduledbackups", "Pooler": "poolers"}


def _schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"postgresql.cnpg.io_{KINDS[kind]}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = _closed(version["schema"]["openAPIV3Schema"])
    return schema


def _closed(schema: Any) -> Any:
    """Structural schemas prune unknown fields; refuse them instead, so typos fail here."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _ints(value: Any) -> Any:
    """Pulumi's wire numbers are floats (3.0); the API server reads them as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def cnpg_objects(stack: str) -> list[dict[str, Any]]:
    return [_ints(m) for m in manifests(stack) if m.get("apiVersion") == "postgresql.cnpg.io/v1"]


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_every_cnpg_object_validates_against_the_crd(stack: str) -> None:
    objects = cnpg_objects(stack)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Cluster", "ScheduledBackup"], f"{stack}: CloudNativePG objects {kinds}"
    errors = []
    for obj in objects:
        validator = Draft202012Validator(_schema(obj["kind"]))
        errors += [f"{ident(obj)}: {'/'.join(map(str, e.path))}: {e.message}"
                   for e in validator.iter_errors(obj)]  # fmt: skip
    print(f"\n{stack}: {len(objects)} CloudNativePG objects, {len(errors)} schema errors")
    assert not errors, "\n".join(errors)


def test_schema_check_can_fail() -> None:
    (cluster,) = [o for o in cnpg_objects("staging") if o["kind"] == "Cluster"]
    broken = {**cluster, "spec": {**cluster["spec"], "instances": "three", "enableSuperUser": 1}}
    validator = Draft202012Validator(_schema("Cluster"))
    messages = [e.message for e in validator.iter_errors(broken)]
    assert any("'three' is not of type 'integer'" in m for m in messages), messages
    assert any("enableSuperUser" in m for m in messages), messages


@pytest.mark.parametrize(("stack", "floor"), [("staging", 2), ("prod", 3)])
def test_cluster_is_redundant_private_and_backed_up(stack: str, floor: int) -> None:
    (cluster,) = [o for o in cnpg_objects(stack) if o["kind"] == "Cluster"]
    spec = cluster["spec"]
    assert spec["instances"] >= floor, f"{stack}: {spec['instances']} instances"
    assert spec["enableSuperuserAccess"] is False
    assert spec["enablePDB"] is True
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert "pgaudit.log" in spec["postgresql"]["parameters"]
    assert spec["postgresql"]["pg_hba"][0] == "hostnossl all all all reject"
    assert spec["certificates"]["serverTLSSecret"], "TLS with the stack CA's certificate"
    store = spec["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://luna-backups-")
    assert store["wal"]["encryption"] == store["data"]["encryption"] == "AES256"
    assert spec["backup"]["retentionPolicy"].endswith("d")
    assert int(spec["postgresql"]["parameters"]["archive_timeout"].rstrip("s")) <= 60
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert all(not r["superuser"] for r in roles.values())
    assert roles["luna_monitor"]["inRoles"] == ["pg_monitor"]
    if stack == "prod":
        assert spec["postgresql"]["synchronous"]["number"] >= 1
    # Bootstrap SQL runs before the operator reconciles managed roles: it creates them first.
    sql = spec["bootstrap"]["initdb"]["postInitApplicationSQL"]
    first_grant = next(i for i, line in enumerate(sql) if "TO luna_app" in line)
    assert "CREATE ROLE luna_app NOLOGIN;" in sql[:first_grant], sql
    (scheduled,) = [o for o in cnpg_objects(stack) if o["kind"] == "ScheduledBackup"]
    assert scheduled["spec"]["cluster"]["name"] == cluster["metadata"]["name"]


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_cluster_is_protected_in_prod_only(stack: str) -> None:
    res = render_k8s(stack)
    (record,) = [r for r in res.monitor.records.values()
                 if r.type == "kubernetes:postgresql.cnpg.io/v1:Cluster"]  # fmt: skip
    assert record.protect is (stack == "prod"), f"{stack}: Cluster protect={record.protect}"


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_cluster_logs_no_statement_data_and_audits_every_table(stack: str) -> None:
    from components.configs import postgres as pg

    (cluster,) = [o for o in cnpg_objects(stack) if o["kind"] == "Cluster"]
    params = cluster["spec"]["postgresql"]["parameters"]
    where = f"{ident(cluster)} postgresql.parameters"
    # Issue #11's guarantees hold on CloudNativePG too: no statement text, no parameters.
    for key, value in pg.LOG_SETTINGS.items():
        assert params.get(key) == value, f"{where}: {key}={params.get(key)!r}, want {value!r}"
    for key, value in pg.AUDIT_SETTINGS.items():
        if key != "shared_preload_libraries":
            assert params.get(key) == value, f"{where}: {key}={params.get(key)!r}"
    # The operator owns shared_preload_libraries; the pgaudit.* and
    # pg_stat_statements.* parameters make it load and create both extensions.
    assert "shared_preload_libraries" not in params, where
    sql = cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    assert f"CREATE ROLE {pg.AUDITOR_ROLE} NOLOGIN NOINHERIT;" in sql, sql
    assert any(
        s.startswith("ALTER DEFAULT PRIVILEGES FOR ROLE luna_owner") and pg.AUDITOR_ROLE in s
        for s in sql
    ), f"{ident(cluster)}: tables the migrations create are not audited: {sql}"

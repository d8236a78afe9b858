"""CloudNativePG objects in the staging and prod renders, against the operator's own CRDs.

The schemas are CloudNativePG v1.30's (cloudnative-pg/cloudnative-pg
config/crd/bases/) and the Barman Cloud plugin's ObjectStore (plugin-barman-cloud
config/crd/bases/), copied to ../shared/crds/; jsonschema validates each object
against the CRD's ``openAPIV3Schema`` (structural schema: every field typed,
unknown fields pruned by the API server, so this test also refuses them).
"""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from components.configs.postgres import APP_LOGIN_RE
from tests.kubernetes.cnpg_support import cnpg_objects, schema, schema_errors
from tests.kubernetes.conftest import KUBE_STACKS, ident, render_k8s


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_every_cnpg_object_validates_against_the_crd(stack: str) -> None:
    objects = cnpg_objects(stack)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Cluster", "ObjectStore", "ScheduledBackup"], f"{stack}: objects {kinds}"
    errors = schema_errors(objects)
    print(f"\n{stack}: {len(objects)} CloudNativePG objects, {len(errors)} schema errors")
    assert not errors, "\n".join(errors)


def test_schema_check_can_fail() -> None:
    (cluster,) = [o for o in cnpg_objects("staging") if o["kind"] == "Cluster"]
    broken = {**cluster, "spec": {**cluster["spec"], "instances": "three", "enableSuperUser": 1}}
    validator = Draft202012Validator(schema("Cluster"))
    messages = [e.message for e in validator.iter_errors(broken)]
    assert any("'three' is not of type 'integer'" in m for m in messages), messages
    assert any("enableSuperUser" in m for m in messages), messages


def test_object_store_schema_check_can_fail() -> None:
    (store,) = [o for o in cnpg_objects("staging") if o["kind"] == "ObjectStore"]
    conf = store["spec"]["configuration"]
    broken = {
        **store,
        "spec": {
            **store["spec"],
            "retentionPolicy": "30 days",
            "configuration": {**conf, "wal": {"compresion": "gzip"}},
        },
    }
    messages = schema_errors([broken])
    assert any("30 days" in m for m in messages), messages
    assert any("compresion" in m for m in messages), messages


@pytest.mark.parametrize(("stack", "floor"), [("staging", 2), ("prod", 3)])
def test_cluster_is_redundant_private_and_backed_up_by_the_plugin(stack: str, floor: int) -> None:
    objects = cnpg_objects(stack)
    (cluster,) = [o for o in objects if o["kind"] == "Cluster"]
    (store,) = [o for o in objects if o["kind"] == "ObjectStore"]
    spec = cluster["spec"]
    assert spec["instances"] >= floor, f"{stack}: {spec['instances']} instances"
    assert spec["enableSuperuserAccess"] is False
    assert spec["enablePDB"] is True
    assert spec["primaryUpdateMethod"] == "switchover", "a minor upgrade restarts the primary"
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert spec["walStorage"]["size"].endswith("Gi"), f"{stack}: WAL shares the data volume"
    assert "pgaudit.log" in spec["postgresql"]["parameters"]
    assert spec["certificates"]["serverTLSSecret"], "TLS with the stack CA's certificate"
    # The in-tree archiver is deprecated since 1.26: the plugin archives and backs up.
    assert "backup" not in spec, f"{stack}: in-tree barmanObjectStore"
    (plugin,) = spec["plugins"]
    assert plugin["name"] == "barman-cloud.cloudnative-pg.io" and plugin["isWALArchiver"]
    assert plugin["parameters"] == {"barmanObjectName": store["metadata"]["name"],
                                    "serverName": cluster["metadata"]["name"]}  # fmt: skip
    conf = store["spec"]["configuration"]
    assert conf["destinationPath"].startswith("s3://luna-backups-")
    assert conf["endpointURL"].startswith("https://")
    assert conf["wal"]["encryption"] == conf["data"]["encryption"] == "AES256"
    assert store["spec"]["retentionPolicy"].endswith("d")
    assert int(spec["postgresql"]["parameters"]["archive_timeout"].rstrip("s")) <= 60
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert all(not r["superuser"] for r in roles.values())
    assert roles["luna_monitor"]["inRoles"] == ["pg_monitor"]
    # Bootstrap SQL runs before the operator reconciles managed roles: it creates them first.
    sql = spec["bootstrap"]["initdb"]["postInitApplicationSQL"]
    first_grant = next(i for i, line in enumerate(sql) if "TO luna_app" in line)
    assert "CREATE ROLE luna_app NOLOGIN;" in sql[:first_grant], sql
    (scheduled,) = [o for o in objects if o["kind"] == "ScheduledBackup"]
    assert scheduled["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert scheduled["spec"]["method"] == "plugin"
    assert scheduled["spec"]["pluginConfiguration"]["name"] == plugin["name"]


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_pg_hba_ends_with_a_reject_and_only_used_roles_log_in(stack: str) -> None:
    (cluster,) = [o for o in cnpg_objects(stack) if o["kind"] == "Cluster"]
    hba = cluster["spec"]["postgresql"]["pg_hba"]
    # CloudNativePG appends `host all all all scram-sha-256` after these rules.
    assert hba[0] == "hostnossl all all all reject", hba
    assert hba[-1] == "host all all all reject", f"{stack}: no final reject in {hba}"
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"] if r["login"]}
    (app,) = [name for name in roles if name != "luna_monitor"]
    assert set(roles) == {app, "luna_monitor"}, roles
    # The app logs in as a member of the NOLOGIN group luna_app, renamed with its password.
    assert APP_LOGIN_RE.match(app), f"{stack}: the app logs in as {app!r}"
    assert roles[app]["inRoles"] == ["luna_app"] and roles[app]["inherit"] is True, roles[app]
    assert "luna_app" not in roles, f"{stack}: the group itself is declared LOGIN"
    assert "hostssl luna luna_owner,+luna_app,luna_monitor all scram-sha-256" in hba, hba
    sql = " ".join(cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"])
    assert "luna_backup" not in sql, f"{stack}: pgBackRest's role exists on Kubernetes"
    assert "GRANT CONNECT ON DATABASE luna TO luna_app, luna_monitor;" in sql


def test_synchronous_durability_comes_with_failover_quorum() -> None:
    for stack in KUBE_STACKS:
        (cluster,) = [o for o in cnpg_objects(stack) if o["kind"] == "Cluster"]
        sync = cluster["spec"]["postgresql"].get("synchronous")
        if stack == "prod":
            assert sync and sync["number"] >= 1, "prod has a synchronous standby"
        if sync and sync.get("dataDurability") == "required":
            # Without it CloudNativePG may promote a standby that lacks acknowledged
            # commits (docs/src/failover.md, "Failover Quorum").
            assert sync.get("failoverQuorum") is True, f"{stack}: {sync}"


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

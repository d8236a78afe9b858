"""Day-2 properties of the CloudNativePG database: install path, reloads, protection,
password rotation order, and point-in-time restore as a setting."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pulumi_kubernetes.apiextensions import CustomResource

from infra.mocks import Record
from infra.render import main
from tests.conftest import rendered
from tests.kubernetes.cnpg_support import cnpg_objects, schema_errors
from tests.kubernetes.conftest import KUBE_STACKS

CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
SECRET = "kubernetes:core/v1:Secret"
RESTORE = (("restoreToTime", "2026-12-06T09:30:00Z"),)


def _records(stack: str, extra: tuple[tuple[str, str], ...] = ()) -> list[Record]:
    return list(rendered(stack, "kubernetes", extra).monitor.records.values())


def _cluster_reads(stack: str) -> set[str]:
    """Every Secret name the rendered Cluster and ObjectStore reference."""
    objects = cnpg_objects(stack)
    (cluster,) = [o for o in objects if o["kind"] == "Cluster"]
    (store,) = [o for o in objects if o["kind"] == "ObjectStore"]
    spec = cluster["spec"]
    names = {spec["certificates"]["serverTLSSecret"], spec["certificates"]["serverCASecret"],
             spec["bootstrap"]["initdb"]["secret"]["name"]}  # fmt: skip
    names |= {r["passwordSecret"]["name"] for r in spec["managed"]["roles"]}
    names |= {ref["name"] for ref in store["spec"]["configuration"]["s3Credentials"].values()}
    return names


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_every_secret_the_cluster_reads_reloads_and_is_kept_with_it(stack: str) -> None:
    reads = _cluster_reads(stack)
    assert len(reads) >= 6, reads
    records = _records(stack)
    providers = {r.urn: r for r in records if r.type == "pulumi:providers:kubernetes"}
    secrets = {
        r.outputs["metadata"]["name"]: r
        for r in records
        if r.type == SECRET and r.outputs.get("metadata", {}).get("name") in reads
    }
    assert set(secrets) == reads, f"{stack}: Secrets not rendered: {reads - set(secrets)}"
    want = stack == "prod"
    for name, r in secrets.items():
        labels = r.inputs["metadata"]["labels"]
        # Without it CloudNativePG applies a rotated password only at a later reconcile.
        assert labels.get("cnpg.io/reload") == "true", f"{stack}: {name} has no reload label"
        assert r.protect is want and r.retain_on_delete is want, f"{stack}: {name} protect"
        # Protected, a rotation must be an in-place update: only a provider with
        # mutable Secrets patches their data (tests/engine/facts.py).
        provider = providers[r.provider.rsplit("::", 1)[0]]
        assert provider.inputs.get("enableSecretMutable") == "true", (
            f"{stack}: {name} is managed by {provider.name}, whose Secrets are immutable"
        )
        assert not r.inputs.get("immutable"), f"{stack}: {name} is immutable"


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_only_the_clusters_secrets_are_mutable(stack: str) -> None:
    """Every other Secret is replaced under a new generated name when its data
    changes: that is what rolls the pods reading it (pods.py)."""
    reads = _cluster_reads(stack)
    records = _records(stack)
    mutable = {r.urn for r in records if r.type == "pulumi:providers:kubernetes"
               and r.inputs.get("enableSecretMutable") == "true"}  # fmt: skip
    for r in records:
        if not r.type.startswith("kubernetes:"):
            continue
        on_mutable = r.provider.rsplit("::", 1)[0] in mutable
        ours = r.type == SECRET and r.outputs.get("metadata", {}).get("name") in reads
        assert on_mutable is ours, f"{stack}: {r.name} on the mutable provider: {on_mutable}"
    (default,) = [r for r in records if r.type == "pulumi:providers:kubernetes"
                  and r.urn not in mutable]  # fmt: skip
    # Explicit: PULUMI_K8S_ENABLE_SECRET_MUTABLE in a shell would otherwise decide.
    assert default.inputs.get("enableSecretMutable") == "false", default.inputs


def test_what_archiving_needs_is_kept_with_the_cluster_in_prod() -> None:
    """`destroy --exclude-protected` leaves a Cluster that starts and archives."""
    records = _records("prod")
    kept = {r.type.rsplit(":", 1)[1] for r in records
            if r.type.startswith("kubernetes:") and "cnpg.io" in r.type and r.protect}  # fmt: skip
    assert kept >= {"Cluster", "ObjectStore", "ScheduledBackup"}, kept
    (policy,) = [r for r in records if r.name.endswith("netpol-database-cnpg")]
    assert policy.protect and policy.retain_on_delete
    egress = policy.inputs["spec"]["egress"]
    ports = {(p["protocol"], int(p["port"])) for rule in egress for p in rule.get("ports", [])}
    # The object store (443) and names (DNS) from the protected policy itself.
    assert {("TCP", 443), ("UDP", 53)} <= ports, ports
    # The Secrets it reads are kept too (their rotation is an in-place update).
    kept_secrets = {r.outputs["metadata"]["name"] for r in records
                    if r.type == SECRET and r.protect and r.retain_on_delete}  # fmt: skip
    assert _cluster_reads("prod") <= kept_secrets, _cluster_reads("prod") - kept_secrets


def test_app_rolls_only_after_its_role_secret_and_the_cluster() -> None:
    """Rotation order: the Secret (reload label) first, the operator's ALTER ROLE, then
    the app's new pods (docs/kubernetes.md, "Rotating a database password")."""
    records = _records("prod")
    by_urn = {r.urn: r for r in records}
    (cluster,) = [r for r in records if r.type == CLUSTER]
    (role_secret,) = [
        r for r in records
        if r.type == SECRET and r.outputs.get("metadata", {}).get("name") == "database-app-role"
    ]  # fmt: skip
    app = [r for r in records if r.type == "kubernetes:apps/v1:Deployment"
           and r.inputs["metadata"]["name"] == "app"]  # fmt: skip
    assert app, "no app Deployment"

    def waits_for(record: Record, target: Record, seen: frozenset[str] = frozenset()) -> bool:
        for dep in record.dependencies:
            if dep == target.urn or (dep not in seen and dep in by_urn
                                     and waits_for(by_urn[dep], target, seen | {dep})):  # fmt: skip
                return True
        return False

    assert waits_for(app[0], role_secret), "the app can roll before its role's Secret changes"
    assert waits_for(app[0], cluster), "the app can roll before the Cluster"


def test_install_path_renders_pinned_charts(tmp_path: Path) -> None:
    out = tmp_path / "render"
    code = main(["--stack", "staging", "--out", str(out), "--config", "platform=kubernetes",
                 "--config", "cnpgOperator=install"])  # fmt: skip
    assert code == 0
    releases = {
        r.inputs["chart"]: r
        for r in _records("staging", (("cnpgOperator", "install"),))
        if r.type == "kubernetes:helm.sh/v3:Release"
    }
    # charts/cloudnative-pg 0.29.0 ships operator 1.30.0; plugin-barman-cloud 0.7.0, v0.13.0.
    assert {c: r.inputs["version"] for c, r in releases.items()} == {
        "cloudnative-pg": "0.29.0",
        "plugin-barman-cloud": "0.7.0",
    }
    assert all(r.retain_on_delete for r in releases.values())
    plugin = releases["plugin-barman-cloud"]
    assert releases["cloudnative-pg"].urn in plugin.dependencies, "plugin before operator"
    assert (out / "manifests" / "cluster-database.yaml").is_file()


def test_prerequisites_are_checked_when_not_installed() -> None:
    read = _reads("staging", ())
    assert read == {"clusters.postgresql.cnpg.io", "objectstores.barmancloud.cnpg.io",
                    "certificates.cert-manager.io"}, read  # fmt: skip
    # Installed: cert-manager is still the admins' and still read first.
    assert _reads("staging", (("cnpgOperator", "install"),)) == {"certificates.cert-manager.io"}


def _reads(stack: str, extra: tuple[tuple[str, str], ...]) -> set[str]:
    """The CRDs the program reads (CustomResource.get) before creating anything."""
    from infra.render import on_platform, render

    seen: list[str] = []
    original = CustomResource.get

    def spy(name: str, api: str, kind: str, ident: str, opts: object = None) -> CustomResource:
        seen.append(ident)
        return original(name, api, kind, ident, opts=opts)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CustomResource, "get", staticmethod(spy))
        render(stack, overrides=[*on_platform("kubernetes"), *extra])
    return set(seen)


def test_restore_to_time_renders_a_recovery_cluster_that_validates() -> None:
    objects = cnpg_objects("prod", RESTORE)
    assert schema_errors(objects) == []
    (cluster,) = [o for o in objects if o["kind"] == "Cluster"]
    spec = cluster["spec"]
    assert "initdb" not in spec["bootstrap"]
    recovery = spec["bootstrap"]["recovery"]
    assert recovery["recoveryTarget"] == {"targetTime": "2026-12-06T09:30:00Z"}
    (source,) = spec["externalClusters"]
    assert recovery["source"] == source["name"]
    assert source["plugin"]["name"] == "barman-cloud.cloudnative-pg.io"
    # It reads the origin's folder and archives into a new one, never over it.
    assert source["plugin"]["parameters"]["serverName"] == "database"
    (plugin,) = spec["plugins"]
    assert plugin["parameters"]["serverName"] == "database-pitr-20261206t093000z"
    # Same name and labels: the stack's NetworkPolicies, certificate and app still fit.
    (normal,) = [o for o in cnpg_objects("prod") if o["kind"] == "Cluster"]
    assert cluster["metadata"]["name"] == normal["metadata"]["name"]
    assert spec["inheritedMetadata"] == normal["spec"]["inheritedMetadata"]
    (record,) = [r for r in _records("prod", RESTORE) if r.type == CLUSTER]
    assert record.delete_before_replace, "a new bootstrap must replace the Cluster"


@pytest.mark.parametrize(
    ("value", "platform"),
    [("2026-12-06 09:30", "kubernetes"), ("2026-13-06T09:30:00Z", "kubernetes"),
     ("2026-12-06T09:30:00", "kubernetes"), ("2026-12-06T09:30:00Z", "docker")],
)  # fmt: skip
def test_restore_to_time_refuses_bad_input_in_one_line(
    value: str, platform: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--stack", "staging", "--out", str(tmp_path / "o"), "--config",
                 f"platform={platform}", "--config", f"restoreToTime={value}"])  # fmt: skip
    # Besides the notes on placeholder secrets, one error line naming the key.
    err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("note: ")]
    assert code == 2
    assert len(err) == 1 and "restoreToTime" in err[0] and "Traceback" not in err[0], err


def test_recovery_manifest_on_disk_is_the_restore(tmp_path: Path) -> None:
    out = tmp_path / "r"
    code = main(["--stack", "prod", "--out", str(out), "--config", "platform=kubernetes",
                 "--config", "restoreToTime=2026-12-06T09:30:00+01:00"])  # fmt: skip
    assert code == 0
    cluster = yaml.safe_load((out / "manifests" / "cluster-database.yaml").read_text())
    target = cluster["spec"]["bootstrap"]["recovery"]["recoveryTarget"]["targetTime"]
    assert target == "2026-12-06T09:30:00+01:00"
    assert cluster["spec"]["plugins"][0]["parameters"]["serverName"].endswith("083000z")

"""Issue 23's controls as the render ships them (each real-program proof is named
beside its assertion): Docker's log cache and egress, the Elasticsearch and Redis
accounts, the edge's logging."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.configs.redis import EXPORTER_RULES
from infra.mocks import unwrap
from tests.conftest import rendered, resources_of

MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
# Services that must reach the internet: the OpenAI API, the object store (backups
# and the restore drill), the pager and the public crisis probe.
# Who needs the internet: the OpenAI API, the object store (WAL, backups, the drill,
# and Elasticsearch's audit snapshots), the receivers, and the edge probe.
EGRESS = {
    "app", "database", "database-backup", "database-drill", "alertmanager", "blackbox",
    "elasticsearch",
}  # fmt: skip


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_docker_keeps_no_host_copy_of_shipped_output(stack: str) -> None:
    """Dual logging off wherever the gelf driver ships (docs/logging.md)."""
    res = resources_of(rendered(stack, "docker"))
    shipped = 0
    for name, container in res.containers().items():
        opts = unwrap(container.inputs["logOpts"])
        if unwrap(container.inputs["logDriver"]) == "gelf":
            shipped += 1
            assert opts["cache-disabled"] == "true", f"{name}: keeps a local copy {opts}"
        else:
            assert opts["max-size"] and opts["max-file"], f"{name}: unbounded local log {opts}"
    assert shipped >= 5, f"{stack}: only {shipped} containers ship their logs"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_docker_egress_only_where_a_service_needs_the_internet(stack: str) -> None:
    """Every network is internal, or an edge that publishes without masquerade (no
    reply from outside, 169.254.169.254 included), unless its service needs egress.
    The rehearsal shows it on a real daemon (docs/compliance.md)."""
    res = resources_of(rendered(stack, "docker"))
    open_egress = []
    for net in res.of_type("docker:index/network:Network"):
        inputs = unwrap(net.inputs)
        name = inputs["name"]
        if inputs.get("internal"):
            continue
        assert name.endswith("-edge"), f"{name}: a shared network with a route off the host"
        if (inputs.get("options") or {}).get(MASQUERADE) != "false":
            open_egress.append(name)
    services = {re.sub(rf"^luna-{stack}-|-edge$", "", n) for n in open_egress}
    print(f"{stack}: networks with egress {sorted(open_egress)}")
    assert services <= EGRESS, f"{stack}: egress for {sorted(services - EGRESS)}"
    assert {"grafana", "kibana", "logstash", "proxy"}.isdisjoint(services), services


def test_redis_exporter_may_not_read_values() -> None:
    """tests/real/test_redis.py runs them against a real Redis."""
    allowed = set(re.findall(r"\+(\S+)", EXPORTER_RULES))
    assert not allowed & {"slowlog|get", "slowlog", "get", "mget", "scan", "eval", "dump"}
    assert "-@all" in EXPORTER_RULES.split() and "slowlog|len" in allowed


@pytest.mark.parametrize("platform", ["docker", "kubernetes"])
def test_kibana_keys_are_three_and_elasticsearch_audits(platform: str) -> None:
    r = rendered("staging", platform)
    keys = [
        rec
        for rec in r.monitor.records.values()
        if rec.type == "random:index/randomPassword:RandomPassword"
        and "kibana-" in rec.name
        and rec.name.endswith(("-key", "-saved-objects-key", "-reporting-key"))
    ]
    assert len(keys) == 3, sorted(k.name for k in keys)
    text = str(unwrap([rec.inputs for rec in r.monitor.records.values()]))
    assert "'xpack.security.audit.enabled': 'true'" in text or (
        "xpack.security.audit.enabled" in text
    ), "Elasticsearch audit logging is off"
    assert "kibana_operator_password" in r.outputs


def _k8s(kind: str, stack: str = "prod") -> list[dict[str, Any]]:
    r = rendered(stack, "kubernetes")
    return [
        unwrap(rec.inputs) for rec in r.monitor.records.values() if rec.type == f"kubernetes:{kind}"
    ]


def test_kubernetes_egress_only_to_configured_ports_and_never_private_ranges() -> None:
    """Every policy that reaches the internet excludes the private, link-local and
    CGNAT ranges in IPv4 and IPv6, and opens only the ports its service needs."""
    blocks = []
    for policy in _k8s("networking.k8s.io/v1:NetworkPolicy"):
        for rule in policy["spec"].get("egress") or []:
            cidrs = {
                t["ipBlock"]["cidr"]: t["ipBlock"] for t in rule.get("to", []) if "ipBlock" in t
            }
            if not cidrs:
                continue
            name = policy["metadata"]["name"]
            blocks.append(name)
            assert set(cidrs) == {"0.0.0.0/0", "::/0"}, f"{name}: {cidrs}"
            assert set(cidrs["0.0.0.0/0"]["except"]) == {
                "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
            }, name  # fmt: skip
            assert set(cidrs["::/0"]["except"]) == {"fc00::/7", "fe80::/10"}, name
            ports = {p["port"] for p in rule["ports"]}
            assert ports and ports <= {443, 587, 465}, f"{name}: egress ports {ports}"
    assert len(blocks) >= 3, f"internet egress policies: {blocks}"


def test_collector_tolerates_no_taint() -> None:
    (collector,) = [d for d in _k8s("apps/v1:DaemonSet") if "log-collector" in str(d["metadata"])]
    assert "tolerations" not in collector["spec"]["template"]["spec"]


def test_app_namespace_enforces_restricted_and_the_collector_lives_apart() -> None:
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"] for n in _k8s("core/v1:Namespace")}
    app = namespaces["luna-prod"]
    assert app["pod-security.kubernetes.io/enforce"] == "restricted", app
    logging = namespaces["luna-prod-logging"]
    assert logging["pod-security.kubernetes.io/enforce"] == "privileged", logging
    (collector,) = [d for d in _k8s("apps/v1:DaemonSet") if "log-collector" in str(d["metadata"])]
    assert collector["metadata"]["namespace"] == "luna-prod-logging"
    pod = collector["spec"]["template"]["spec"]
    assert pod.get("automountServiceAccountToken") is False, "the collector reads no API"
    hostpaths = [v for v in pod["volumes"] if "hostPath" in v]
    assert all(v["hostPath"]["path"].startswith("/var/") for v in hostpaths), hostpaths
    # Nothing else runs outside the app namespace, and nothing inside it needs a hostPath.
    for kind in ("apps/v1:Deployment", "apps/v1:StatefulSet", "batch/v1:CronJob", "batch/v1:Job"):
        for obj in _k8s(kind):
            assert obj["metadata"]["namespace"] == "luna-prod", obj["metadata"]
            assert "hostPath" not in str(obj["spec"]), f"{obj['metadata']}: hostPath"
    policies = {
        (p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"]
        for p in _k8s("networking.k8s.io/v1:NetworkPolicy")
    }
    own = policies[("luna-prod-logging", "log-collector")]
    assert own["ingress"] == [] and len(own["egress"]) == 2, own
    logstash = policies[("luna-prod", "logstash")]
    peers = [peer for rule in logstash["ingress"] for peer in rule["from"]]
    assert any(
        p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        == "luna-prod-logging"
        for p in peers
    ), peers


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_docker_backup_and_drill_loops_stop_on_sigterm_with_their_children(stack: str) -> None:
    """They run in the postgres image, whose STOPSIGNAL is SIGINT: measured on the
    rehearsal's daemon, a shell loop behind Docker's init ignored it until its grace
    ran out (15 s) and was SIGKILLed, its running pgBackRest with it; on SIGTERM to
    the process group it stops in 0.1 s. The server keeps the image's SIGINT."""
    res = resources_of(rendered(stack, "docker"))
    sidecars = {n: c for n, c in res.containers().items()
                if n.endswith(("database-backup", "database-drill"))}  # fmt: skip
    assert len(sidecars) == 2, f"{stack}: backup and drill containers: {sorted(sidecars)}"
    for name, c in sidecars.items():
        signal, envs = unwrap(c.inputs.get("stopSignal")), unwrap(c.inputs["envs"])
        assert signal == "SIGTERM", f"{name}: stops on {signal or 'the image SIGINT'}"
        assert "TINI_KILL_PROCESS_GROUP=1" in envs, f"{name}: init signals the loop only"
    server = [c for n, c in res.containers().items() if n.endswith("database")]
    assert server and not unwrap(server[0].inputs.get("stopSignal")), "PostgreSQL's own signal"

"""What the Kubernetes objects promise: references, labels, hardening, flows, scaling, data."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from infra.mocks import unwrap
from infra.render import render
from tests.kubernetes.conftest import KUBE_STACKS, ident, manifests, render_k8s
from tests.kubernetes.pods import matches, pod_template, workloads
from tests.support.harness import is_secret, plain_dump

LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)
DATA_SERVICES = ("database", "cache", "elasticsearch")

# Exactly the flows the system needs (source -> target), DNS aside.
EXPECTED_FLOWS = {
    ("proxy", "app"),
    ("app", "database"),
    ("app", "cache"),
    ("app-migrate", "database"),
    ("blackbox", "app"),
    ("postgres-exporter", "database"),
    ("redis-exporter", "cache"),
    ("nginx-exporter", "proxy"),
    ("prometheus", "app"),
    ("prometheus", "blackbox"),
    ("prometheus", "postgres-exporter"),
    ("prometheus", "redis-exporter"),
    ("prometheus", "nginx-exporter"),
    ("prometheus", "pushgateway"),
    # The restore drill reports its result (components/platforms/kubernetes/drill.py).
    ("database-drill", "pushgateway"),
    # CloudNativePG: instances replicate from each other; Prometheus scrapes each instance.
    ("database", "database"),
    ("prometheus", "database"),
    ("grafana", "prometheus"),
    ("prometheus", "alertmanager"),
    # The two Alertmanager replicas gossip (silences, notification log).
    ("alertmanager", "alertmanager"),
    ("log-collector", "logstash"),
    ("logstash", "elasticsearch"),
    ("kibana", "elasticsearch"),
    ("elasticsearch-setup", "elasticsearch"),
}


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = _by_kind(objects, kind)
    assert name in found, f"no {kind}/{name}; have {sorted(found)}"
    return found[name]


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_every_reference_resolves(stack: str) -> None:
    objects = manifests(stack)
    secrets, maps = _by_kind(objects, "Secret"), _by_kind(objects, "ConfigMap")
    claims = _by_kind(objects, "PersistentVolumeClaim")
    templates = [pod_template(w)["metadata"]["labels"] for w, _ in workloads(objects)]
    # CloudNativePG's instance pods: the operator adds cnpg.io/cluster to the inherited labels.
    templates += [
        {**c["spec"]["inheritedMetadata"]["labels"], "cnpg.io/cluster": c["metadata"]["name"]}
        for c in objects
        if c["kind"] == "Cluster"
    ]
    for workload, template in workloads(objects):
        pod = template["spec"]
        assert "serviceAccountName" not in pod, f"{ident(workload)} names a service account"
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, f"{ident(workload)}: {volume}"
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps, f"{ident(workload)}: {volume}"
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in claims, f"{ident(workload)}: claim {claim}"
        names = {v["name"] for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in names, f"{ident(workload)}: mount {mount['name']}"
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{ident(workload)}: {env['name']}"
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (
                        f"{ident(workload)}: {env['name']} key missing in {ref['name']}"
                    )
    for obj in objects:
        selector: dict[str, str] | None = None
        if obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
        elif obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
        elif obj["kind"] == "NetworkPolicy":
            selector = obj["spec"]["podSelector"]["matchLabels"]
            peers = [
                p
                for rules in (obj["spec"].get("ingress", []), obj["spec"].get("egress", []))
                for rule in rules
                for p in rule.get("from", []) + rule.get("to", [])
                if "podSelector" in p and "namespaceSelector" not in p
            ]
            for peer in peers:
                wanted = peer["podSelector"]["matchLabels"]
                assert any(matches(wanted, t) for t in templates), f"{ident(obj)} peer {wanted}"
        elif obj["kind"] == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]
            assert target["name"] in _by_kind(objects, target["kind"]), f"{ident(obj)} target"
        if selector:
            assert any(matches(selector, t) for t in templates), f"{ident(obj)} selects no pod"


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_every_object_carries_the_standard_labels(stack: str) -> None:
    for obj in manifests(stack):
        labels = obj["metadata"].get("labels") or {}
        missing = [label for label in LABELS if label not in labels]
        assert missing == [], f"{ident(obj)} lacks {missing}"
    for workload, template in workloads(manifests(stack)):
        labels = template["metadata"]["labels"]
        assert all(label in labels for label in LABELS), f"{ident(workload)} pod labels"


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_every_pod_is_hardened(stack: str) -> None:
    for workload, template in workloads(manifests(stack)):
        pod, name = template["spec"], ident(workload)
        assert pod["automountServiceAccountToken"] is False, f"{name}: service account token"
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{name}: {key}"
        collector = workload["metadata"]["name"] == "log-collector"
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in ctx["capabilities"], f"{name} adds capabilities"
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert ctx["runAsNonRoot"] is (not collector), f"{name}: runAsNonRoot"
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert set(resources[part]) == {"cpu", "memory"}, f"{name}: {part}"
            image = container["image"]
            assert ":" in image.split("/")[-1] or "@sha256:" in image, f"{name}: unpinned"
            assert not image.endswith(":latest"), f"{name}: latest"
            skips = " ".join((workload["metadata"].get("annotations") or {}).values())
            if not ctx["readOnlyRootFilesystem"]:
                assert "CKV_K8S_22=" in skips, f"{name}: writable root without a reason"
            for env in container.get("env", []):
                assert "value" in env or "secretKeyRef" in env["valueFrom"], f"{name}: {env}"
        for volume in pod.get("volumes", []):
            if "hostPath" in volume:
                assert collector, f"{name} mounts a hostPath"
                mounts = [m for c in pod["containers"] for m in c["volumeMounts"]]
                # One writable exception: the collector's own state directory
                # (read positions, disk buffer), one per namespace.
                if volume["hostPath"]["path"] == f"/var/lib/luna-log-collector/luna-{stack}":
                    continue
                assert all(m.get("readOnly") for m in mounts if m["name"] == volume["name"]), name


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_secret_env_never_holds_a_literal(stack: str) -> None:
    secret_names = {"DATABASE_URL", "JWT_SECRET", "POSTGRES_PASSWORD", "ELASTIC_PASSWORD"}
    for workload, template in workloads(manifests(stack)):
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] in secret_names:
                    assert "valueFrom" in env, f"{ident(workload)}: {env['name']} is a literal"


def _flows(objects: list[dict[str, Any]]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(egress flows, ingress flows) between pods, by app.kubernetes.io/name."""
    egress, ingress = set(), set()
    for policy in _by_kind(objects, "NetworkPolicy").values():
        own = policy["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name")
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                other = (peer.get("podSelector") or {}).get("matchLabels", {})
                # A namespaceSelector names the collector's way into the stack's
                # namespace (collector.py); its pods are still the stack's.
                if "app.kubernetes.io/name" in other:
                    egress.add((own, other["app.kubernetes.io/name"]))
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                other = (peer.get("podSelector") or {}).get("matchLabels", {})
                if "app.kubernetes.io/name" in other:
                    ingress.add((other["app.kubernetes.io/name"], own))
    return egress, ingress


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_network_is_default_deny_then_exactly_the_needed_flows(stack: str) -> None:
    objects = manifests(stack)
    deny = _one(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {"matchLabels": {}}, "default-deny must select every pod"
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"], "default-deny types"
    assert deny["ingress"] == [] and deny["egress"] == [], "default-deny allows something"
    dns = _one(objects, "NetworkPolicy", "allow-dns")["spec"]
    assert {p["port"] for r in dns["egress"] for p in r["ports"]} == {53}, "DNS policy"
    egress, ingress = _flows(objects)
    assert egress == EXPECTED_FLOWS, (
        f"egress extra {egress - EXPECTED_FLOWS}, missing {EXPECTED_FLOWS - egress}"
    )
    assert ingress == EXPECTED_FLOWS, (
        f"ingress extra {ingress - EXPECTED_FLOWS}, missing {EXPECTED_FLOWS - ingress}"
    )
    for policy in _by_kind(objects, "NetworkPolicy").values():
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            assert rule.get("ports"), f"{ident(policy)} opens every port"
            for peer in rule.get("from", []) + rule.get("to", []):
                if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0":
                    owner = policy["metadata"]["name"]
                    # The database's archiver, its restore drill and Elasticsearch's
                    # snapshots reach the object store off the cluster; Alertmanager
                    # notifies pagers and chat; the blackbox exporter probes the
                    # public URL as users reach it.
                    assert owner in (
                        "proxy",
                        "app",
                        "database",
                        "database-drill",
                        "elasticsearch",
                        "alertmanager",
                        "blackbox",
                    ), (  # fmt: skip
                        f"{ident(policy)} opens the internet"
                    )
                    if "to" in rule:
                        assert "10.0.0.0/8" in peer["ipBlock"]["except"], ident(policy)
                        assert [p["port"] for p in rule["ports"]] == [443], ident(policy)


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_only_the_edge_is_reachable_from_outside(stack: str) -> None:
    objects = manifests(stack)
    for service in _by_kind(objects, "Service").values():
        kind = service["spec"].get("type", "ClusterIP")
        if service["metadata"]["name"] == "proxy-edge":
            assert kind == "LoadBalancer", "the edge is a LoadBalancer"
            assert {p["port"] for p in service["spec"]["ports"]} == {80, 443}, "edge ports"
        else:
            assert kind == "ClusterIP", f"{ident(service)} is {kind}"
    for workload, template in workloads(objects):
        for container in template["spec"]["containers"]:
            for port in container.get("ports", []):
                assert "hostPort" not in port, f"{ident(workload)} uses a hostPort"


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_app_rolls_without_losing_capacity_scales_and_drains(stack: str) -> None:
    objects = manifests(stack)
    app = _one(objects, "Deployment", "app")
    replicas = {"staging": 2, "prod": 3}[stack]
    rolling = app["spec"]["strategy"]
    assert rolling["type"] == "RollingUpdate", "app strategy"
    assert rolling["rollingUpdate"]["maxUnavailable"] == 0, "app may drop below capacity"
    hpa = _one(objects, "HorizontalPodAutoscaler", "app")["spec"]
    assert hpa["minReplicas"] == replicas and hpa["maxReplicas"] >= replicas, "app HPA"
    pdb = _one(objects, "PodDisruptionBudget", "app")["spec"]
    assert pdb["maxUnavailable"] == 1, "the app PDB must let nodes drain"
    pod = app["spec"]["template"]["spec"]
    spread = pod["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname", "app spread across nodes"
    container = pod["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/api/health", f"app {probe}"


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_migration_job_gates_the_app(stack: str) -> None:
    r = render_k8s(stack)
    jobs = [x for x in r.monitor.records.values() if x.type == "kubernetes:batch/v1:Job"]
    migrate = next(j for j in jobs if j.name == "luna-app-migrate")
    app = next(x for x in r.monitor.records.values() if x.name == "luna-app-web")
    assert migrate.urn in app.dependencies, "the app Deployment must wait for the migration Job"


def test_migration_job_name_changes_with_the_image() -> None:
    def name(image: str) -> str:
        objects = render("staging", overrides=[("platform", "kubernetes"), ("appImage", image)])
        found = [
            o["metadata"]["name"]
            for o in objects.manifests()
            if o["kind"] == "Job" and o["metadata"]["name"].startswith("app-migrate-")
        ]
        assert len(found) == 1, f"migration jobs: {found}"
        return str(found[0])

    first, again = name("ghcr.io/luna-app/luna-web:1.0.0"), name("ghcr.io/luna-app/luna-web:1.0.0")
    other = name("ghcr.io/luna-app/luna-web:1.0.1")
    assert first == again, "the Job name must be stable for one image"
    assert first != other, "a new image must run a new Job"


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_data_services_are_stateful_with_claims_and_the_database_is_cloudnativepg(
    stack: str,
) -> None:
    objects = manifests(stack)
    sets = _by_kind(objects, "StatefulSet")
    for service in ("elasticsearch", "prometheus"):
        pod = sets[service]["spec"]["template"]["spec"] if service in sets else None
        assert pod, f"{service} is not a StatefulSet"
        assert any("persistentVolumeClaim" in v for v in pod["volumes"]), f"{service} claim"
    assert "database" not in sets, "PostgreSQL is a hand-made StatefulSet again"
    assert "database" in _by_kind(objects, "Cluster"), "no CloudNativePG Cluster"
    assert "cache" in _by_kind(objects, "Deployment"), "Redis runs"


def test_prod_protects_data_and_its_guards_never_processes() -> None:
    # The protected database's own flows and DNS go with it: a retained cluster
    # must still start and archive after `destroy --exclude-protected` (test_day2).
    # database-drill: its scratch claim holds a restored copy of the health data.
    guards = {"default-deny", "allow-dns", "database", "database-cnpg", "database-drill",
              "elasticsearch", "logstash", "prometheus", "pushgateway", "grafana"}  # fmt: skip
    for stack, want in (("prod", True), ("staging", False)):
        records = list(render_k8s(stack).monitor.records.values())
        claims = [r for r in records if r.type == "kubernetes:core/v1:PersistentVolumeClaim"]
        assert len(claims) >= 4, f"{stack}: {[r.name for r in claims]}"
        (cluster,) = [r for r in records if r.type == "kubernetes:postgresql.cnpg.io/v1:Cluster"]
        assert cluster.protect is want and cluster.retain_on_delete is want, stack
        for r in claims:
            assert r.protect is want, f"{stack}: {r.name} protect={r.protect}"
            assert r.retain_on_delete is want, f"{stack}: {r.name} retain={r.retain_on_delete}"
        for r in records:
            if r.type.startswith("kubernetes:apps/v1:"):
                # Workloads change with every image or setting: protection would fail them.
                assert not r.protect, f"{stack}: workload {r.name} is protected"
            if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy":
                fenced = r.name.removeprefix("luna-kubernetes-netpol-") in guards
                assert r.protect is (want and fenced), f"{stack}: {r.name} protect={r.protect}"


def test_prometheus_discovers_each_app_replica_through_dns() -> None:
    files = render_k8s("prod").files()
    config = next(t for p, t in files.items() if p.endswith("/etc/prometheus/prometheus.yml"))
    assert "dns_sd_configs" in config and "app-pods" in config, "app scrape by DNS"
    assert "kubernetes_sd_configs" not in config, "promtool on Debian lacks kubernetes_sd"


def test_kubernetes_objects_use_the_explicit_provider() -> None:
    records = render_k8s("prod").monitor.records.values()
    providers = [r for r in records if r.type == "pulumi:providers:kubernetes"]
    # The platform's, and its twin with mutable Secrets for the database's (test_cnpg_ops).
    assert len(providers) == 2, "two explicit kubernetes providers"
    assert len({r.inputs.get("clusterIdentifier") for r in providers}) == 1, "one cluster"
    for r in records:
        if r.type.startswith("kubernetes:"):
            assert any(r.provider.startswith(p.urn + "::") for p in providers), (
                f"{r.name} uses {r.provider!r}"
            )


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_edge_survives_drains_and_rollouts(stack: str) -> None:
    objs = manifests(stack)
    proxy = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "proxy")
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler"
               and o["spec"]["scaleTargetRef"]["name"] == "proxy")  # fmt: skip
    assert hpa["spec"]["minReplicas"] >= 2, f"{stack}: edge floor {hpa['spec']['minReplicas']}"
    name = "app.kubernetes.io/name"
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"
            and o["spec"]["selector"]["matchLabels"][name] == "proxy"]  # fmt: skip
    assert pdbs and pdbs[0]["spec"]["maxUnavailable"] == 1, f"{stack}: edge PDB {pdbs}"
    pod = proxy["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    (container,) = pod["containers"]
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    drain = int(sleep[1])
    # Longer than the load balancer needs to drop a target (luna:edgeDrainSeconds).
    assert sleep[0] == "sleep" and drain >= 40, f"{stack}: preStop {sleep}"
    assert pod["terminationGracePeriodSeconds"] > drain, f"{stack}: grace ends the drain early"
    strategy = proxy["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0, f"{stack}: edge rollout {strategy}"


def test_migration_job_is_awaited_for_its_whole_deadline() -> None:
    records = render_k8s("prod").monitor.records.values()
    job = next(r for r in records if r.type == "kubernetes:batch/v1:Job")
    deadline = unwrap(job.inputs)["spec"]["activeDeadlineSeconds"]
    # pulumi-kubernetes waits 10 minutes for a Job unless customTimeouts say otherwise.
    create = job.custom_timeouts.get("create", "10m")
    assert create.endswith("m") and int(create[:-1]) * 60 > deadline, (job.name, create, deadline)


def test_private_registry_credentials_reach_only_pods_pulling_from_it() -> None:
    r = render(
        "prod",
        overrides=[("platform", "kubernetes"), ("registryServer", "ghcr.io"),
                   ("registryUsername", "luna-bot")],
        secrets=[("registryPassword", "ghp-pull-token-123")],
    )  # fmt: skip
    secret = next(
        rec for rec in r.monitor.records.values()
        if rec.type == "kubernetes:core/v1:Secret" and rec.name.endswith("registry-credentials")
    )  # fmt: skip
    data = secret.inputs["stringData"]
    assert is_secret(data) or is_secret(data[".dockerconfigjson"]), "pull credentials in clear"
    assert "ghp-pull-token-123" in plain_dump(data), "the token does not reach the Secret"
    assert unwrap(secret.inputs["type"]) == "kubernetes.io/dockerconfigjson"
    for obj in r.manifests():
        spec = obj.get("spec") or {}
        pod = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec")
        if not pod:
            continue
        images = {c["image"] for c in pod["containers"]}
        pulls = pod.get("imagePullSecrets")
        if any(i.startswith("ghcr.io/") for i in images):
            assert pulls == [{"name": "registry-credentials"}], obj["metadata"]["name"]
        else:
            assert not pulls, f"{obj['metadata']['name']} gets credentials it does not need"


# What "the internet" must never include: the pod, service and node networks (RFC 1918),
# carrier-grade NAT (RFC 6598, some clusters' pod range), link-local with the cloud
# metadata service (169.254.169.254), and their IPv6 counterparts (unique-local
# fc00::/7, where AWS serves metadata at fd00:ec2::254, and link-local fe80::/10).
NEVER_THE_INTERNET = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
              "100.64.0.0/10", "fc00::/7", "fe80::/10")
)  # fmt: skip


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_internet_egress_never_reaches_private_or_link_local_addresses(stack: str) -> None:
    blocks = 0
    for policy in _by_kind(manifests(stack), "NetworkPolicy").values():
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "ipBlock" not in peer:
                    continue
                blocks += 1
                allowed = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                excepted = [ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", [])]
                for private in NEVER_THE_INTERNET:
                    if private.version != allowed.version or not private.overlaps(allowed):
                        continue
                    assert any(
                        e.version == private.version and private.subnet_of(e)  # type: ignore[arg-type]
                        for e in excepted
                    ), f"{ident(policy)}: egress to {allowed} reaches {private}"
    assert blocks, "no ipBlock egress found: the check checked nothing"

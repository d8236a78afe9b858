"""The whole program, per stack and platform, under engine-like mocks."""

from __future__ import annotations

import json
import re

import pytest

from infra.mocks import mask, unwrap
from infra.render import Rendered
from tests.conftest import PLATFORMS, STACKS, rendered, resources_of
from tests.support.harness import is_secret
from tests.support.inventory import data_records, exposed_ports, replica_count, workloads

DATA_SERVICES = ("database", "cache", "elasticsearch")
PROD_SERVICES = {
    "app", "app-migrate", "cache", "proxy", "prometheus",
    "grafana", "pushgateway", "blackbox", "postgres-exporter", "redis-exporter",
    "nginx-exporter", "elasticsearch", "elasticsearch-setup", "logstash", "kibana",
}  # fmt: skip


def services(r: Rendered) -> dict[str, list[dict[str, object]]]:
    return workloads(r)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_dev_runs_the_app_alone_with_sqlite(platform: str) -> None:
    found = services(rendered("dev", platform))
    assert set(found) == {"app", "app-migrate"}, f"dev deploys {sorted(found)}"


def test_dev_app_answers_on_localhost_3000_with_sqlite() -> None:
    # dev is a Docker stack by design (a laptop).
    app = services(rendered("dev", "docker"))["app"][0]
    ports = unwrap(app["ports"])
    assert ports == [{"internal": 3000, "external": 3000, "ip": "127.0.0.1", "protocol": "tcp"}]
    mounts = unwrap(app["mounts"])
    assert any(m["target"] == "/app/data" for m in mounts), f"app mounts {mounts}"


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_staging_and_prod_run_every_service(stack: str, platform: str) -> None:
    found = services(rendered(stack, platform))
    # Docker runs PostgreSQL, its backup loop and its restore drill as containers;
    # Kubernetes runs a CloudNativePG Cluster (tests/kubernetes/test_cnpg.py), which
    # is not a workload here.
    docker = {"database", "database-backup", "database-drill"}
    wanted = PROD_SERVICES | (docker if platform == "docker" else set())
    missing = wanted - set(found)
    assert not missing, f"{stack} lacks {sorted(missing)}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_prod_has_n_app_replicas(platform: str) -> None:
    count = replica_count(rendered("prod", platform), "app")
    assert count == 3, f"prod runs {count} app replicas on {platform}, wants 3"


def test_no_data_service_is_published_on_the_host(stack_render: tuple[str, str, Rendered]) -> None:
    stack, platform, r = stack_render
    for service in DATA_SERVICES:
        exposed = exposed_ports(r, service)
        assert not exposed, f"{stack}/{platform}: {service} is reachable from outside: {exposed}"


def test_only_the_edge_is_exposed_beyond_loopback(stack_render: tuple[str, str, Rendered]) -> None:
    stack, platform, r = stack_render
    for service in services(r):
        public = [
            p for p in exposed_ports(r, service) if p.get("ip", "*") != "127.0.0.1"
        ]  # fmt: skip
        if public:
            assert service == "proxy", f"{stack}/{platform}: {service} is public: {public}"


def test_physical_names_carry_the_stack(stack_render: tuple[str, str, Rendered]) -> None:
    stack, platform, r = stack_render
    checked = 0
    for rec in resources_of(r):
        if rec.type.split("/")[-1].split(":")[-1] in ("Container", "Network", "Volume"):
            name = unwrap(rec.inputs["name"])
            assert name.startswith(f"luna-{stack}-"), f"{rec.name} is named {name!r}"
            checked += 1
    # On Kubernetes the stack's namespace carries it.
    for obj in r.manifests():
        where = (
            obj["metadata"]["name"]
            if obj["kind"] == "Namespace"
            else obj["metadata"].get("namespace")
        )
        # The log collector's own namespace carries it too (collector.py).
        assert where in (f"luna-{stack}", f"luna-{stack}-logging"), (
            f"{obj['kind']} {obj['metadata']['name']} in {where}"
        )
        checked += 1
    assert checked, f"{stack}/{platform}: nothing named"


def test_stacks_never_collide_on_one_docker_host() -> None:
    names = {
        s: {
            unwrap(rec.inputs["name"])
            for rec in resources_of(rendered(s, "docker"))
            if rec.type.endswith(("container:Container", "network:Network", "volume:Volume"))
        }
        for s in STACKS
    }
    assert not names["dev"] & names["staging"], names["dev"] & names["staging"]
    assert not names["staging"] & names["prod"], names["staging"] & names["prod"]


def test_every_child_is_parented_and_named_after_its_component(
    stack_render: tuple[str, str, Rendered],
) -> None:
    _, _, r = stack_render
    res = resources_of(r)
    for rec in res:
        if rec.type.startswith("luna:") or rec.type.startswith("pulumi:providers:"):
            continue
        assert rec.parent, f"{rec.name} has no parent"
        parent = res.by_urn(rec.parent)
        assert parent.type.startswith("luna:"), f"{rec.name} is parented to {parent.type}"
        assert rec.name.startswith(parent.name + "-"), f"{rec.name} not named after {parent.name}"


def _images(r: Rendered) -> set[str]:
    refs = {unwrap(rec.inputs["name"]) for rec in resources_of(r).of_type("RemoteImage")}
    for items in workloads(r).values():
        for obj in items:
            if "kind" in obj:
                spec = obj["spec"].get("jobTemplate", {}).get("spec", obj["spec"])
                pod = spec["template"]["spec"]
                refs |= {c["image"] for c in pod["containers"] + pod.get("initContainers", [])}
    return refs


def test_images_are_pinned(stack_render: tuple[str, str, Rendered]) -> None:
    stack, platform, r = stack_render
    refs = _images(r)
    assert refs, f"{stack}/{platform}: no images"
    for ref in refs:
        assert ":" in ref.rsplit("/", 1)[-1] or "@sha256:" in ref, f"{stack}: {ref} unpinned"
        assert not ref.endswith(":latest"), f"{stack}: {ref} uses latest"


def test_every_platform_resource_uses_the_explicit_provider(
    stack_render: tuple[str, str, Rendered],
) -> None:
    _, platform, r = stack_render
    provider_type = "docker" if platform == "docker" else "kubernetes"
    checked = [rec for rec in resources_of(r) if rec.type.startswith(f"{provider_type}:")]
    assert checked, f"no {provider_type} resources"
    # Kubernetes: the database's Secrets use the platform's mutable-Secret twin
    # (tests/kubernetes/test_cnpg_ops.py says which).
    ours = (f"::luna-{platform}-provider::", f"::luna-{platform}-data-provider::")
    for rec in checked:
        assert any(p in rec.provider for p in ours), f"{rec.name} uses {rec.provider!r}"


def test_generated_passwords_are_secret_outputs(stack_render: tuple[str, str, Rendered]) -> None:
    _, _, r = stack_render
    for rec in resources_of(r).of_type("randomPassword:RandomPassword"):
        assert is_secret(rec.outputs["result"]), f"{rec.name}.result is not secret"


@pytest.mark.parametrize("stack", STACKS)
def test_secret_environment_reaches_docker_containers_as_secret(stack: str) -> None:
    # Kubernetes: tests/kubernetes checks every secret goes through secretKeyRef.
    for service, replicas in services(rendered(stack, "docker")).items():
        for inputs in replicas:
            envs = inputs.get("envs")
            text = json.dumps(unwrap(envs))
            if any(k in text for k in ("PASSWORD=", "DATABASE_URL=", "JWT_SECRET=", "_AUTH=")):
                assert is_secret(envs), f"{stack}: {service} env is not secret"


def test_no_secret_value_appears_in_the_render(stack_render: tuple[str, str, Rendered]) -> None:
    stack, _, r = stack_render
    generated = [
        unwrap(rec.outputs["result"])
        for rec in resources_of(r).of_type("randomPassword:RandomPassword")
    ]
    dumped = json.dumps(r.resources()) + json.dumps(list(r.files().values()))
    dumped += json.dumps(mask(r.outputs))
    for value in [*generated, "placeholder-openaiApiKey", "MOCK PRIVATE KEY"]:
        assert value not in dumped, f"{stack}: a secret leaked into the render"


def test_database_url_output_is_secret(stack_render: tuple[str, str, Rendered]) -> None:
    stack, _, r = stack_render
    assert is_secret(r.outputs["database_url"]), f"{stack}: database_url is not secret"
    assert r.outputs["app_url"].startswith("http"), r.outputs["app_url"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ui_urls_are_exported_where_deployed(platform: str) -> None:
    assert "grafana_url" not in rendered("dev", platform).outputs
    for stack in ("staging", "prod"):
        outputs = rendered(stack, platform).outputs
        assert {"grafana_url", "kibana_url"} <= set(outputs), f"{stack} outputs {outputs}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_prod_protects_and_retains_its_data(platform: str) -> None:
    data = data_records(rendered("prod", platform))
    assert len(data) >= 4, f"prod has only {[d.name for d in data]}"
    for rec in data:
        assert rec.protect and rec.retain_on_delete, f"prod {rec.type} {rec.name} is unprotected"
    res = resources_of(rendered("prod", platform))
    # Processes are replaced freely; protecting them would fail every change to them.
    db = res.named("luna-database-postgres")
    # Docker: the container is a process (its volume is the data); Kubernetes: the
    # CloudNativePG Cluster owns the data and is protected like a claim.
    assert db.protect is (platform == "kubernetes"), f"prod database {db.type} protect={db.protect}"
    passwords = res.of_type("randomPassword:RandomPassword")
    assert passwords, "prod generates no passwords"
    for rec in passwords:
        assert rec.protect, f"prod {rec.name} is unprotected: a destroy would orphan the data"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_staging_data_is_not_protected(platform: str) -> None:
    data = data_records(rendered("staging", platform))
    assert data, "staging has no persistent data"
    for rec in data:
        assert not rec.protect, f"staging {rec.type} {rec.name} is protected"


def test_app_starts_only_after_its_migration(stack_render: tuple[str, str, Rendered]) -> None:
    stack, platform, r = stack_render
    res = resources_of(r)
    if platform == "kubernetes":
        jobs = res.of_type("batch/v1:Job")
        migrate_job = next(j for j in jobs if j.name.startswith("luna-app-migrate"))
        apps = [d for d in res.of_type("apps/v1:Deployment") if d.name.startswith("luna-app-web")]
        assert apps, "no app Deployment"
        for dep in apps:
            assert migrate_job.urn in dep.dependencies, f"{stack}: {dep.name} does not wait"
        return
    migrate = res.named("luna-app-migrate")
    assert migrate.type == "command:local:Command", f"{stack}: migration is a {migrate.type}"
    # `docker start --attach` exits with the container's status: a failed
    # migration fails its own resource (tests/test_jobs.py runs the script).
    assert 'docker start --attach "$cid"' in unwrap(migrate.inputs["create"])
    web = [r for r in res.of_type("/container:Container") if r.name.startswith("luna-app-web")]
    assert web, "no app containers"
    for rec in web:
        assert migrate.urn in rec.dependencies, f"{stack}: {rec.name} does not wait"
        # Ordering travels in depends_on only: no input of the app names the job.
        assert migrate.urn not in rec.property_dependencies.get("labels", []), rec.name


def test_migration_runs_prisma_with_the_app_image(stack_render: tuple[str, str, Rendered]) -> None:
    stack, platform, r = stack_render
    if platform == "kubernetes":
        found = workloads(r)
        job = found["app-migrate"][0]["spec"]["template"]["spec"]["containers"][0]
        app = found["app"][0]["spec"]["template"]["spec"]["containers"][0]
        assert job["command"] == ["npx", "--no-install", "prisma", "migrate", "deploy"], job
        assert job["image"] == app["image"], f"{stack}: migration uses another image"
        return
    res = resources_of(r)
    migrate, web = res.named("luna-app-migrate"), res.containers()
    app = next(v for k, v in web.items() if k.endswith("-app") or k.endswith("-app-0"))
    script = unwrap(migrate.inputs["create"])
    image = unwrap(app.inputs["image"])
    assert f"{image} --no-install prisma migrate deploy" in script, script
    assert "--entrypoint npx" in script, script
    assert unwrap(migrate.inputs["triggers"]) == [image], "a new image does not re-run it"


def test_docker_networks_follow_the_declared_flows() -> None:
    # Kubernetes NetworkPolicies: tests/kubernetes.
    res = resources_of(rendered("prod", "docker"))
    nets = {r.urn: unwrap(r.inputs["name"]) for r in res.of_type("network:Network")}
    internal = {
        unwrap(r.inputs["name"]): bool(unwrap(r.inputs.get("internal")))
        for r in res.of_type("network:Network")
    }
    assert internal["luna-prod-database"], "the database network reaches outside the host"

    def joined(container: str) -> set[str]:
        inputs = res.containers()[container].inputs
        return {n["name"] for n in unwrap(inputs["networksAdvanced"])}

    assert "luna-prod-database" in joined("luna-prod-app-0")
    assert "luna-prod-database" not in joined("luna-prod-proxy"), "the edge can reach the database"
    assert "luna-prod-cache" not in joined("luna-prod-grafana"), "grafana can reach redis"
    assert nets, "no networks"


def test_logs_ship_to_logstash_on_the_host_loopback() -> None:
    res = resources_of(rendered("staging", "docker"))
    app = res.containers()["luna-staging-app-0"].inputs
    assert unwrap(app["logDriver"]) == "gelf"
    assert unwrap(app["logOpts"])["gelf-address"] == "udp://127.0.0.1:12201"
    logstash = res.containers()["luna-staging-logstash"].inputs
    assert {"internal": 12201, "external": 12201, "ip": "127.0.0.1", "protocol": "udp"} in unwrap(
        logstash["ports"]
    )
    dev_app = resources_of(rendered("dev", "docker")).containers()["luna-dev-app"].inputs
    assert unwrap(dev_app["logDriver"]) == "local", "dev ships logs nowhere"


@pytest.mark.parametrize("stack", STACKS)
def test_docker_containers_are_hardened(stack: str) -> None:
    # Kubernetes pod hardening: tests/kubernetes.
    for name, rec in resources_of(rendered(stack, "docker")).containers().items():
        inputs = unwrap(rec.inputs)
        assert inputs["capabilities"]["drops"] == ["ALL"], f"{stack}: {name} keeps capabilities"
        assert "no-new-privileges:true" in inputs["securityOpts"], f"{name} may escalate"
        assert inputs["memory"] > 0, f"{name} has no memory limit"
        assert inputs["restart"] in ("unless-stopped", "no"), f"{name} restart={inputs['restart']}"


def test_services_switch_on_one_by_one_in_dev() -> None:
    found = services(rendered("dev", "docker", (("cache", "true"),)))
    assert set(found) == {"app", "app-migrate", "cache"}, sorted(found)


def test_dev_without_proxy_outputs_localhost() -> None:
    assert rendered("dev", "docker").outputs["app_url"] == "http://localhost:3000"


def test_edge_finds_app_replicas_per_request_and_never_depends_on_their_inputs() -> None:
    r = rendered("prod", "docker")
    res = resources_of(r)
    proxy = res.named("luna-proxy-nginx")
    web = [x for x in res.of_type("/container:Container") if x.name.startswith("luna-app-web")]
    assert all(x.urn in proxy.dependencies for x in web), "proxy does not wait for the app"
    for prop, deps in proxy.property_dependencies.items():
        assert not set(deps) & {x.urn for x in web}, f"proxy input {prop} follows app replicas"
    conf = next(v for k, v in r.files().items() if k.endswith("/etc/nginx/luna/nginx.conf"))
    assert "resolver 127.0.0.11 " in conf and "proxy_pass http://$luna_app;" in conf, conf
    # Each replica answers to the service name once admitted healthy (docker/gate.py).
    gate = unwrap(res.named("luna-app-web-admission").inputs["create"])
    for rec in web:
        aliases = {a for n in unwrap(rec.inputs["networksAdvanced"]) for a in n.get("aliases", [])}
        assert "app" not in aliases, f"{rec.name} answers to the service name before it is healthy"
        name = unwrap(rec.inputs["name"])
        assert f"--alias app --alias app-{rec.name[-1]} luna-prod-app {name}" in gate, gate


def test_stateless_containers_are_replaced_create_before_delete() -> None:
    exclusive = {"proxy", "database", "elasticsearch", "prometheus", "grafana", "kibana",
                 "pushgateway", "database-drill", "logstash", "cache"}  # fmt: skip
    for name, rec in resources_of(rendered("prod", "docker")).containers().items():
        service = name.removeprefix("luna-prod-").rstrip("-0123456789")
        expected = service in exclusive
        assert rec.delete_before_replace is expected, (
            f"{name}: delete_before_replace={rec.delete_before_replace}, expected {expected}"
        )
        # Exclusive: a digest of the inputs; the others: drawn anew per replacement.
        suffix = r"[0-9a-f]{10}" if expected else r"[0-9a-f]{8}"
        assert re.fullmatch(rf"luna-prod-[a-z0-9-]+-{suffix}", unwrap(rec.inputs["name"]))


def test_only_edge_services_have_a_route_off_the_docker_host() -> None:
    res = resources_of(rendered("prod", "docker"))
    open_nets = {
        unwrap(r.inputs["name"])
        for r in res.of_type("network:Network")
        if not unwrap(r.inputs.get("internal"))
    }
    # The database, its backup loop, its drill and Elasticsearch's snapshots reach the
    # off-site object store; Alertmanager
    # notifies pagers and chat; the blackbox exporter probes the public URL.
    assert open_nets == {"luna-prod-app-edge", "luna-prod-proxy-edge", "luna-prod-grafana-edge",
                         "luna-prod-kibana-edge", "luna-prod-logstash-edge",
                         "luna-prod-database-edge", "luna-prod-database-drill-edge",
                         "luna-prod-database-backup-edge", "luna-prod-elasticsearch-edge",
                         "luna-prod-alertmanager-edge",
                         "luna-prod-blackbox-edge"}, open_nets  # fmt: skip
    for name, rec in res.containers().items():
        joined = {n["name"] for n in unwrap(rec.inputs["networksAdvanced"])}
        for net in joined & open_nets:
            owner = net.removeprefix("luna-prod-").removesuffix("-edge")
            assert name.startswith(f"luna-prod-{owner}"), f"{name} can leave the host via {net}"


def test_no_read_only_docker_container_ships_files() -> None:
    # Docker refuses uploads into a read-only root filesystem.
    for stack in STACKS:
        for name, rec in resources_of(rendered(stack, "docker")).containers().items():
            if unwrap(rec.inputs.get("readOnly")):
                assert not rec.inputs.get("uploads"), f"{name}: uploads into a read-only root"


def test_docker_services_with_health_checks_are_awaited() -> None:
    for name, rec in resources_of(rendered("prod", "docker")).containers().items():
        inputs = unwrap(rec.inputs)
        if inputs.get("healthcheck") and not inputs.get("attach"):
            assert inputs.get("wait") is True, f"{name} is not awaited until healthy"
            assert inputs["waitTimeout"] >= 60, f"{name} waits only {inputs['waitTimeout']} s"


def test_an_app_replica_is_checked_within_seconds_of_starting() -> None:
    """Docker 20.10 runs a container's first health check one ``interval`` after the
    start, so the interval bounds how soon a release's replica can take traffic and
    how soon a dead one is noticed; the wait still covers the whole start period."""
    for stack in STACKS:
        for name, rec in resources_of(rendered(stack, "docker")).containers().items():
            inputs = unwrap(rec.inputs)
            if "luna-app-web-" not in rec.name or rec.name.endswith("admission"):
                continue
            check = inputs["healthcheck"]
            assert check["interval"] == "5s", f"{name}: health checked every {check['interval']}"
            assert check["timeout"] in ("3s", "5s"), f"{name}: check timeout {check['timeout']}"
            least = 30 + int(check["retries"]) * 10
            assert inputs["waitTimeout"] >= least, f"{name} waits only {inputs['waitTimeout']} s"


def test_migration_waits_for_the_database(stack_render: tuple[str, str, Rendered]) -> None:
    stack, platform, r = stack_render
    res = resources_of(r)
    migrate = next(
        x
        for x in res
        if x.name.startswith("luna-app-migrate") and x.type.endswith(("Command", "Job"))
    )
    servers = [x for x in res if x.custom and x.name == "luna-database-postgres"]
    if stack == "dev":
        assert not servers, "dev runs PostgreSQL"
        return
    assert servers, f"{stack}/{platform}: no PostgreSQL workload"
    assert servers[0].urn in migrate.dependencies, f"{stack}/{platform}: migration races the db"


def test_gelf_port_keeps_stacks_logs_apart_on_one_host() -> None:
    res = resources_of(rendered("staging", "docker", (("gelfPort", "12202"),)))
    app = unwrap(res.containers()["luna-staging-app-0"].inputs)
    assert app["logOpts"]["gelf-address"] == "udp://127.0.0.1:12202", app["logOpts"]
    published = unwrap(res.containers()["luna-staging-logstash"].inputs["ports"])
    assert {"internal": 12201, "external": 12202, "ip": "127.0.0.1", "protocol": "udp"} in published


def test_prod_namespace_is_protected_and_staging_is_not() -> None:
    for stack, expected in (("prod", True), ("staging", False)):
        res = resources_of(rendered(stack, "kubernetes"))
        (namespace,) = [
            n
            for n in res.of_type("core/v1:Namespace")
            if unwrap(n.inputs["metadata"])["name"] == f"luna-{stack}"
        ]
        assert namespace.protect is expected, f"{stack} namespace protect={namespace.protect}"
        assert namespace.retain_on_delete is expected, f"{stack} namespace retain_on_delete"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_prometheus_and_elasticsearch_are_bounded_by_size_on_the_shared_disk(platform: str) -> None:
    # One Docker host shares one disk between PostgreSQL and the log and metric stores.
    found = workloads(rendered("prod", platform))
    flags: list[str] = []
    es_env: dict[str, str] = {}
    for item in found["prometheus"]:
        flags += unwrap(item.get("command") or []) if "kind" not in item else (
            item["spec"]["template"]["spec"]["containers"][0].get("args") or []
        )  # fmt: skip
    for item in found["elasticsearch"]:
        if "kind" in item:
            env = item["spec"]["template"]["spec"]["containers"][0]["env"]
            es_env = {e["name"]: e.get("value") for e in env}
        else:
            es_env = dict(e.split("=", 1) for e in unwrap(item["envs"]))
    size = [f for f in flags if f.startswith("--storage.tsdb.retention.size=")]
    assert size == ["--storage.tsdb.retention.size=40960MB"], flags  # 80% of 50 GiB
    flood = es_env.get("cluster.routing.allocation.disk.watermark.flood_stage")
    assert flood == "10gb", f"elasticsearch flood stage {flood!r}"  # free space kept, 100 GiB/10


def test_docker_pulls_with_registry_credentials_kept_secret() -> None:
    from infra.render import render

    r = render(
        "staging",
        overrides=[("platform", "docker"), ("registryServer", "ghcr.io"),
                   ("registryUsername", "luna-bot")],
        secrets=[("registryPassword", "ghp-pull-token-123")],
    )  # fmt: skip
    (provider,) = [x for x in r.monitor.records.values() if x.type == "pulumi:providers:docker"]
    # Provider configuration travels as JSON text; one secret field makes it all secret.
    auth = provider.inputs["registryAuth"]
    assert is_secret(auth), "the registry token reaches the provider in clear"
    (entry,) = json.loads(unwrap(auth))
    assert entry == {"address": "ghcr.io", "username": "luna-bot", "password": "ghp-pull-token-123"}
    assert "ghp-pull-token-123" not in json.dumps(mask(r.outputs)), "token in outputs"


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_workloads_output_names_every_running_service(stack: str, platform: str) -> None:
    # The runbooks take container and workload names from this output, never a pattern.
    r = rendered(stack, platform)
    names = unwrap(r.outputs["workloads"])
    # One-shot jobs (migration, setup, role grants) run and go: nothing to exec into.
    running = {s for s in services(r) if not s.endswith(("-migrate", "-setup", "-roles"))}
    missing = running - set(names)
    assert not missing, f"{stack}/{platform}: `workloads` lacks {sorted(missing)}"
    if platform == "docker":
        app = names["app"]
        assert len(app) == replica_count(r, "app"), f"one name per app container: {app}"
        assert all(n.startswith(f"luna-{stack}-app-") for n in app), app
    else:
        assert names["app"] == ["deployment/app"], names["app"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_edge_address_is_an_output_where_an_edge_runs(platform: str) -> None:
    assert "edge_address" in rendered("prod", platform).outputs
    assert "edge_address" not in rendered("dev", platform).outputs, "dev has no public edge"


def test_edge_address_reads_the_load_balancers_ingress() -> None:
    from components.platforms.kubernetes.workloads import _ingress

    class Ingress:  # an SDK output type: attributes, not keys
        ip = None
        hostname = "lb-1.elb.example"

    class Status:
        load_balancer = type("LB", (), {"ingress": [Ingress()]})()

    assert _ingress({"load_balancer": {"ingress": [{"ip": "203.0.113.7"}]}}) == "203.0.113.7"
    assert _ingress(Status()) == "lb-1.elb.example"
    assert _ingress(None) == "(no address yet)"


@pytest.mark.parametrize(
    ("host", "name"),
    [("ssh://deploy@staging-host", "staging-host"), ("ssh://a@h.example:2222", "h.example"),
     ("unix:///var/run/docker.sock", "localhost")],
)  # fmt: skip
def test_docker_edge_address_is_the_hosts_name(host: str, name: str) -> None:
    from components.platforms.docker import DockerPlatform, DockerPlatformArgs

    platform = object.__new__(DockerPlatform)
    platform._args = DockerPlatformArgs(stack="prod", host=host)
    assert platform.host_name == name

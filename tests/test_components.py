"""Each component on its own, on a Docker platform, under the mocks."""

from __future__ import annotations

import inspect
from urllib.parse import unquote, urlsplit

import pulumi
import pytest

from components.app import LunaApp, LunaAppArgs
from components.cache import Cache, CacheArgs
from components.certificates import InternalCA, InternalCAArgs
from components.configs.postgres import APP_LOGIN_RE
from components.database import BackupArgs, Database, DatabaseArgs
from components.logs import Logging
from components.monitoring import Monitoring
from components.platforms import Deployment
from components.platforms.docker import DockerPlatform, DockerPlatformArgs
from components.platforms.docker.postgres import roles_script
from components.proxy import ReverseProxy, ReverseProxyArgs
from components.spec import ObjectStoreTarget, ServiceSpec
from components.spec import Resources as Size
from infra.mocks import LunaMocks, unwrap
from tests.support.harness import Resources, is_secret, run_components

HOST = "unix:///var/run/docker.sock"


def platform() -> DockerPlatform:
    return DockerPlatform("luna-docker", DockerPlatformArgs(stack="test", host=HOST))


def test_component_type_tokens_match_class_names() -> None:
    def build() -> None:
        p = platform()
        Cache("luna-cache", CacheArgs(p, "redis:7.4.1-alpine", 64, "allkeys-lru", ca=ca()))
        Database("luna-database", DatabaseArgs(p, "sqlite", volume_gb=1))

    res = run_components(build)
    tokens = {r.type for r in res if not r.custom}
    for cls in (Cache, Database, DockerPlatform):
        assert any(t.endswith(f":{cls.__name__}") for t in tokens), f"{cls.__name__}: {tokens}"
    for component in (LunaApp, ReverseProxy, Monitoring, Logging):
        source = inspect.getsource(component.__init__)
        name = component.__name__
        assert f'"luna:components:{name}"' in source, f"{name}: type token"


def ca() -> InternalCA:
    return InternalCA("luna-ca", InternalCAArgs(stack="test"))


def test_cache_password_is_generated_and_secret_in_file_and_env() -> None:
    res = run_components(
        lambda: Cache(
            "luna-cache", CacheArgs(platform(), "redis:7.4.1-alpine", 64, "allkeys-lru", ca=ca())
        )
    )
    for name in ("luna-cache-password", "luna-cache-exporter-password"):
        password = res.named(name)
        assert is_secret(password.outputs["result"]), f"{name} is not secret"
        assert password.inputs["length"] >= 32, f"{name} is shorter than 32"
    redis = res.named("luna-cache-redis")
    assert is_secret(redis.inputs["envs"]), "REDISCLI_AUTH is not secret"
    assert is_secret(redis.inputs["uploads"]), "the ACL include and TLS key are not secret"
    assert not redis.inputs.get("ports"), "redis is published on the host"


def test_cache_url_is_tls_as_the_app_user_with_the_password_url_encoded() -> None:
    hostile = 'p@ss:/#?%"\\x41 word-0123456789'
    urls: list[str] = []

    def build() -> None:
        cache = Cache(
            "luna-cache",
            CacheArgs(platform(), "redis:7", 64, "allkeys-lru", password=hostile, ca=ca()),
        )
        cache.url.apply(urls.append)

    run_components(build)
    (url,) = urls
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("rediss", "cache", 6380), url
    assert parts.username == "app" and unquote(parts.password or "") == hostile, url


def test_sqlite_database_is_a_volume_and_no_server() -> None:
    res = run_components(
        lambda: Database("luna-database", DatabaseArgs(platform(), "sqlite", volume_gb=1))
    )
    assert not res.of_type("/container:Container"), "sqlite started a container"
    volume = res.named("luna-database-sqlite")
    assert unwrap(volume.inputs["name"]) == "luna-test-sqlite"


def _postgres(protect: bool = False) -> None:
    target = ObjectStoreTarget(
        bucket="luna-backups-test", endpoint="s3.example.com", region="eu-central-1",
        path="/luna-test", access_key_id=pulumi.Output.secret("AKIA"),
        secret_access_key=pulumi.Output.secret("s3-secret"),
        encryption_key=pulumi.Output.secret("cipher-pass"), retention_days=7,
    )  # fmt: skip
    Database(
        "luna-database",
        DatabaseArgs(
            platform(), "postgres", volume_gb=5,
            image="ghcr.io/luna-app/luna-postgres:15.10-pgbackrest2.45",
            ca=InternalCA("luna-ca", InternalCAArgs(stack="test")),
            backup=BackupArgs(target=target, schedule_hours=6, drill_hours=24),
            protect=protect,
        ),
    )  # fmt: skip


@pytest.mark.parametrize("protect", [True, False])
def test_postgres_protection_follows_args(protect: bool) -> None:
    res = run_components(lambda: _postgres(protect))
    for name in ("luna-database-postgres-data", "luna-database-postgres-drill-scratch"):
        vol = res.named(name)
        assert vol.protect is protect and vol.retain_on_delete is protect, name
    roles = ("password", "owner-password", "monitor-password", "superuser-password")
    for role in (*roles, "app-login-key"):
        assert res.named(f"luna-database-{role}").protect is protect, role
    # The process is replaceable; the data and its credentials are what is kept.
    assert res.named("luna-database-postgres").protect is False
    drill = unwrap(res.named("luna-database-postgres-drill").inputs)
    loop = drill["entrypoints"][-1]
    assert "sleep 86400" in loop and "/opt/luna/drill.sh" in loop, loop
    assert res.named("luna-database-postgres-run").protect is protect


def test_postgres_health_check_uses_pg_isready_and_secrets_stay_secret() -> None:
    res = run_components(_postgres)
    server = res.named("luna-database-postgres")
    health = unwrap(server.inputs["healthcheck"])
    assert health["tests"][:2] == ["CMD", "pg_isready"], health
    # No secret in any container's environment: `docker inspect` shows it.
    for container in res.of_type("/container:Container"):
        envs = " ".join(unwrap(container.inputs["envs"]))
        for word in ("PASSWORD=", "CIPHER", "S3_KEY", "cipher-pass", "s3-secret"):
            assert word not in envs, f"{container.name}: {word} in its environment"
    uploads = {u["file"]: u for u in unwrap(server.inputs["uploads"])}
    assert "repo1-cipher-pass=cipher-pass" in uploads["/etc/luna/postgres/secret/pgbackrest.conf"][
        "content"]  # fmt: skip
    assert is_secret(server.inputs["uploads"]), "the server's uploads are not secret"
    start = uploads["/opt/luna/start.sh"]["content"]
    assert " &\n" not in start and "exec docker-entrypoint.sh postgres" in start, start


def test_postgres_backups_run_beside_the_server_and_roles_before_clients() -> None:
    res = run_components(_postgres)
    backup = res.named("luna-database-postgres-backup")
    inputs = unwrap(backup.inputs)
    mounts = {m["target"]: m for m in inputs["mounts"]}
    assert mounts["/var/lib/postgresql/data"]["readOnly"] is True, mounts
    assert "/var/run/postgresql" in mounts, "the backup loop needs the server's socket"
    assert inputs["entrypoints"] == ["/bin/sh", "/opt/luna/backup.sh"], inputs["entrypoints"]
    roles = res.named("luna-database-postgres-roles")
    script = unwrap(roles.inputs["create"])
    assert "--network none" in script and "/opt/luna/roles.sh" in script, script
    # The passwords reach the job as files (secret Command environment), never its argv.
    assert is_secret(roles.inputs["environment"]), "the role job's environment is not secret"


def _app_login(password: str) -> str:
    """The login role the Docker role job creates for the app, for ``password``."""

    def build() -> None:
        Database(
            "luna-database",
            DatabaseArgs(
                platform(), "postgres", volume_gb=5, image="ghcr.io/luna-app/luna-postgres:15",
                ca=InternalCA("luna-ca", InternalCAArgs(stack="test")), password=password,
            ),
        )  # fmt: skip

    job = run_components(build).named("luna-database-postgres-roles")
    env: dict[str, str] = unwrap(job.inputs["environment"])
    names = [v for k, v in env.items() if k.startswith("LUNA_FILE_") and APP_LOGIN_RE.match(v)]
    assert len(names) == 1, f"luna-database-postgres-roles: app login files {names}"
    return names[0]


def test_the_app_login_role_follows_the_password_and_only_it() -> None:
    """A rotation renames the app's login role; the same password keeps the name (a
    rerun, or a rotation reverted, finds the role its replicas use)."""
    first, again = _app_login("first-Pa55word"), _app_login("first-Pa55word")
    second = _app_login("second-Pa55word")
    assert first == again, f"the same password, two names: {first} {again}"
    assert second != first, f"a rotated password kept the login role {first}"
    assert _app_login("first-Pa55word") == first, "a reverted rotation got a new name"


def test_role_job_reads_each_password_from_its_file() -> None:
    script = roles_script()
    assert "\\set app_password `cat /etc/luna/roles/app_password`" in script, script
    assert "\\set app_login `cat /etc/luna/roles/app_login`" in script, script
    assert "-v " not in script, "a password in psql's argument list"


def _app() -> None:
    LunaApp(
        "luna-app",
        LunaAppArgs(
            platform=platform(), image="ghcr.io/luna-app/luna-web:1.0.0",
            app_url="https://luna.test", node_env="production", replicas=2,
            resources=Size(512, 1.0), health_path="/api/health",
            database_url=pulumi.Output.secret("file:/app/data/dev.db"),
        ),
    )  # fmt: skip


def _migration() -> pulumi.Output[str]:
    p = platform()
    spec = ServiceSpec(name="app-migrate", image="busybox:1.36", resources=Size(32, 0.1),
                       workload="job")  # fmt: skip
    (job,) = p.deploy("luna-app-migrate", spec, parent=p).resources
    assert isinstance(job, pulumi.CustomResource)
    return job.urn


def test_a_failed_job_fails_its_own_resource() -> None:
    # Its dependants wait through depends_on (test_program checks the wiring); the
    # engine starts none of them after a failed step (tests/engine models that).
    with pytest.raises(Exception, match="luna-app-migrate: exit status 1"):
        run_components(_migration, mocks=LunaMocks(exit_codes={"luna-app-migrate": 1}))
    run_components(_migration)  # exit status 0 passes


def test_app_replicas_and_health_check() -> None:
    res = run_components(_app)
    web = [r for r in res.of_type("/container:Container") if r.name.startswith("luna-app-web")]
    assert len(web) == 2, [r.name for r in web]
    health = unwrap(web[0].inputs["healthcheck"])
    assert health["tests"][1:3] == ["node", "-e"] and "/api/health" in health["tests"][3]
    assert unwrap(web[0].inputs["memory"]) == 512
    assert is_secret(web[0].inputs["envs"])


def test_proxy_generates_a_self_signed_pair_without_config() -> None:
    res = run_components(
        lambda: ReverseProxy(
            "luna-proxy",
            ReverseProxyArgs(
                platform(),
                "nginxinc/nginx-unprivileged:1.27.2-alpine",
                "luna.test",
                Deployment("app", [], service_address="app:3000", resolver="127.0.0.11"),
            ),
        )
    )
    assert is_secret(res.named("luna-proxy-tls-key").outputs["privateKeyPem"])
    cert = unwrap(res.named("luna-proxy-tls-cert").inputs)
    assert cert["dnsNames"] == ["luna.test"]
    # The key reaches nginx through its live-files writer (docker/files.py), secret.
    env = res.named("luna-proxy-nginx-secret-files").inputs["environment"]
    assert is_secret(env) or any(is_secret(v) for v in env.values()), "the key is not secret"


def test_proxy_uses_supplied_certificate() -> None:
    res = run_components(
        lambda: ReverseProxy(
            "luna-proxy",
            ReverseProxyArgs(
                platform(),
                "nginxinc/nginx-unprivileged:1.27.2-alpine",
                "luna.test",
                Deployment("app", [], service_address="app:3000"),
                tls_cert="CERT",
                tls_key=pulumi.Output.secret("KEY"),
            ),
        )
    )
    assert not res.of_type("privateKey:PrivateKey"), "generated a key although one was supplied"


def test_flow_to_a_missing_service_fails() -> None:
    def build() -> None:
        p = platform()
        spec = ServiceSpec(name="lonely", image="busybox:1.36", resources=Size(32, 0.1),
                           connects_to=("database",))  # fmt: skip
        p.deploy("luna-lonely", spec, parent=p)
        p.finish()

    with pytest.raises(Exception, match="lonely connects to database"):
        run_components(build)


def test_resources_helper_names_missing_resource() -> None:
    with pytest.raises(AssertionError, match="no resource named"):
        Resources({}).named("nothing")


def test_internal_ca_issues_server_certificates_with_secret_keys() -> None:
    from components.certificates import InternalCA, InternalCAArgs

    def build() -> pulumi.Output[str]:
        ca = InternalCA("luna-ca", InternalCAArgs(stack="test"))
        issued = ca.issue("database", ["database", "database.luna-test.svc"])
        with pytest.raises(ValueError, match="twice"):
            ca.issue("database", ["database"])
        return issued.key_pem

    res = run_components(build)
    cert = unwrap(res.named("luna-ca-database-cert").inputs)
    assert "server_auth" in cert["allowedUses"] and cert["earlyRenewalHours"] == 60 * 24, cert
    assert is_secret(res.named("luna-ca-database-cert").inputs["caPrivateKeyPem"])
    csr = unwrap(res.named("luna-ca-database-csr").inputs)
    assert csr["dnsNames"] == ["database", "database.luna-test.svc"], csr
    root = unwrap(res.named("luna-ca-cert").inputs)
    assert root["isCaCertificate"] is True and "cert_signing" in root["allowedUses"], root

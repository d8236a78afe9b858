"""The rehearsal's images on a real private daemon: each stand-in keeps its official
image's contract, and the repository's own Dockerfiles really build on them.

One daemon and one ``ensure_images`` for the module, and one test that runs every
check (a module fixture used by several tests would be built again on the other
xdist worker), collecting every failure before it fails.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.mocks import unwrap
from tests.real.docker_host import DockerHost, docker_host, fastest_storage
from tests.real.support import RenderedStack, render_stack
from tests.rehearsal.images import ImageReport, ensure_images
from tests.support.tools import need

STAGING_POSTGRES = "ghcr.io/luna-app/luna-postgres:15.10-pgbackrest2.45"


@pytest.fixture(scope="module")
def staging() -> RenderedStack:
    return render_stack("staging", platform="docker")


def _pinned(staging: RenderedStack) -> list[str]:
    return sorted({r["name"] for r in staging.records("docker:index/remoteImage:RemoteImage")})


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    root = tmp_path_factory.mktemp("docker")
    yield from docker_host(root, bridge=True, storage=fastest_storage(root))


@pytest.fixture(scope="module")
def report(host: DockerHost, staging: RenderedStack) -> ImageReport:
    start = time.monotonic()
    made = ensure_images(host, _pinned(staging))
    print(f"\n{made.table()}\nload {made.load_seconds:.1f} s, all {time.monotonic() - start:.1f} s")
    return made


def test_a_tag_without_a_recipe_is_refused_before_the_daemon_is_asked() -> None:
    nowhere = DockerHost(socket="/nonexistent", env={"DOCKER_HOST": "unix:///nonexistent"})
    with pytest.raises(ValueError, match=r"image mysql:8\.0: no stand-in recipe"):
        ensure_images(nowhere, ["redis:7.4.1-alpine", "mysql:8.0"])


# -- helpers ---------------------------------------------------------------------------------


def _start(host: DockerHost, image: str, *args: str, name: str, cmd: tuple[str, ...] = ()) -> str:
    host.docker("run", "-d", "--name", name, *args, image, *cmd)
    return name


def _ip(host: DockerHost, name: str) -> str:
    networks = json.loads(host.docker("inspect", name).stdout)[0]["NetworkSettings"]["Networks"]
    return str(networks["bridge"]["IPAddress"])


def _ids(host: DockerHost, name: str) -> tuple[str, str]:
    """The real and the effective... uid and gid of the container's first process."""
    status = host.docker("exec", name, "cat", "/proc/1/status").stdout
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    gid = next(line.split()[1] for line in status.splitlines() if line.startswith("Gid:"))
    return uid, gid


def _until(what: str, probe: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.5)


def _get(ip: str, port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def _serves(ip: str, port: int, path: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return _get(ip, port, path)[0] == 200
        except OSError:
            return False

    return probe


def _ok(host: DockerHost, name: str, *argv: str) -> Callable[[], bool]:
    return lambda: host.docker("exec", name, *argv, check=False).returncode == 0


# -- the contracts ---------------------------------------------------------------------------


def _check_postgres(host: DockerHost, tmp: Path) -> None:
    """docker-entrypoint.sh: initdb from the env as root-stepped-down postgres (999),
    the init folder run, then `postgres` serving TCP with the password."""
    init = tmp / "initdb"
    init.mkdir()
    (init / "10-table.sql").write_text("CREATE TABLE rehearsal_marker (id int);\n")
    name = _start(host, "postgres:15.10-bookworm", "-e", "POSTGRES_PASSWORD=s3cret-pw",
                  "-e", "POSTGRES_USER=luna", "-e", "POSTGRES_DB=lunadb",
                  "-v", f"{init}:/docker-entrypoint-initdb.d:ro", name="pg")  # fmt: skip
    _until("postgres accepts TCP", _ok(host, name, "pg_isready", "-h", _ip(host, name)), 90)
    assert _ids(host, name) == ("999", "999"), _ids(host, name)
    psql = subprocess.run(
        [need("psql"), "-X", "-At", "-h", _ip(host, name), "-U", "luna", "-d", "lunadb", "-c",
         "SELECT current_user, to_regclass('rehearsal_marker') IS NOT NULL, "
         "(SELECT auth_method FROM pg_hba_file_rules ORDER BY line_number DESC LIMIT 1)"],
        env={"PGPASSWORD": "s3cret-pw", "PATH": "/usr/bin"}, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert psql.stdout.strip() == "luna|t|scram-sha-256", psql.stdout + psql.stderr
    logs = host.docker("logs", name).stdout
    assert "running /docker-entrypoint-initdb.d/10-table.sql" in logs, logs[-2000:]


def _check_redis(host: DockerHost) -> None:
    """docker-entrypoint.sh: an option as first argument means redis-server; as root it
    steps down to redis (999:1000) in /data. Debian's redis-server defaults to
    protected-mode yes where the official build patches it to no: asked for here, as
    the render's redis.conf sets it explicitly (yes)."""
    name = _start(host, "redis:7.4.1-alpine", name="redis", cmd=("--protected-mode", "no"))
    _until("redis answers PING", _ok(host, name, "redis-cli", "ping"))
    mode = host.docker("exec", name, "redis-cli", "config", "get", "protected-mode").stdout
    assert mode.split() == ["protected-mode", "no"], mode
    assert host.docker("exec", name, "redis-cli", "ping").stdout.strip() == "PONG"
    assert _ids(host, name) == ("999", "1000"), _ids(host, name)  # stepped down by gosu
    assert host.docker("exec", name, "pwd").stdout.strip() == "/data"


def _check_nginx(host: DockerHost, tmp: Path) -> None:
    """/docker-entrypoint.sh and the image's nginx.conf: conf.d served on 8080 as 101;
    stub_status (for the exporter below) is in Debian's nginx-light."""
    status = tmp / "status.conf"
    status.write_text("server { listen 8081; location = /stub_status { stub_status; } }\n")
    name = _start(host, "nginxinc/nginx-unprivileged:1.27.2-alpine", "-v",
                  f"{status}:/etc/nginx/conf.d/status.conf:ro", name="nginx")  # fmt: skip
    _until("nginx serves 8080", _serves(_ip(host, name), 8080, "/"))
    assert _ids(host, name) == ("101", "101"), _ids(host, name)
    # busybox wget, as the alpine image's health checks call it.
    got = host.docker("exec", name, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/").stdout
    assert "Welcome to nginx" in got, got
    logs = host.docker("logs", name)
    assert "Launching /docker-entrypoint.d/20-envsubst-on-templates.sh" in logs.stdout, logs
    # The access log is the container's stdout (a symlink to /dev/stdout).
    _until("the access log reaches docker logs",
           lambda: '"GET / HTTP/1.1" 200' in host.docker("logs", name).stdout)  # fmt: skip


def _check_prometheus_family(host: DockerHost, staging: RenderedStack) -> None:
    checks = {r.name: unwrap(r.inputs)["healthcheck"]["tests"][1:]
              for r in staging.rendered.monitor.records.values()
              if r.type == "docker:index/container:Container"
              and unwrap(r.inputs).get("healthcheck")}  # fmt: skip
    for image, name, port, path, ids in (
        ("prom/prometheus:v2.54.1", "prometheus", 9090, "/-/healthy", ("65534", "65534")),
        ("prom/alertmanager:v0.27.0", "alertmanager", 9093, "/-/healthy", ("65534", "65534")),
        ("prom/pushgateway:v1.9.0", "pushgateway", 9091, "/-/healthy", ("65534", "65534")),
        ("prom/blackbox-exporter:v0.25.0", "blackbox", 9115, "/metrics", ("0", "0")),
    ):
        _start(host, image, name=name)
        _until(f"{image} serves {path}", _serves(_ip(host, name), port, path))
        assert _ids(host, name) == ids, (image, _ids(host, name))
    # The rendered health checks, verbatim, in the stand-ins' default configuration.
    for name, rendered in (("prometheus", "luna-monitoring-prometheus"),
                           ("alertmanager", "luna-monitoring-alertmanager")):  # fmt: skip
        _until(f"{name}: {rendered}'s health check", _ok(host, name, *checks[rendered]))


def _check_ca_bundles(host: DockerHost) -> None:
    """The CA bundle where the official image has one (stand_ins.py _CA), and none in
    postgres, whose official image purges ca-certificates."""
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    for name in ("redis", "nginx", "prometheus", "alertmanager", "pushgateway", "blackbox"):
        assert host.docker("exec", name, "test", "-s", bundle, check=False).returncode == 0, name
    assert host.docker("exec", "pg", "test", "-e", bundle, check=False).returncode != 0


def _check_exporters(host: DockerHost) -> None:
    """Each exporter, as the official image starts it, finds its server up. Debian's
    nginx exporter (0.11) exits at start when nginx does not answer, where 1.x waits."""
    pg, redis, nginx = _ip(host, "pg"), _ip(host, "redis"), _ip(host, "nginx")
    dsn = f"postgresql://luna:s3cret-pw@{pg}:5432/lunadb?sslmode=disable"
    scrape = f"--nginx.scrape-uri=http://{nginx}:8081/stub_status"
    for image, name, port, env, cmd, up, ids in (
        ("quay.io/prometheuscommunity/postgres-exporter:v0.15.0", "pg-exporter", 9187,
         f"DATA_SOURCE_NAME={dsn}", (), "pg_up 1", ("65534", "65534")),
        ("oliver006/redis_exporter:v1.62.0-alpine", "redis-exporter", 9121,
         f"REDIS_ADDR=redis://{redis}:6379", (), "redis_up 1", ("59000", "59000")),
        ("nginx/nginx-prometheus-exporter:1.3.0", "nginx-exporter", 9113,
         "UNUSED=1", (scrape,), "nginx_up 1", ("1001", "1001")),
    ):  # fmt: skip
        _start(host, image, "-e", env, name=name, cmd=cmd)
        ip = _ip(host, name)
        _until(f"{image} serves /metrics", _serves(ip, port, "/metrics"))
        metrics = _get(ip, port, "/metrics")[1]
        assert up in metrics, f"{image}: no {up!r} in its metrics"
        assert _ids(host, name) == ids, (image, _ids(host, name))


def _check_built(host: DockerHost, report: ImageReport, staging: RenderedStack) -> None:
    built = {r.tag: r for r in report.images if r.kind == "built"}
    assert set(built) == {STAGING_POSTGRES, staging.setting("appImage")}, built
    image, base = json.loads(host.docker("image", "inspect", STAGING_POSTGRES,
                                         "postgres:15.10-bookworm").stdout)  # fmt: skip
    assert image["RootFS"]["Layers"][:2] == base["RootFS"]["Layers"], "not built on the stand-in"
    history = host.docker("history", "--no-trunc", STAGING_POSTGRES).stdout
    assert "apt-get install -y --no-install-recommends pgbackrest" in history, history
    version = host.docker("run", "--rm", "--entrypoint", "pgbackrest", STAGING_POSTGRES, "version")
    assert version.stdout.startswith("pgBackRest 2.45"), version.stdout
    # pgBackRest verifies the object store's certificate against the system's CAs,
    # which the official base purges: the shipped image must bring them back.
    bundle = host.docker("run", "--rm", "--entrypoint", "test", STAGING_POSTGRES, "-s",
                         "/etc/ssl/certs/ca-certificates.crt", check=False)  # fmt: skip
    assert bundle.returncode == 0, "luna-postgres has no CA bundle: pgBackRest cannot verify S3"
    # pgaudit loads as the shipped server loads it, and its extension installs.
    name = _start(host, STAGING_POSTGRES, "-e", "POSTGRES_PASSWORD=pw", name="luna-pg",
                  cmd=("postgres", "-c", "shared_preload_libraries=pgaudit"))  # fmt: skip
    _until("luna-postgres is ready", _ok(host, name, "pg_isready", "-h", _ip(host, name)), 90)
    assert _ids(host, name) == ("999", "999"), _ids(host, name)  # the Dockerfile's USER
    audit = host.docker("exec", name, "psql", "-XAt", "-c", "CREATE EXTENSION pgaudit",
                        "-c", "SHOW shared_preload_libraries")  # fmt: skip
    assert audit.stdout.split() == ["CREATE", "EXTENSION", "pgaudit"], audit.stdout
    app = json.loads(host.docker("image", "inspect", staging.setting("appImage")).stdout)[0]
    assert app["Config"]["User"] == "1001:1001", app["Config"]
    listing = host.docker("run", "--rm", "--entrypoint", "ls", staging.setting("appImage"),
                          "/app/server.js", "/app/node_modules/.bin/prisma")  # fmt: skip
    assert "/app/server.js" in listing.stdout, listing


@pytest.mark.slow
def test_stand_ins_keep_their_contracts_and_the_shipped_images_build(
    host: DockerHost, report: ImageReport, staging: RenderedStack, tmp_path: Path
) -> None:
    assert sorted(report.left_out) == sorted(t for t in _pinned(staging) if
        t.startswith(("grafana/", "docker.elastic.co/")))  # fmt: skip
    assert len(report.left_out) == 4, report.left_out
    stand_ins = [r for r in report.images if r.kind == "stand-in"]
    assert len(stand_ins) == 10 and all(r.package and r.version for r in stand_ins), stand_ins
    failures: list[str] = []
    checks: list[tuple[str, Callable[[], None]]] = [
        ("postgres", lambda: _check_postgres(host, tmp_path)),
        ("redis", lambda: _check_redis(host)),
        ("nginx", lambda: _check_nginx(host, tmp_path)),
        ("prometheus family", lambda: _check_prometheus_family(host, staging)),
        ("exporters", lambda: _check_exporters(host)),
        ("CA bundles", lambda: _check_ca_bundles(host)),
        ("built images", lambda: _check_built(host, report, staging)),
    ]
    for what, check in checks:
        start = time.monotonic()
        try:
            check()
        except AssertionError as failure:
            failures.append(f"{what}: {failure}")
        print(f"{what}: {time.monotonic() - start:.1f} s")
    assert not failures, "\n".join(failures)

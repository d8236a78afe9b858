"""The demo app's image, built by a real Docker daemon from the committed demo-app/.

What is built is what dev builds: the dev render's pulumi-docker ``Image``
(context, Dockerfile, tag), with BuildKit, pulumi-docker's default builder
(pulumi/pulumi-docker provider/image.go: ``marshalBuilder`` returns "2" when
``builderVersion`` is unset, and the build opens a BuildKit session). The
daemon is Debian's docker.io 20.10 (tests/real/docker_host.py) with a default
bridge of its own, which BuildKit's RUN steps need.

The base, ``node:20.18.0-bookworm-slim``, cannot be pulled: no registry is
reachable here. tests/real/node_base.py rebuilds it from Debian bookworm
(debootstrap) and Node.js 20.18.0 (PyPI), as nodejs/docker-node's
20/bookworm-slim/Dockerfile lays it out, and imports it under the official tag
into this test's private daemon only, which can never reach a registry: there
the tag stands for the official image.

The image then runs as dev runs it: the app container gets the dev render's
user, capabilities, security options, tmpfs, volume, networks, environment and
published port, plus a read-only root (the contract's; dev's render leaves the
root writable only so the provider can upload files, which are bind-mounted
read-only here instead). Docker's own health status (the image's HEALTHCHECK)
stays failing until the rendered migration script has run, then turns healthy.
The pipeline's smoke and crisis checks then pass against the container behind
nginx running the rendered staging configuration.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.app import APP_PORT, APP_UID, node_http_check
from components.demo_app import DEMO_APP_DIR, demo_image_ref
from infra.mocks import unwrap
from tests.real.dns import replica_dns
from tests.real.docker_host import DockerHost, docker_host, fastest_storage
from tests.real.node_base import (
    base_rootfs,
    buildkit_client,
    docker_build,
    import_base,
    node_version,
)
from tests.real.support import (
    Daemon,
    RenderedStack,
    free_port,
    free_ports,
    render_stack,
    substitute,
    wait_for_port,
)
from tests.real.test_nginx import NGINX_CONF, adapt, upstream_addresses
from tests.support.tls import TlsPair
from tests.support.tools import REPO, need

pytestmark = pytest.mark.slow

# The app container's inputs this test models (image: the built one; readOnly: always
# read-only, the contract's); the rest it leaves out on purpose: restart and wait
# policies, labels, grace, and the healthcheck (the image's own runs, whose command
# is asserted equal to the render's).
MODELLED = {
    "name", "hostname", "user", "memory", "memorySwap", "cpus", "init", "capabilities",
    "securityOpts", "tmpfs", "mounts", "envs", "ports", "networksAdvanced", "uploads",
    "logDriver", "logOpts", "readOnly", "image",
}  # fmt: skip
IGNORED = {"restart", "mustRun", "wait", "waitTimeout", "destroyGraceSeconds", "labels",
           "healthcheck"}  # fmt: skip
BUILD_INPUTS = {"context", "dockerfile", "args", "target", "network", "builderVersion"}


@dataclass
class Built:
    ref: str
    image_id: str
    config: dict[str, Any]
    layers: list[str]
    base: dict[str, Any]
    """`docker image inspect` of the stand-in base."""


def _one(dev: RenderedStack, kind: str, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        unwrap(r.inputs)
        for r in dev.rendered.monitor.records.values()
        if r.type == kind and re.fullmatch(name, r.name)
    ]
    assert len(found) == 1, f"dev render: expected one {kind} named {name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def dev() -> RenderedStack:
    return render_stack("dev")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    root = tmp_path_factory.mktemp("docker")
    yield from docker_host(root, bridge=True, storage=fastest_storage(root))


def _build(host: DockerHost, inputs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`docker build` with the Image resource's inputs, as pulumi-docker passes them."""
    build = inputs["build"]
    assert set(build) <= BUILD_INPUTS, f"the test does not model {set(build) - BUILD_INPUTS}"
    return docker_build(
        host.env, build["context"], inputs["imageName"], dockerfile=build["dockerfile"],
        args=build.get("args"), target=build.get("target"), network=build.get("network"),
        buildkit=build.get("builderVersion", "BuilderBuildKit") == "BuilderBuildKit",
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(host: DockerHost, dev: RenderedStack) -> Built:
    inputs = _one(dev, "docker:index/image:Image", r"luna-demo-app-build")
    base = base_rootfs(node_version(Path(inputs["build"]["dockerfile"])))
    timings = dict(base.timings) or {"base rootfs (cached)": 0.0}
    timings["docker import"] = import_base([buildkit_client()], host.env, base)
    start = time.monotonic()
    # The render's context is relative to this process's working directory, as the
    # program's is to `pulumi up`'s; the build runs from the same directory.
    proc = _build(host, inputs)
    timings["docker build"] = time.monotonic() - start
    assert proc.returncode == 0, f"docker build {inputs['imageName']} failed:\n{proc.stderr}"
    image, base_image = json.loads(host.docker("image", "inspect", inputs["imageName"],
                                               base.tag).stdout)  # fmt: skip
    print("\n" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return Built(ref=inputs["imageName"], image_id=image["Id"], config=image["Config"],
                 layers=image["RootFS"]["Layers"], base=base_image)  # fmt: skip


def _check_contract(built: Built, dev: RenderedStack) -> None:
    config = built.config
    assert built.ref == demo_image_ref(DEMO_APP_DIR), f"dev tags {built.ref}, not the folder hash"
    assert config["User"] == APP_UID, f"{built.ref} runs as {config['User']!r}, not {APP_UID}"
    assert config["ExposedPorts"] == {f"{APP_PORT}/tcp": {}}, config["ExposedPorts"]
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    expected = ["CMD", *node_http_check(APP_PORT, declared["luna:healthPath"]["default"])]
    assert config["Healthcheck"]["Test"] == expected, config["Healthcheck"]
    web = _one(dev, "docker:index/container:Container", r"luna-app-web(-0)?")
    assert web["healthcheck"]["tests"] == expected, "dev's health check differs from the image's"
    # What the official base leaves: its entrypoint, which execs the CMD.
    assert config["Entrypoint"] == ["docker-entrypoint.sh"], config["Entrypoint"]
    assert config["Cmd"] == ["node", "server.js"] and config["WorkingDir"] == "/app", config
    # Built on the stand-in: its one layer first, its Node.js version in the env.
    assert built.layers[0] == built.base["RootFS"]["Layers"][0], "not built on the base"
    assert f"NODE_VERSION={node_version(DEMO_APP_DIR / 'Dockerfile')}" in config["Env"], config


def _check_a_broken_step_fails_the_build(host: DockerHost, dev: RenderedStack, tmp: Path) -> None:
    # The control: Alpine's user commands (the image's former base) on this Debian base.
    context = tmp / "demo-app"
    shutil.copytree(DEMO_APP_DIR, context, ignore=shutil.ignore_patterns("node_modules"))
    dockerfile = context / "Dockerfile"
    text = substitute(dockerfile.read_text(), "RUN groupadd --gid 1001 nodejs",
                      "RUN addgroup -S -g 1001 nodejs", what="demo-app/Dockerfile")  # fmt: skip
    dockerfile.write_text(text)
    inputs = _one(dev, "docker:index/image:Image", r"luna-demo-app-build")
    paths = {"context": str(context), "dockerfile": str(dockerfile)}
    broken = {**inputs, "imageName": "luna-demo-app:broken", "build": {**inputs["build"], **paths}}
    proc = _build(host, broken)
    assert proc.returncode != 0, "a Dockerfile step that fails must fail the build"
    failed = re.search(r"^(#\d+) ERROR: .*addgroup -S.*$", proc.stderr, re.M)
    assert failed, f"the daemon's message does not name the failing step:\n{proc.stderr}"
    said = re.findall(rf"^{failed.group(1)} [\d.]+ (.+)$", proc.stderr, re.M)  # the step's output
    print(f"\nbroken step: {' / '.join(said[:2])} -> …{failed.group(0)[-40:]}")


# -- running it as dev does ---------------------------------------------------------------


def _create_args(web: dict[str, Any], *, port: int, uploads: Path) -> list[str]:
    """`docker create` flags for the rendered app container (read-only root added)."""
    unknown = set(web) - MODELLED - IGNORED
    assert not unknown, f"dev's app container has inputs this test does not model: {unknown}"
    args = ["--name", web["name"], "--hostname", web["hostname"], "--user", web["user"],
            "--memory", f"{web['memory']}m", "--memory-swap", f"{web['memorySwap']}m",
            "--cpus", web["cpus"], "--read-only", "--log-driver", web["logDriver"]]  # fmt: skip
    args += ["--init"] if web.get("init") else []
    args += [f"--log-opt={k}={v}" for k, v in web["logOpts"].items()]
    args += [f"--cap-drop={cap}" for cap in web["capabilities"]["drops"]]
    args += [f"--cap-add={cap}" for cap in web["capabilities"].get("adds") or []]
    args += [f"--security-opt={opt}" for opt in web["securityOpts"]]
    args += [f"--tmpfs={path}:{opts}" for path, opts in web["tmpfs"].items()]
    for m in web["mounts"]:
        flag = ",readonly" if m.get("readOnly") else ""
        args += [f"--mount=type={m['type']},source={m['source']},target={m['target']}{flag}"]
    for i, upload in enumerate(web.get("uploads") or []):
        (uploads / str(i)).write_text(upload["content"])
        args += [f"--mount=type=bind,source={uploads / str(i)},target={upload['file']},readonly"]
    args += [f"--env={env}" for env in web["envs"]]
    (published,) = web["ports"]
    assert published["ip"] == "127.0.0.1" and published["internal"] == APP_PORT, published
    # Asserted substitution: a free loopback port for dev's 3000 on the host.
    args += [f"--publish=127.0.0.1:{port}:{APP_PORT}/{published['protocol']}"]
    first = web["networksAdvanced"][0]
    args += [f"--network={first['name']}"]
    args += [f"--network-alias={alias}" for alias in first.get("aliases") or []]
    return args


def _health(host: DockerHost, name: str) -> dict[str, Any]:
    state = json.loads(host.docker("inspect", name).stdout)[0]["State"]
    assert state["Running"], f"{name} stopped: {state}\n{host.docker('logs', name).stderr}"
    return dict(state["Health"])


def _wait_health(host: DockerHost, name: str, until: str, timeout: float = 90) -> dict[str, Any]:
    """Docker's health record once ``until`` holds: "probed" (a first result) or a status."""
    deadline = time.monotonic() + timeout
    while True:
        health = _health(host, name)
        if health["Log"] if until == "probed" else health["Status"] == until:
            return health
        assert time.monotonic() < deadline, f"{name}: health never reached {until}: {health}"
        time.sleep(0.5)


def _get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _migrate(
    host: DockerHost, dev: RenderedStack, image_id: str
) -> subprocess.CompletedProcess[str]:
    """The dev render's migration script, with the built image for the mock's digest."""
    job = _one(dev, "command:local:Command", r"luna-app-migrate")
    script, env = job["create"], dict(job["environment"])
    mock = re.search(r" (sha256:[0-9a-f]{64}) ", script)
    assert mock, script
    script = substitute(script, mock.group(1), image_id, what="dev migration script")
    assert env.pop("DOCKER_HOST") == "unix:///var/run/docker.sock"
    return subprocess.run(
        ["/bin/sh", "-c", script], env={**host.env, **env}, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip


@contextlib.contextmanager
def _edge(app_ip: str, tls_pair: TlsPair, staging: RenderedStack) -> Iterator[tuple[str, int]]:
    """nginx with the staging render's config (Docker), whose resolver finds ``app``
    at the container's address: Docker's embedded DNS stand-in (tests/real/dns.py)."""
    conf = staging.file("proxy", NGINX_CONF)
    assert upstream_addresses(conf) == [f"app:{APP_PORT}"], upstream_addresses(conf)
    tmp = Path(tempfile.mkdtemp(prefix="luna-nginx-"))  # nginx workers must reach it
    tmp.chmod(0o755)
    http_port, https_port, status_port = free_ports(3)
    ports = {"listen 8080;": http_port, "listen 8080 default_server;": http_port,
             "listen 8443 ssl;": https_port, "listen 8443 ssl default_server;": https_port,
             "listen 8081;": status_port}  # fmt: skip
    with contextlib.ExitStack() as stack, replica_dns() as dns:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        dns.add("app", app_ip)
        conf = adapt(conf, stack="staging", tmp=tmp, cert=tls_pair, ports=ports,
                     upstreams={f"app:{APP_PORT}": f"app:{APP_PORT}"},
                     resolver=f"127.0.0.1:{dns.port}")  # fmt: skip
        (tmp / "nginx.conf").write_text(conf)
        argv = [need("nginx"), "-e", "stderr", "-p", str(tmp), "-c", str(tmp / "nginx.conf")]
        nginx = Daemon([*argv, "-g", "daemon off;"], log=tmp / "nginx.log")
        stack.callback(nginx.stop)
        wait_for_port(https_port, proc=nginx.proc, what="staging nginx", log=nginx.log)
        server_name = staging.setting("appUrl").split("://", 1)[1].split(":")[0].rstrip("/")
        yield server_name, https_port


def _pipeline_check(
    server_name: str, port: int, cafile: Path, tmp: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """scripts/smoke_check.py as the pipeline runs it, the stack's name resolving to
    loopback in a private mount namespace's /etc/hosts (as test_nginx.py does)."""
    hosts = tmp / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {server_name}\n")
    url = f"https://{server_name}:{port}"
    command = [sys.executable, str(REPO / "scripts" / "smoke_check.py"), "check",
               "--url", url, "--cafile", str(cafile), *args]  # fmt: skip
    script = f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec {shlex.join(command)}"
    return subprocess.run([need("unshare"), "-m", "sh", "-c", script], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def _check_it_runs_as_dev_runs_it(
    host: DockerHost, built: Built, dev: RenderedStack, tls_pair: TlsPair, tmp_path: Path
) -> None:
    web = _one(dev, "docker:index/container:Container", r"luna-app-web(-0)?")
    networks = {
        n["name"]: n["internal"]
        for r in dev.rendered.monitor.records.values()
        if r.type == "docker:index/network:Network"
        for n in [unwrap(r.inputs)]
    }
    for net in web["networksAdvanced"]:
        internal = ["--internal"] if networks[net["name"]] else []
        host.docker("network", "create", *internal, net["name"])
    port = free_port()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    name = web["name"]
    host.docker("create", *_create_args(web, port=port, uploads=uploads), built.ref)
    for net in web["networksAdvanced"][1:]:
        aliases = [f"--alias={a}" for a in net.get("aliases") or []]
        host.docker("network", "connect", *aliases, net["name"], name)
    start = time.monotonic()
    host.docker("start", name)

    # Not migrated yet: the image's HEALTHCHECK runs and fails, the app answers 503.
    first = _wait_health(host, name, "probed")
    assert first["Log"][0]["ExitCode"] == 1 and first["Status"] != "healthy", first
    assert _get(port, "/api/health")[0] == 503

    migrated = _migrate(host, dev, built.image_id)
    assert migrated.returncode == 0, f"dev's migration failed:\n{migrated.stdout}{migrated.stderr}"
    healthy = _wait_health(host, name, "healthy")
    became_healthy = time.monotonic() - start
    assert healthy["Log"][-1]["ExitCode"] == 0, healthy

    # dev's URL (the published port on 127.0.0.1), then the container's own address.
    assert _get(port, "/api/health")[0] == 200
    assert _get(port, "/api/crisis/health")[0] == 200
    settings = json.loads(host.docker("inspect", name).stdout)[0]["NetworkSettings"]
    app_net = next(n for n in web["networksAdvanced"] if "app" in (n.get("aliases") or []))
    app_ip = settings["Networks"][app_net["name"]]["IPAddress"]
    assert _get(APP_PORT, "/api/health", host=app_ip)[0] == 200

    staging = render_stack("staging", platform="docker")  # dev has no edge; staging's
    budget, crisis_path = staging.setting("crisisLatencyBudgetMs"), staging.setting("crisisPath")
    with _edge(app_ip, tls_pair, staging) as (server_name, https_port):
        smoke = _pipeline_check(server_name, https_port, tls_pair.cert, tmp_path, "--wait", "10")
        crisis = _pipeline_check(
            server_name, https_port, tls_pair.cert, tmp_path, "--only", "crisis",
            "--crisis-path", crisis_path, "--crisis-budget-ms", budget,
            "--crisis-samples", "20", "--crisis-stat", "p95",
        )  # fmt: skip
    assert smoke.returncode == 0, f"smoke check against the built image failed:\n{smoke.stdout}"
    assert crisis.returncode == 0, f"crisis check against the built image failed:\n{crisis.stdout}"
    print(f"\n{name}: healthy {became_healthy:.1f} s after start (migrated in between)")
    print(f"{smoke.stdout}{crisis.stdout}")


def test_dev_builds_the_demo_image_and_it_runs_as_dev_runs_it(
    host: DockerHost, built: Built, dev: RenderedStack, tls_pair: TlsPair, tmp_path: Path
) -> None:
    """One test, so that one xdist worker builds the image (a module fixture shared by
    several tests would be built again on the other worker)."""
    _check_contract(built, dev)
    _check_a_broken_step_fails_the_build(host, dev, tmp_path)
    _check_it_runs_as_dev_runs_it(host, built, dev, tls_pair, tmp_path)

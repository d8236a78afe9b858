"""The program's Docker output on a real Docker daemon (docker.io 20.10, Debian).

- One-shot jobs: the generated script (components/platforms/docker/jobs.py), and
  the rendered migration's own script, exit with the container's status, ship
  their files, keep secrets off the command line and leave no container behind.
- Read-back: every container the staging render asks for is created on a daemon
  whose daemon.json sets default log options; what the daemon stores, read the
  way the provider reads it (tests/engine/facts.py), equals what the program
  wrote, so the next ``up`` sees no diff. The first build's spelling is the
  control: the same read-back, computed by the engine model, differs from it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from components.platforms.docker.jobs import JobRun, job_script
from infra.mocks import unwrap
from infra.render import render
from tests.engine.facts import nano_to_decimal_string, read_back
from tests.real.docker_host import DAEMON, IMAGE, DockerHost, docker_host
from tests.real.support import substitute

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
SECRET = "postgresql://luna:S3cret-Only-In-Env@database:5432/luna"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    yield from docker_host(tmp_path_factory.mktemp("docker"))


def _run_script(
    host: DockerHost, script: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script], env={**host.env, **env}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def _left(host: DockerHost, name: str) -> list[str]:
    out = host.docker("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}").stdout
    return out.split()


@pytest.mark.parametrize("code", [0, 3])
def test_job_script_exits_with_the_containers_status_and_leaves_nothing(
    host: DockerHost, code: int
) -> None:
    for net in ("luna-test-database", "luna-test-cache"):
        if host.docker("network", "inspect", net, check=False).returncode:
            host.docker("network", "create", "--internal", net)
    run = JobRun(
        container="luna-test-job",
        image=IMAGE,
        networks=["luna-test-database", "luna-test-cache"],
        command=["-c", f'cat /opt/luna/data.txt; printf "%s" "$DATABASE_URL" | wc -c; exit {code}'],
        entrypoint=["/bin/sh"],
        env=[("NODE_ENV", "production")],
        secret_env=["DATABASE_URL"],
        files=[("/opt/luna/data.txt", "LUNA_FILE_0")],
        mounts=[],
        tmpfs=["/tmp"],
        user="1001:1001",
        memory_mb=64,
        cpus="0.5",
        read_only=False,
        log_opts=[("max-size", "10m"), ("max-file", "5")],
        log_driver="local",
    )
    script = job_script(run)
    assert SECRET not in script
    proc = _run_script(host, script, {"DATABASE_URL": SECRET, "LUNA_FILE_0": "shipped file\n"})
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}: {proc.stderr}"
    assert "shipped file" in proc.stdout and str(len(SECRET)) in proc.stdout, proc.stdout
    assert not _left(host, "luna-test-job"), "the job's container was left behind"


def _migration(stack: str) -> tuple[str, dict[str, str]]:
    rendered = render(stack, overrides=[("platform", "docker")])
    (job,) = [r for r in rendered.monitor.records.values() if r.name == "luna-app-migrate"]
    return unwrap(job.inputs["create"]), unwrap(job.inputs["environment"])


@pytest.mark.parametrize("outcome", ["succeeds", "fails"])
def test_rendered_migration_script_runs_on_a_real_daemon(host: DockerHost, outcome: str) -> None:
    script, env = _migration("staging")
    what = "staging migration script"
    image = re.search(r" (sha256:[0-9a-f]{64}) ", script)
    assert image, script
    # Asserted substitutions: the busybox image for the app image, and a shell for prisma.
    script = substitute(script, image.group(1), IMAGE, what=what)
    script = substitute(script, "--entrypoint npx", "--entrypoint /bin/sh", what=what)
    body = 'printf "%s" "$DATABASE_URL" | wc -c' if outcome == "succeeds" else "exit 4"
    script = substitute(script, "--no-install prisma migrate deploy", f"-c '{body}'", what=what)
    for net in re.findall(r"(?:--network|network connect) (\S+)", script):
        if host.docker("network", "inspect", net, check=False).returncode:
            host.docker("network", "create", "--internal", net)
    assert env.pop("DOCKER_HOST") == "unix:///var/run/docker.sock"
    proc = _run_script(host, script, env)
    name = re.search(r"docker create --name (\S+)", script)
    assert name and not _left(host, name.group(1)), "the migration container was left behind"
    if outcome == "fails":
        assert proc.returncode == 4, f"a failed migration exited {proc.returncode}: {proc.stderr}"
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[-1] == str(len(env["DATABASE_URL"])), proc.stdout


def _create(host: DockerHost, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """``docker create`` with the inputs the daemon stores, then the provider's read-back."""
    args = ["create", "--name", name, "--log-driver", inputs.get("logDriver") or "json-file"]
    for key, value in (inputs.get("logOpts") or {}).items():
        args += ["--log-opt", f"{key}={value}"]
    args += ["--cpus", str(inputs["cpus"]), "--memory", f"{inputs['memory']}m"]
    if inputs.get("memorySwap"):
        args += ["--memory-swap", f"{inputs['memorySwap']}m"]
    host.docker(*args, IMAGE, "sleep", "1")
    config = json.loads(host.docker("inspect", name).stdout)[0]["HostConfig"]
    host.docker("rm", name)
    # resourceDockerContainerRead: cpus, memory and memory_swap in MiB, log options.
    return {
        "cpus": nano_to_decimal_string(config["NanoCpus"]),
        "memory": config["Memory"] // MIB,
        "memorySwap": config["MemorySwap"] // MIB,
        "logDriver": config["LogConfig"]["Type"],
        "logOpts": config["LogConfig"]["Config"],
    }


def test_every_container_reads_back_as_written(host: DockerHost) -> None:
    rendered = render("staging", overrides=[("platform", "docker")])
    containers = [
        unwrap(r.inputs)
        for r in rendered.monitor.records.values()
        if r.type == "docker:index/container:Container"
    ]
    assert len(containers) >= 10
    for inputs in containers:
        stored = _create(host, inputs["name"], inputs)
        written = {k: inputs.get(k) for k in stored}
        assert stored == written, f"{inputs['name']}: the daemon stored {stored}, program {written}"
    print(f"staging: {len(containers)} containers read back exactly as written")


def test_the_first_builds_spelling_diffs_as_the_model_predicts(host: DockerHost) -> None:
    # cpus "1", no swap, the daemon's default driver with one option: the first build.
    first = {"cpus": "1", "memory": 512, "logDriver": "json-file", "logOpts": {"max-size": "10m"}}
    stored = _create(host, "luna-test-first-build", first)
    predicted = read_back("docker:index/container:Container", first, DAEMON)
    assert stored == {k: predicted.get(k) for k in stored}, (stored, predicted)
    assert stored["cpus"] == "1.0" and stored["memorySwap"] == 1024, stored
    assert stored["logOpts"] == {"max-size": "10m", "max-file": "3", "cache-max-size": "7m"}


def test_memory_raised_without_swap_is_refused_by_the_daemon(host: DockerHost) -> None:
    host.docker("create", "--name", "luna-test-mem", "--memory", "512m", IMAGE, "sleep", "1")
    try:
        refused = host.docker("update", "--memory", "2048m", "luna-test-mem", check=False)
        assert refused.returncode != 0 and "memoryswap" in refused.stderr, refused.stderr
        host.docker("update", "--memory", "2048m", "--memory-swap", "2048m", "luna-test-mem")
    finally:
        host.docker("rm", "-f", "luna-test-mem")

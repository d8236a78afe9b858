"""The Docker platform's rollout scripts on a real daemon (tests/real/docker_host.py).

- the admission gate (components/platforms/docker/gate.py): replicas join their
  service's network, under its name, only once every one is healthy, and an
  unhealthy one fails the gate and admits none;
- live files (components/platforms/docker/files.py): new configuration reaches a
  running container through its volume and its reload command, and the
  container is never restarted;
- the daemon refuses a second container of the same name (moby daemon/names.go),
  the collision the engine model predicts for a rollback onto a pending delete.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from components.platforms.docker.files import LiveFiles, reload_script, write_script
from components.platforms.docker.gate import Admission, gate_script
from tests.engine.facts import docker_name_conflict
from tests.real.docker_host import IMAGE, DockerHost, docker_host

pytestmark = pytest.mark.slow

LOOP = ["/bin/sh", "-c", "while :; do sleep 1; done"]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    yield from docker_host(tmp_path_factory.mktemp("docker"))


def _sh(
    host: DockerHost, script: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", script], env={**host.env, **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def _replica(host: DockerHost, name: str, *, healthy: bool) -> None:
    check = "true" if healthy else "exit 1"
    host.docker("rm", "-f", name, check=False)
    host.docker("run", "-d", "--name", name, "--network", "luna-rollout-edge",
                "--health-cmd", check, "--health-interval", "1s", "--health-retries", "1",
                "--entrypoint", LOOP[0], IMAGE, *LOOP[1:])  # fmt: skip


def _networks(host: DockerHost, name: str) -> dict[str, list[str]]:
    raw = host.docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", name).stdout
    return {k: v.get("Aliases") or [] for k, v in json.loads(raw).items()}


@pytest.fixture
def networks(host: DockerHost) -> Iterator[None]:
    for net in ("luna-rollout-app", "luna-rollout-edge"):
        if host.docker("network", "inspect", net, check=False).returncode:
            host.docker("network", "create", "--internal", net)
    yield
    host.docker("rm", "-f", "luna-rollout-app-0-aa", "luna-rollout-app-1-bb", check=False)


def test_the_gate_admits_healthy_replicas_under_the_service_name(
    host: DockerHost, networks: None
) -> None:
    for name in ("luna-rollout-app-0-aa", "luna-rollout-app-1-bb"):
        _replica(host, name, healthy=True)
    replicas = [Admission("luna-rollout-app-0-aa", ["app", "app-0"]),
                Admission("luna-rollout-app-1-bb", ["app", "app-1"])]  # fmt: skip
    script = gate_script("luna-rollout-app", replicas, timeout_s=20)
    done = _sh(host, script)
    assert done.returncode == 0, done.stderr
    joined = _networks(host, "luna-rollout-app-0-aa")
    assert "luna-rollout-app" in joined and "app" in joined["luna-rollout-app"], joined
    # Run again (an `up` with no change to these replicas): nothing to do, no error.
    assert _sh(host, script).returncode == 0


def test_an_unhealthy_replica_fails_the_gate_and_none_is_admitted(
    host: DockerHost, networks: None
) -> None:
    _replica(host, "luna-rollout-app-0-aa", healthy=True)
    _replica(host, "luna-rollout-app-1-bb", healthy=False)
    replicas = [Admission("luna-rollout-app-0-aa", ["app"]),
                Admission("luna-rollout-app-1-bb", ["app"])]  # fmt: skip
    done = _sh(host, gate_script("luna-rollout-app", replicas, timeout_s=8))
    assert done.returncode != 0 and "luna-rollout-app-1-bb is not healthy" in done.stderr, done
    for name in ("luna-rollout-app-0-aa", "luna-rollout-app-1-bb"):
        assert "luna-rollout-app" not in _networks(host, name), f"{name} was admitted"


def test_live_files_reach_the_running_container_without_a_restart(host: DockerHost) -> None:
    volume, directory = "luna-rollout-proxy-live", "/etc/luna-live"
    host.docker("volume", "create", volume)
    live = LiveFiles(volume=volume, directory=directory, image=IMAGE, user=None,
                     files=[(f"{directory}/main.conf", "LUNA_FILE_0"),
                            (f"{directory}/tls/tls.key", "LUNA_FILE_1")])  # fmt: skip
    first = _sh(host, write_script(live), {"LUNA_FILE_0": "setting 1\n", "LUNA_FILE_1": "key 1\n"})
    assert first.returncode == 0, first.stderr
    host.docker("rm", "-f", "luna-rollout-proxy", check=False)
    host.docker("run", "-d", "--name", "luna-rollout-proxy", "--user", "101:101",
                "--mount", f"type=volume,source={volume},target={directory},readonly",
                "--entrypoint", LOOP[0], IMAGE, *LOOP[1:])  # fmt: skip
    started = host.docker("inspect", "--format", "{{.State.StartedAt}}", "luna-rollout-proxy")
    second = _sh(host, write_script(live), {"LUNA_FILE_0": "setting 2\n", "LUNA_FILE_1": "key 2\n"})
    assert second.returncode == 0, second.stderr
    check = ["cat", f"{directory}/main.conf", f"{directory}/tls/tls.key"]
    reload = reload_script(["luna-rollout-proxy"], ["/bin/sh", "-c", "echo reloaded"], check)
    applied = _sh(host, reload)
    assert applied.returncode == 0, applied.stderr
    # The service's own non-root user reads the new files; it kept running.
    assert "setting 2" in applied.stdout and "key 2" in applied.stdout, applied.stdout
    assert "reloaded" in applied.stdout
    again = host.docker("inspect", "--format", "{{.State.StartedAt}}", "luna-rollout-proxy")
    assert again.stdout == started.stdout, "the container was restarted"
    left = host.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert left.count("luna-rollout-proxy") == 1 and len(left) == len(set(left)), left
    host.docker("rm", "-f", "luna-rollout-proxy")


def test_the_daemon_refuses_a_second_container_of_the_same_name(host: DockerHost) -> None:
    host.docker("rm", "-f", "luna-rollout-app-0-0b0ab729cd", check=False)
    host.docker("create", "--name", "luna-rollout-app-0-0b0ab729cd", IMAGE, "true")
    again = host.docker("create", "--name", "luna-rollout-app-0-0b0ab729cd", IMAGE, "true",
                        check=False)  # fmt: skip
    assert again.returncode != 0
    expected = docker_name_conflict("luna-rollout-app-0-0b0ab729cd").split(" by container")[0]
    assert expected in again.stderr, again.stderr
    host.docker("rm", "-f", "luna-rollout-app-0-0b0ab729cd")

"""The applier against a real daemon, on one rendered container given a busybox image.

The container is the staging render's ``cache`` (Redis) with its image, command
and health check swapped for busybox ones: everything else (networks and
aliases, uploads, user, capabilities, read-only root, tmpfs, log options,
memory, cpus) is as the program wrote it. The rehearsal itself runs the real
stand-in images (test_rehearsal.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.engine.facts import diff
from tests.engine.model import Resource, snapshot
from tests.real.docker_host import IMAGE, DockerHost, docker_host
from tests.real.support import render_stack
from tests.rehearsal.applier import CONTAINER, Applier, StepError
from tests.rehearsal.scenarios.idempotence import daemon_read_back

pytestmark = pytest.mark.slow

# The platform's option set for the `local` driver (components/platforms/docker
# DockerPlatform._log_opts), the one a stack without log shipping writes.
LOCAL_OPTS = {"max-size": "10m", "max-file": "5", "compress": "true", "mode": "non-blocking",
              "max-buffer-size": "4m", "cache-disabled": "false", "cache-max-size": "10m",
              "cache-max-file": "5", "cache-compress": "true"}  # fmt: skip


def _program(env: str = "A=1", health: str = "/bin/true") -> dict[str, Resource]:
    """The cache container and what it needs, with a busybox image."""
    resources = snapshot(render_stack("staging").rendered)
    urn, cache = next(
        (u, r) for u, r in resources.items()
        if r.type == CONTAINER and {"label": "com.luna.service", "value": "cache"}
        in r.inputs.get("labels", [])
    )  # fmt: skip
    nets = {n["name"] for n in cache.inputs["networksAdvanced"]}
    keep = {u: r for u, r in resources.items()
            if r.type == "docker:index/network:Network" and r.inputs["name"] in nets}  # fmt: skip
    inputs = dict(cache.inputs)
    inputs.update(
        image=IMAGE, entrypoints=["/bin/sh", "-c"],
        command=["cat /usr/local/etc/redis/redis.conf >/dev/null && exec sleep 600"],
        healthcheck={**inputs["healthcheck"], "tests": ["CMD", health], "interval": "1s",
                     "startPeriod": "0s"},
        envs=[env], waitTimeout=20, logDriver="local", logOpts=LOCAL_OPTS,
    )  # fmt: skip
    # The platform names a container after a digest of its inputs: a new env, a new name.
    inputs["name"] = f"{inputs['name']}-{env.replace('=', '')}".lower()
    upload_paths = [u["file"] for u in inputs["uploads"]]
    assert "/usr/local/etc/redis/redis.conf" in upload_paths, upload_paths
    keep[urn] = replace(cache, inputs=inputs, dependencies=())
    return keep


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    root: Path = tmp_path_factory.mktemp("applier")
    yield from docker_host(root, bridge=True)


def test_apply_then_read_back_and_replace(host: DockerHost) -> None:
    applier = Applier(host)
    program = _program()
    applier.up(program)
    (urn,) = [u for u, r in program.items() if r.type == CONTAINER]
    name = applier.state.names[urn]
    inspect = json.loads(host.docker("inspect", name).stdout)[0]
    assert inspect["State"]["Health"]["Status"] == "healthy"
    assert inspect["Config"]["Healthcheck"]["Test"] == ["CMD", "/bin/true"]  # not CMD-SHELL
    inputs = program[urn].inputs
    assert inspect["Config"]["User"] == inputs["user"]
    assert inspect["HostConfig"]["ReadonlyRootfs"] == inputs["readOnly"]
    assert inspect["HostConfig"]["CapDrop"] == ["ALL"]
    nets = inspect["NetworkSettings"]["Networks"]
    assert set(nets) == {n["name"] for n in inputs["networksAdvanced"]}, "default bridge left"
    for n in inputs["networksAdvanced"]:
        assert set(n.get("aliases") or []) <= set(nets[n["name"]]["Aliases"] or [])
    # The read-back equals the program: a second up has nothing to do.
    state = daemon_read_back(inspect, dict(inputs))
    assert not diff(CONTAINER, state, inputs).changed
    first = applier.state.ids[urn]
    assert not applier.up(program).changed()
    assert applier.state.ids[urn] == first
    # An env change replaces it, create-before-delete: a new container, the old one gone.
    result = applier.up(_program(env="A=2"))
    assert result.steps[urn].op == "replace"
    assert applier.state.ids[urn] != first
    gone = host.docker("inspect", first, check=False)
    assert gone.returncode != 0, "the old container outlived its replacement's up"
    # A container that never becomes healthy fails its create (and stays: a partial create).
    with pytest.raises(StepError, match="not healthy"):
        applier.up(_program(env="A=3", health="/bin/false"))
    with contextlib.suppress(Exception):
        host.docker("rm", "-f", applier.state.names.get(urn, ""), check=False)

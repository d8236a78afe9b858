"""How the Docker platform replaces containers without cutting anyone off.

- :func:`generation_name`: a container's name is drawn anew with every
  replacement, so a create-before-delete replacement never collides with its
  predecessor, even one a failed update left pending deletion.
- :func:`admission_gate`: the replicas of a routed service join their service's
  network only once all of them are healthy (gate.py).
- :func:`live_files` and :func:`reloader`: files a service re-reads in place go
  through a volume and a reload, never a restart (files.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.configs.nginx import RESOLVER_VALID_S
from components.platforms.docker.files import LiveFiles, reload_script, write_script
from components.platforms.docker.forms import inputs_digest
from components.platforms.docker.gate import Admission, gate_script
from components.spec import ConfigFile, Mount, ServiceSpec

if TYPE_CHECKING:
    from components.platforms.docker import DockerPlatform

__all__ = [
    "admission",
    "admission_gate",
    "exclusive",
    "gated",
    "generation_name",
    "live_files",
    "published",
    "reloader",
    "wait_timeout",
]


def live_files(
    platform: DockerPlatform,
    name: str,
    spec: ServiceSpec,
    image: docker.RemoteImage,
    *,
    parent: pulumi.Resource,
) -> tuple[ServiceSpec, list[ConfigFile], list[command.local.Command]]:
    """Ship the files below ``spec.reload.directory`` in a volume (files.py).

    Returns the spec without them (they are no input of the container), with
    the volume mounted read-only, and the Commands that write them: one for the
    plain text the program built (its environment stays readable, so policies
    judge nginx.conf), one for what comes from config or is secret.
    """
    assert spec.reload is not None
    directory = spec.reload.directory.rstrip("/")
    live = [f for f in spec.files if f.path.startswith(directory + "/")]
    key = f"{spec.name}-live"
    volume = platform.physical(key)
    plain = [f for f in live if isinstance(f.content, str) and not f.secret]
    other = [f for f in live if f not in plain]
    writers = [
        _writer(platform, name, part, volume, directory, image, spec, group, parent)
        for part, group in (("files", plain), ("secret-files", other))
        if group
    ]
    rest = tuple(f for f in spec.files if f not in live)
    mounts = (*spec.mounts, Mount(key, directory, read_only=True))
    return dataclasses.replace(spec, files=rest, mounts=mounts), live, writers


def _writer(
    platform: DockerPlatform,
    name: str,
    part: str,
    volume: str,
    directory: str,
    image: docker.RemoteImage,
    spec: ServiceSpec,
    files: Sequence[ConfigFile],
    parent: pulumi.Resource,
) -> command.local.Command:
    # A secret file's variable says so: the render masks it (infra/render.py).
    variables = {
        f.path: f"LUNA_SECRET_FILE_{i}" if f.secret else f"LUNA_FILE_{i}"
        for i, f in enumerate(files)
    }
    environment: dict[str, pulumi.Input[str]] = {"DOCKER_HOST": platform.host}
    environment.update(
        {
            variables[f.path]: pulumi.Output.secret(f.content) if f.secret else f.content
            for f in files
        }
    )
    script = image.image_id.apply(
        lambda image_id: write_script(
            LiveFiles(
                volume=volume,
                directory=directory,
                image=image_id,
                user=spec.user,
                files=sorted(variables.items()),
                helper=f"{volume}-{part}",
            )
        )
    )
    return command.local.Command(
        f"{name}-{part}",
        create=script,
        # Configuration, not data: it goes with the service (after its containers).
        delete=f"docker volume rm -f {volume} >/dev/null 2>&1 || true",
        environment=environment,
        interpreter=["/bin/sh", "-c"],
        opts=pulumi.ResourceOptions(parent=parent),
    )


def reloader(
    platform: DockerPlatform,
    name: str,
    spec: ServiceSpec,
    containers: Sequence[docker.Container],
    live: Sequence[ConfigFile],
    *,
    parent: pulumi.Resource,
) -> command.local.Command:
    """Apply new live files in the running containers, whenever their content changes."""
    assert spec.reload is not None
    reload = spec.reload
    digest = pulumi.Output.unsecret(
        pulumi.Output.all(*(f.content for f in live)).apply(
            lambda v: inputs_digest({str(i): c for i, c in enumerate(v)}, length=16)
        )
    )
    script = pulumi.Output.all(*(c.name for c in containers)).apply(
        lambda names: reload_script([str(n) for n in names], reload.command, reload.check)
    )
    return command.local.Command(
        f"{name}-reload",
        create=script,
        triggers=[digest],
        environment={"DOCKER_HOST": platform.host},
        interpreter=["/bin/sh", "-c"],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(containers)),
    )


def admission_gate(
    platform: DockerPlatform,
    name: str,
    spec: ServiceSpec,
    containers: Sequence[docker.Container],
    admissions: Sequence[pulumi.Output[Admission]],
    *,
    parent: pulumi.Resource,
) -> command.local.Command:
    """Connect the replicas to the service's network once all are healthy (gate.py)."""
    assert spec.health is not None
    network = platform.network(spec.name)
    script = pulumi.Output.all(network.name, *admissions).apply(
        lambda v: gate_script(
            str(v[0]), list(v[1:]), timeout_s=wait_timeout(spec), settle_s=RESOLVER_VALID_S + 1
        )
    )
    return command.local.Command(
        f"{name}-admission",
        create=script,
        # Any replaced replica has a new name: the gate runs again.
        triggers=[c.name for c in containers],
        environment={"DOCKER_HOST": platform.host},
        interpreter=["/bin/sh", "-c"],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(containers)),
    )


def generation_name(
    resource_name: str,
    base: str,
    inputs: dict[str, Any],
    parent: pulumi.Resource,
    after: Sequence[pulumi.Resource],
) -> pulumi.Output[str]:
    """``<base>-<8 random hex>``, new whenever the container is replaced.

    A create-before-delete replacement starts while its predecessor runs, so the
    two need different names. A digest of the inputs alone is not enough: after a
    failed update the predecessor can still be waiting for deletion (a pending
    delete) when a rollback asks for a container with its very inputs, and the
    daemon refuses the name (moby daemon/names.go). ``RandomId`` is replaced when
    its keepers change (terraform-provider-random: every argument RequiresReplace),
    and a replacement draws a new value, never the old one back.
    """
    import pulumi_random as random

    digest = pulumi.Output.unsecret(pulumi.Output.from_input(inputs).apply(inputs_digest))
    generation = random.RandomId(
        f"{resource_name}-generation",
        byte_length=4,
        keepers={"inputs": digest},
        # Drawn with the container, after what it waits for (a failed migration
        # leaves even the generation as it was).
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(after)),
    )
    return pulumi.Output.concat(base, "-", generation.hex)


def admission(aliases: list[str], container: str) -> Admission:
    return Admission(container, aliases)


def gated(spec: ServiceSpec) -> bool:
    """Replicas behind the edge join their service's name only once healthy."""
    return (
        spec.routed
        and spec.health is not None
        and bool(spec.ports)
        and not exclusive(spec)
        and (spec.internet_egress or bool(spec.connects_to))
    )


def exclusive(spec: ServiceSpec) -> bool:
    """A host port binds once, and a volume has one writer: such a container goes first."""
    writes_volume = any(not (m.read_only or m.shared) for m in spec.mounts)
    return published(spec) or writes_volume or spec.workload == "stateful" or spec.single_instance


def wait_timeout(spec: ServiceSpec) -> int:
    assert spec.health is not None
    h = spec.health
    return h.start_period_s + h.retries * (h.interval_s + h.timeout_s) + 30


def published(spec: ServiceSpec) -> bool:
    return any(p.publish is not None for p in spec.ports)

"""The Docker platform: one host, containers on per-service networks.

Segmentation follows the declared flows: every service that listens gets its
own network, named after it, and only the services that declared a flow to it
join that network. Those networks are always ``internal`` (no route off the
host). A service that publishes a port or needs the internet also joins an
``<service>-edge`` network of its own, which no other service joins, so a
client never inherits its target's route off the host.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.platforms import Deployment, FlowGraph
from components.spec import ServiceSpec, VolumeSpec

__all__ = ["SECRET_FILES_LABEL", "DockerPlatform", "DockerPlatformArgs"]

SECRET_FILES_LABEL = "com.luna.secret-files"  # noqa: S105 - a label name


@dataclass(frozen=True)
class DockerPlatformArgs:
    stack: str
    host: str
    """``unix:///var/run/docker.sock`` or ``ssh://user@host`` for a remote single host."""
    ship_logs: bool = False
    gelf_port: int = 12201
    """Host loopback port of this stack's Logstash GELF input (one per stack on a host)."""
    """Send container logs to Logstash's GELF input published on the host's loopback.

    The logging driver runs in the Docker daemon, not in a container, so it
    cannot resolve container names (moby/moby#20370); 127.0.0.1 is the host.
    """


class DockerPlatform(pulumi.ComponentResource):
    """Creates Docker resources for Luna services on one Docker host.

    Usage::

        platform = DockerPlatform("luna-docker", DockerPlatformArgs(stack="dev", host=host))
        LunaApp("luna-app", LunaAppArgs(platform=platform, ...))
        platform.finish()
    """

    provider: docker.Provider
    """The explicit provider every container, network and volume uses."""

    def __init__(
        self, name: str, args: DockerPlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:platform:DockerPlatform", name, None, opts)
        self._name = name
        self._args = args
        self.provider = docker.Provider(
            f"{name}-provider", host=args.host, opts=pulumi.ResourceOptions(parent=self)
        )
        self._networks: dict[str, docker.Network] = {}
        self._images: dict[str, docker.RemoteImage] = {}
        self._builds: dict[str, docker.Image] = {}
        self._volumes: dict[str, docker.Volume] = {}
        self._graph = FlowGraph()
        self.register_outputs({})

    # -- Platform protocol -------------------------------------------------
    @property
    def name(self) -> str:
        return "docker"

    @property
    def stack(self) -> str:
        return self._args.stack

    def physical(self, suffix: str) -> str:
        """Physical names carry the stack, so stacks can share one Docker host."""
        return f"luna-{self._args.stack}-{suffix}"

    def volume(self, name: str, key: str, spec: VolumeSpec, *, parent: pulumi.Resource) -> None:
        if key in self._volumes:
            raise ValueError(f"volume {key!r} is created twice")
        self._volumes[key] = docker.Volume(
            name,
            name=self.physical(key),
            labels=[docker.VolumeLabelArgs(label="com.luna.stack", value=self.stack)],
            opts=pulumi.ResourceOptions(
                parent=parent,
                provider=self.provider,
                protect=spec.protect,
                retain_on_delete=spec.protect,
            ),
        )

    def deploy(
        self,
        name: str,
        spec: ServiceSpec,
        *,
        parent: pulumi.Resource,
        after: Sequence[Deployment] = (),
    ) -> Deployment:
        self._graph.add(spec)
        image = self._image(spec.image)
        # A dependant restarts after what it follows: a job's gate fails it when
        # the job failed, and a replaced container (new IP) replaces it too, so
        # nginx never keeps resolving a replica that no longer exists.
        gates = {
            d.service: d.gate
            if d.gate is not None
            else pulumi.Output.all(
                *[r.id for r in d.resources if isinstance(r, pulumi.CustomResource)]
            ).apply(lambda ids: ",".join(sorted(str(i) for i in ids)))
            for d in after
        }
        depends = [r for d in after for r in d.resources]
        replicas = spec.replicas if spec.workload == "service" else 1
        containers = []
        addresses = []
        for index in range(replicas):
            replica = f"{spec.name}-{index}" if replicas > 1 else spec.name
            if spec.ports:
                addresses.append(f"{replica}:{spec.ports[0].port}")
            containers.append(
                docker.Container(
                    f"{name}-{index}" if replicas > 1 else name,
                    self._container_args(spec, replica, image, gates),
                    opts=pulumi.ResourceOptions(
                        parent=parent,
                        provider=self.provider,
                        depends_on=depends,
                        protect=spec.protect,
                        # Container names are fixed, so a replacement must go first.
                        delete_before_replace=True,
                    ),
                )
            )
        gate = None
        if spec.workload == "job":
            gate = containers[0].exit_code.apply(lambda code: _job_succeeded(spec.name, code))
        return Deployment(
            service=spec.name, resources=containers, gate=gate, addresses=tuple(addresses)
        )

    def service_url(self, spec: ServiceSpec, port: str) -> str:
        for p in spec.ports:
            if p.name == port and p.publish is not None:
                wildcard = p.publish_ip in ("127.0.0.1", "0.0.0.0")  # noqa: S104
                host = "localhost" if wildcard else p.publish_ip
                return f"http://{host}:{p.publish}"
        raise ValueError(f"{spec.name} does not publish a port named {port!r}")

    def finish(self) -> None:
        """Fail when a service declared a flow to a service this stack does not run."""
        self._graph.check()

    def build_image(
        self, name: str, ref: str, context: str, *, parent: pulumi.Resource
    ) -> docker.Image:
        """Build ``ref`` from a local folder on this platform's Docker host (never pushed).

        Services deployed with ``ref`` wait for the build: their image is then found
        on the host instead of pulled.
        """
        if ref in self._images:
            raise ValueError(f"build_image({ref!r}) must come before a service uses it")
        self._builds[ref] = docker.Image(
            name,
            image_name=ref,
            build=docker.DockerBuildArgs(context=context, dockerfile=f"{context}/Dockerfile"),
            skip_push=True,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider),
        )
        return self._builds[ref]

    # -- helpers -----------------------------------------------------------
    def _image(self, ref: str) -> docker.RemoteImage:
        if ref not in self._images:
            slug = re.sub(r"[^a-z0-9]+", "-", ref.lower().split("@")[0]).strip("-")
            built = self._builds.get(ref)
            self._images[ref] = docker.RemoteImage(
                f"{self._name}-image-{slug}",
                name=ref,
                keep_locally=True,
                opts=pulumi.ResourceOptions(
                    parent=self, provider=self.provider, depends_on=[built] if built else None
                ),
            )
        return self._images[ref]

    def _network(self, key: str, *, internal: bool = True) -> docker.Network:
        if key not in self._networks:
            self._networks[key] = docker.Network(
                f"{self._name}-net-{key}",
                name=self.physical(key),
                driver="bridge",
                internal=internal,
                labels=[docker.NetworkLabelArgs(label="com.luna.stack", value=self.stack)],
                opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
            )
        return self._networks[key]

    def _container_args(
        self,
        spec: ServiceSpec,
        replica: str,
        image: docker.RemoteImage,
        gates: dict[str, pulumi.Output[str]],
    ) -> docker.ContainerArgs:
        networks = []
        if spec.ports:
            own = self._network(spec.name)
            networks.append(
                docker.ContainerNetworksAdvancedArgs(
                    name=own.name, aliases=sorted({spec.name, replica})
                )
            )
        if _published(spec) or spec.internet_egress:
            # The one non-internal network: it carries the default route and
            # the published ports, and only this service is on it.
            edge = self._network(f"{spec.name}-edge", internal=False)
            networks.append(docker.ContainerNetworksAdvancedArgs(name=edge.name))
        networks += [
            docker.ContainerNetworksAdvancedArgs(name=self._network(target).name)
            for target in spec.connects_to
        ]

        envs: list[pulumi.Input[str]] = [
            f"{k}={v}" for k, v in spec.env.items() if isinstance(v, str)
        ]
        envs += [
            pulumi.Output.concat(k, "=", v) for k, v in spec.env.items() if not isinstance(v, str)
        ]
        envs += [
            pulumi.Output.secret(pulumi.Output.concat(k, "=", v))
            for k, v in spec.secret_env.items()
        ]
        labels = {
            "com.luna.stack": pulumi.Output.from_input(self.stack),
            "com.luna.service": pulumi.Output.from_input(spec.name),
            "com.luna.component": pulumi.Output.from_input(spec.component),
        }
        secret_files = [f.path for f in spec.files if f.secret]
        if secret_files:
            # Docker keeps `uploads` as one property, so one secret file makes the
            # whole list secret in state; this label says which files really are.
            labels[SECRET_FILES_LABEL] = pulumi.Output.from_input(",".join(secret_files))
        for service, gate in gates.items():
            labels[f"com.luna.after.{service}"] = gate

        entrypoint, command = _command(spec)
        job = spec.workload == "job"
        return docker.ContainerArgs(
            name=self.physical(replica),
            image=image.image_id,
            hostname=replica,
            entrypoints=entrypoint,
            command=command,
            envs=envs,
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in labels.items()],
            uploads=[
                docker.ContainerUploadArgs(
                    file=f.path,
                    content=pulumi.Output.secret(f.content) if f.secret else f.content,
                )
                for f in spec.files
            ],
            mounts=[
                docker.ContainerMountArgs(
                    target=m.path,
                    type="volume",
                    source=self._volumes[m.volume].name,
                    read_only=m.read_only,
                )
                for m in spec.mounts
            ],
            networks_advanced=networks,
            ports=[
                docker.ContainerPortArgs(
                    internal=p.port, external=p.publish, ip=p.publish_ip, protocol=p.protocol
                )
                for p in spec.ports
                if p.publish is not None
            ],
            # "Created" means "healthy": dependants (the migration after the
            # database, nginx after the app) start only then.
            wait=bool(spec.health) and not job,
            wait_timeout=_wait_timeout(spec) if spec.health and not job else None,
            healthcheck=(
                docker.ContainerHealthcheckArgs(
                    tests=["CMD", *spec.health.command],
                    interval=f"{spec.health.interval_s}s",
                    timeout=f"{spec.health.timeout_s}s",
                    retries=spec.health.retries,
                    start_period=f"{spec.health.start_period_s}s",
                )
                if spec.health and not job
                else None
            ),
            user=spec.user,
            # Docker copies `uploads` into the root filesystem before start and
            # refuses to on a read-only root ("container rootfs is marked
            # read-only"), even for tmpfs or volume paths. Containers that ship
            # files keep a writable root; they still run non-root with every
            # capability dropped. Kubernetes mounts files read-only instead.
            read_only=spec.read_only_root and not spec.files,
            tmpfs={path: "rw,noexec,nosuid,size=64m" for path in spec.writable_paths},
            capabilities=docker.ContainerCapabilitiesArgs(
                drops=["ALL"], adds=list(spec.capabilities)
            ),
            security_opts=["no-new-privileges:true"],
            memory=spec.resources.memory_mb,
            cpus=f"{spec.resources.cpus:g}",
            init=True,
            restart="no" if job else "unless-stopped",
            must_run=not job,
            attach=job,
            logs=job,
            destroy_grace_seconds=60 if spec.workload == "stateful" else 15,
            log_driver="gelf" if self._args.ship_logs and spec.ship_logs else "json-file",
            log_opts=(
                {
                    "gelf-address": f"udp://127.0.0.1:{self._args.gelf_port}",
                    "tag": f"{self.stack}/{spec.name}",
                }
                if self._args.ship_logs and spec.ship_logs
                else {"max-size": "10m", "max-file": "5"}
            ),
        )


def _wait_timeout(spec: ServiceSpec) -> int:
    assert spec.health is not None
    h = spec.health
    return h.start_period_s + h.retries * (h.interval_s + h.timeout_s) + 30


def _published(spec: ServiceSpec) -> bool:
    return any(p.publish is not None for p in spec.ports)


def _command(spec: ServiceSpec) -> tuple[list[str] | None, list[str] | None]:
    if spec.workload == "schedule":
        assert spec.schedule_hours is not None
        run = shlex.join([*(spec.command or ()), *(spec.args or ())])
        # One long-lived container per schedule: a failed run is retried next
        # interval and surfaces through the backup-age alert.
        loop = f"while :; do {run}; sleep {spec.schedule_hours * 3600}; done"
        return ["/bin/sh", "-c", loop], None
    return (
        list(spec.command) if spec.command else None,
        list(spec.args) if spec.args else None,
    )


def _job_succeeded(service: str, code: int | None) -> str:
    if code is None:
        return "pending"
    if int(code) != 0:
        raise RuntimeError(f"{service} exited with status {int(code)}; dependants were not started")
    return "succeeded"

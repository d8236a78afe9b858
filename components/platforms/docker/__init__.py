"""The Docker platform: one host, containers on per-service networks.

Segmentation follows the declared flows: every service that listens gets its
own network, named after it, and only the services that declared a flow to it
join that network. Those networks are always ``internal`` (no route off the
host). A service that publishes a port or needs the internet also joins an
``<service>-edge`` network of its own, which no other service joins, so a
client never inherits its target's route off the host.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.platforms import Deployment, Platform, RegistryAuth
from components.platforms.docker.forms import docker_cpus, go_duration, inputs_digest
from components.platforms.docker.gate import Admission
from components.platforms.docker.jobs import JobRun, job_script
from components.platforms.docker.rollout import (
    admission,
    admission_gate,
    exclusive,
    gated,
    generation_name,
    live_files,
    published,
    reloader,
    wait_timeout,
)
from components.spec import (
    ConfigFile,
    PostgresService,
    PostgresSpec,
    ServiceSpec,
    VolumeSpec,
)

__all__ = ["EMBEDDED_DNS", "SECRET_FILES_LABEL", "DockerPlatform", "DockerPlatformArgs"]

SECRET_FILES_LABEL = "com.luna.secret-files"  # noqa: S105 - a label name
EMBEDDED_DNS = "127.0.0.11"
"""Docker's embedded DNS server inside every container on a user-defined network."""
TMPFS_OPTIONS = "rw,noexec,nosuid,size=64m"


@dataclass(frozen=True)
class DockerPlatformArgs:
    stack: str
    host: str
    """``unix:///var/run/docker.sock`` or ``ssh://user@host`` for a remote single host."""
    ship_logs: bool = False
    gelf_port: int = 12201
    """Host loopback port of this stack's Logstash GELF input (one per stack on a host).

    The logging driver runs in the Docker daemon, not in a container, so it
    cannot resolve container names (moby/moby#20370); 127.0.0.1 is the host.
    """
    registry: RegistryAuth | None = None
    """Credentials for a private registry the images are pulled from."""


class DockerPlatform(Platform):
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
        super().__init__("luna:platform:DockerPlatform", name, args.stack, opts)
        self._args = args
        auth = (
            [
                docker.ProviderRegistryAuthArgs(
                    address=args.registry.server,
                    username=args.registry.username,
                    password=pulumi.Output.secret(args.registry.password),
                )
            ]
            if args.registry
            else None
        )
        self.provider = docker.Provider(
            f"{name}-provider",
            host=args.host,
            registry_auth=auth,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._networks: dict[str, docker.Network] = {}
        self._images: dict[str, docker.RemoteImage] = {}
        self._builds: dict[str, docker.Image] = {}
        self._volumes: dict[str, docker.Volume] = {}
        self.register_outputs({})

    # -- Platform ----------------------------------------------------------
    @property
    def name(self) -> str:
        return "docker"

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

    def _realise(
        self, name: str, spec: ServiceSpec, parent: pulumi.Resource, after: list[pulumi.Resource]
    ) -> Deployment:
        image = self._image(spec.image)
        if spec.workload == "job":
            job = self._job(name, spec, image, parent=parent, depends=after)
            return Deployment(service=spec.name, resources=[job])
        live: list[ConfigFile] = []
        if spec.reload is not None:
            spec, live, writers = live_files(self, name, spec, image, parent=parent)
            after = [*after, *writers]
        replicas = spec.replicas if spec.workload == "service" else 1
        containers = []
        addresses = []
        alone = exclusive(spec)
        gated_ = gated(spec)
        admissions: list[pulumi.Output[Admission]] = []
        for index in range(replicas):
            replica = f"{spec.name}-{index}" if replicas > 1 else spec.name
            resource_name = f"{name}-{index}" if replicas > 1 else name
            if spec.ports:
                addresses.append(f"{replica}:{spec.ports[0].port}")
            inputs = self._container_inputs(spec, replica, image, join_own=not gated_)
            physical = (
                _unique_name(self.physical(replica), inputs)
                if alone
                else generation_name(resource_name, self.physical(replica), inputs, parent, after)
            )
            container = docker.Container(
                resource_name,
                name=physical,
                **inputs,
                opts=pulumi.ResourceOptions(
                    parent=parent,
                    provider=self.provider,
                    depends_on=after,
                    # A container that holds a host port or writes a volume
                    # must stop before its replacement starts; any other is
                    # replaced create-before-delete, so a replica always runs.
                    delete_before_replace=alone,
                ),
            )
            containers.append(container)
            aliases = sorted({spec.name, replica})
            admissions.append(container.name.apply(functools.partial(admission, aliases)))
        if gated_:
            admission_gate(self, name, spec, containers, admissions, parent=parent)
        if live:
            reloader(self, name, spec, containers, live, parent=parent)
        public = any(p.publish is not None and p.publish_ip == "0.0.0.0" for p in spec.ports)  # noqa: S104
        return Deployment(
            service=spec.name,
            resources=containers,
            names=tuple(c.name for c in containers),
            public_address=self.host_name if public else None,
            addresses=tuple(addresses),
            # Docker's DNS answers the service name with every replica: scrapes of a
            # replicated service discover them, so scaling it never rewrites
            # Prometheus' config (as Kubernetes' headless `-pods` Service does).
            dns_names=(spec.name,) if spec.ports and replicas > 1 else (),
            service_address=f"{spec.name}:{spec.ports[0].port}" if spec.ports else None,
            resolver=EMBEDDED_DNS,
        )

    @property
    def host_name(self) -> str:
        """The Docker host's name as the world knows it: ``ssh://user@host`` gives
        ``host``; a local socket, this machine."""
        host = self._args.host
        if host.startswith("ssh://"):
            return host.removeprefix("ssh://").split("@")[-1].split(":")[0].split("/")[0]
        return "localhost"

    def service_url(self, spec: ServiceSpec, port: str) -> str:
        for p in spec.ports:
            if p.name == port and p.publish is not None:
                wildcard = p.publish_ip in ("127.0.0.1", "0.0.0.0")  # noqa: S104
                host = "localhost" if wildcard else p.publish_ip
                return f"http://{host}:{p.publish}"
        raise ValueError(f"{spec.name} does not publish a port named {port!r}")

    def postgres_dns_names(self, service: str) -> tuple[str, ...]:
        return (service,)

    def postgres(
        self, name: str, spec: PostgresSpec, *, parent: pulumi.Resource
    ) -> PostgresService:
        """A hardened container with pgBackRest (components/platforms/docker/postgres.py)."""
        from components.platforms.docker.postgres import deploy_postgres

        return deploy_postgres(self, name, spec, parent=parent)

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

    @property
    def host(self) -> str:
        """The Docker host every container runs on (``DOCKER_HOST`` for Commands)."""
        return self._args.host

    def network(self, key: str) -> docker.Network:
        """The stack's network ``key`` (created on first use)."""
        return self._network(key)

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

    def _network(
        self, key: str, *, internal: bool = True, masquerade: bool = True
    ) -> docker.Network:
        """``masquerade=False``: a bridge that publishes ports (inbound DNAT works) but
        whose outbound packets are never source-NATed to the host's address, so no
        reply from the internet, or from the cloud metadata address
        169.254.169.254, ever comes back (moby libnetwork drivers/bridge,
        ``com.docker.network.bridge.enable_ip_masquerade``). ``internal`` networks
        cannot publish ports at all, so a service that only publishes gets this."""
        if key not in self._networks:
            self._networks[key] = docker.Network(
                f"{self._name}-net-{key}",
                name=self.physical(key),
                driver="bridge",
                internal=internal,
                options=(
                    {}
                    if masquerade
                    else {"com.docker.network.bridge.enable_ip_masquerade": "false"}
                ),
                labels=[docker.NetworkLabelArgs(label="com.luna.stack", value=self.stack)],
                opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
            )
        return self._networks[key]

    def _container_inputs(
        self, spec: ServiceSpec, replica: str, image: docker.RemoteImage, *, join_own: bool = True
    ) -> dict[str, Any]:
        """The container's inputs (all but its name), each in the provider's read-back form.

        ``join_own=False``: the container starts off its service's network; the
        admission gate connects it once healthy.
        """
        networks: list[dict[str, Any]] = []
        if spec.ports and join_own:
            own = self._network(spec.name)
            # Every replica answers to the service name too: Docker's embedded DNS
            # returns one A record per replica, which nginx resolves per request.
            networks.append({"name": own.name, "aliases": sorted({spec.name, replica})})
        if published(spec) or spec.internet_egress:
            # The one non-internal network: it carries the default route and
            # the published ports, and only this service is on it.
            edge = self._network(
                f"{spec.name}-edge", internal=False, masquerade=spec.internet_egress
            )
            networks.append({"name": edge.name})
        networks += [{"name": self._network(target).name} for target in spec.connects_to]

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
        if spec.stop_signal:
            # Docker's init (tini) signals its child only; TINI_KILL_PROCESS_GROUP makes
            # it signal the child's process group, so a script's children stop too.
            envs.append("TINI_KILL_PROCESS_GROUP=1")
        # Labels describe, never sequence: any change to them replaces the container.
        labels = {
            "com.luna.stack": self.stack,
            "com.luna.service": spec.name,
            "com.luna.component": spec.component,
        }
        secret_files = [f.path for f in spec.files if f.secret]
        if secret_files:
            # Docker keeps `uploads` as one property, so one secret file makes the
            # whole list secret in state; this label says which files really are.
            labels[SECRET_FILES_LABEL] = ",".join(secret_files)

        entrypoint, command = _command(spec)
        memory = spec.resources.memory_mb
        inputs: dict[str, Any] = {
            "image": image.image_id,
            "hostname": replica,
            "entrypoints": entrypoint,
            "command": command,
            "envs": envs,
            "labels": [{"label": k, "value": v} for k, v in sorted(labels.items())],
            "uploads": [
                {
                    "file": f.path,
                    "content": pulumi.Output.secret(f.content) if f.secret else f.content,
                }
                for f in spec.files
            ],
            "mounts": [
                {
                    "target": m.path,
                    "type": "volume",
                    # A live-files volume is made by its writer (docker/files.py).
                    "source": self._volumes[m.volume].name
                    if m.volume in self._volumes
                    else self.physical(m.volume),
                    "read_only": m.read_only,
                }
                for m in spec.mounts
            ],
            "networks_advanced": networks,
            "ports": [
                {
                    "internal": p.port,
                    "external": p.publish,
                    "ip": p.publish_ip,
                    "protocol": p.protocol,
                }
                for p in spec.ports
                if p.publish is not None
            ],
            # "Created" means "healthy": a replacement replica takes traffic, and
            # its predecessor is removed, only once it answers.
            "wait": bool(spec.health),
            "wait_timeout": wait_timeout(spec) if spec.health else None,
            "healthcheck": (
                {
                    "tests": ["CMD", *spec.health.command],
                    "interval": go_duration(spec.health.interval_s),
                    "timeout": go_duration(spec.health.timeout_s),
                    "retries": spec.health.retries,
                    "start_period": go_duration(spec.health.start_period_s),
                }
                if spec.health
                else None
            ),
            "user": spec.user,
            # Docker copies `uploads` into the root filesystem before start and
            # refuses to on a read-only root ("container rootfs is marked
            # read-only"), even for tmpfs or volume paths. Containers that ship
            # files keep a writable root; they still run non-root with every
            # capability dropped. Kubernetes mounts files read-only instead.
            "read_only": spec.read_only_root and not spec.files,
            "tmpfs": {path: TMPFS_OPTIONS for path in spec.writable_paths},
            "capabilities": {"drops": ["ALL"], "adds": list(spec.capabilities)},
            "security_opts": ["no-new-privileges:true"],
            "memory": memory,
            # Swap equal to memory: no swap (health data never reaches swap), and
            # the daemon accepts any later memory change sent together with it.
            "memory_swap": memory,
            "cpus": docker_cpus(spec.resources.cpus),
            "init": True,
            "stop_signal": spec.stop_signal,
            "restart": "unless-stopped",
            "must_run": True,
            "destroy_grace_seconds": 60 if spec.workload == "stateful" else 15,
            "log_driver": self._log_driver(spec),
            "log_opts": self._log_opts(spec),
        }
        return inputs

    def _log_driver(self, spec: ServiceSpec) -> str:
        return "gelf" if self._args.ship_logs and spec.ship_logs else "local"

    def _log_opts(self, spec: ServiceSpec) -> dict[str, str]:
        """Every option the driver takes, so the daemon's defaults are never merged in.

        The daemon copies its default ``log-opts`` into a container whose driver is
        the default driver, for each key the container leaves unset
        (moby daemon/logs.go, ``mergeAndVerifyLogConfig``); the provider reads
        them back and the next ``up`` would see a diff. The ``local`` driver is
        not Docker's default, and its whole option set is written here.
        """
        # The daemon merges its `cache-*` defaults whatever the driver
        # (moby daemon/logger/loggerutils/cache, MergeDefaultLogConfig): set them all.
        common = {
            "mode": "non-blocking",
            "max-buffer-size": "4m",
            "cache-disabled": "false",
            "cache-max-size": "10m",
            "cache-max-file": "5",
            "cache-compress": "true",
        }
        if self._log_driver(spec) == "gelf":
            return {
                "gelf-address": f"udp://127.0.0.1:{self._args.gelf_port}",
                "gelf-compression-type": "gzip",
                "tag": f"{self.stack}/{spec.name}",
                **common,
                # Dual logging would keep an unredacted copy of every shipped line
                # on the host, bounded by size only, never by age (Docker docs,
                # "Use docker logs with remote logging drivers"). Shipped output is
                # read, redacted, in Kibana; `docker logs` answers "configured
                # logging driver does not support reading" for these containers.
                "cache-disabled": "true",
            }
        # Not shipped (the logging stack's own services): size-bounded local files.
        return {"max-size": "10m", "max-file": "5", "compress": "true", **common}

    def _job(
        self,
        name: str,
        spec: ServiceSpec,
        image: docker.RemoteImage,
        *,
        parent: pulumi.Resource,
        depends: Sequence[pulumi.Resource],
    ) -> command.local.Command:
        """A one-shot job: fails its own resource when the container exits non-zero."""
        networks = [self._network(target).name for target in spec.connects_to]
        # A secret file's variable says so: the engine may send the whole (secret)
        # environment as one secret value, and the render masks these by name.
        file_vars = {
            f.path: f"LUNA_{'SECRET_' if f.secret else ''}FILE_{i}"
            for i, f in enumerate(spec.files)
        }
        environment: dict[str, pulumi.Input[str]] = {"DOCKER_HOST": self._args.host}
        environment.update({k: pulumi.Output.secret(v) for k, v in spec.secret_env.items()})
        environment.update(
            {
                file_vars[f.path]: pulumi.Output.secret(f.content) if f.secret else f.content
                for f in spec.files
            }
        )
        entrypoint, args = _command(spec)
        script = pulumi.Output.all(image.image_id, *networks).apply(
            lambda resolved: job_script(
                JobRun(
                    container=self.physical(spec.name),
                    image=str(resolved[0]),
                    networks=[str(n) for n in resolved[1:]],
                    command=args or [],
                    entrypoint=entrypoint,
                    env=[(k, str(v)) for k, v in spec.env.items()],
                    secret_env=sorted(spec.secret_env),
                    files=sorted(file_vars.items()),
                    mounts=[(self.physical(m.volume), m.path, m.read_only) for m in spec.mounts],
                    tmpfs=list(spec.writable_paths),
                    user=spec.user,
                    memory_mb=spec.resources.memory_mb,
                    cpus=docker_cpus(spec.resources.cpus),
                    read_only=spec.read_only_root and not spec.files,
                    log_opts=sorted(self._log_opts(spec).items()),
                    log_driver=self._log_driver(spec),
                )
            )
        )
        return command.local.Command(
            name,
            create=script,
            # A new image runs the job again (a replacement); so does any other
            # change to the script, through the Command's update.
            triggers=[image.image_id],
            environment=environment,
            interpreter=["/bin/sh", "-c"],
            opts=pulumi.ResourceOptions(
                parent=parent,
                depends_on=[*depends, *self._volumes.values()],
                custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m"),
            ),
        )


def _unique_name(base: str, inputs: dict[str, Any]) -> pulumi.Output[str]:
    """``<base>-<digest of the inputs that cannot change in place>``.

    A change that replaces the container changes its name, so the replacement
    can start while its predecessor still runs. The digest is one-way; the name
    is not secret even when an input is.
    """
    resolved = pulumi.Output.from_input(inputs)
    return pulumi.Output.unsecret(resolved.apply(lambda v: f"{base}-{inputs_digest(v)}"))


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

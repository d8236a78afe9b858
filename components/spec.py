"""A platform-neutral description of one Luna service.

Components say *what* runs (image, ports, environment, secrets, files, health,
size, and which services it opens connections to); a platform in
``components.platforms`` turns that into Docker containers or Kubernetes
objects. Nothing here creates resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi

__all__ = [
    "BackupMetrics",
    "ConfigFile",
    "HealthCheck",
    "Mount",
    "ObjectStoreTarget",
    "Port",
    "PostgresService",
    "PostgresSpec",
    "PostgresTls",
    "Reload",
    "Resources",
    "ServiceSpec",
    "VolumeSpec",
    "Workload",
]

BackupMetrics = Literal["pushgateway", "cnpg"] | None
"""Where a database's backup results are reported, for the backup alerts."""

Workload = Literal["service", "stateful", "job", "schedule"]
"""``service``: long-running, replicated; ``stateful``: one instance owning a
volume; ``job``: runs once to completion before its dependants start;
``schedule``: runs every ``schedule_hours``."""


@dataclass(frozen=True)
class Port:
    """A port the service listens on.

    ``publish`` exposes it on the host (Docker) or through the edge
    (Kubernetes). ``publish_ip`` keeps operator UIs on the loopback interface,
    reachable through an SSH tunnel only.
    """

    name: str
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    publish: int | None = None
    publish_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class TlsFront:
    """The service also answers over TLS on ``port``, with a certificate the stack
    CA issued for its name, terminated in front of its plain ``target`` port.

    A platform whose services talk across machines realises it (Kubernetes: a
    sidecar of the project's own nginx image, platforms/kubernetes/tls_front.py);
    where every hop stays on one host (Docker) it is never asked for
    (``Platform.crosses_hosts``; docs/architecture.md, "Edge to app").
    """

    port: int
    target: int
    cert_pem: pulumi.Input[str]
    key_pem: pulumi.Input[str]
    image: str
    """The terminator's image: the edge's pinned nginx, patched with it."""


@dataclass(frozen=True)
class ConfigFile:
    """A file shipped into the container (never a host bind mount).

    ``secret`` files become Kubernetes Secrets and are masked by the render.
    """

    path: str
    content: pulumi.Input[str]
    secret: bool = False


@dataclass(frozen=True)
class VolumeSpec:
    """Persistent storage created by a component and mounted by name."""

    size_gb: int
    protect: bool = False


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool = False
    shared: bool = False
    """Several processes may write it at once (SQLite, which locks its own file), so
    a replacement may start before its predecessor stops."""


@dataclass(frozen=True)
class HealthCheck:
    """A check that runs *inside* the image, so it may only use what it ships."""

    command: tuple[str, ...]
    interval_s: int = 15
    timeout_s: int = 5
    retries: int = 5
    start_period_s: int = 30
    http_path: str | None = None
    """When set, platforms that probe over HTTP (Kubernetes) use this path."""
    http_port: int | None = None

    @classmethod
    def http(cls, port: int, path: str, *, start_period_s: int = 30) -> HealthCheck:
        """GET ``path`` on the container's own ``port``: busybox ``wget`` inside the
        image where the check runs in the container (Docker), an ``httpGet`` on the
        same path and port where the platform probes (Kubernetes)."""
        return cls(
            command=("wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"),
            http_path=path,
            http_port=port,
            start_period_s=start_period_s,
        )


@dataclass(frozen=True)
class Reload:
    """The service re-reads the files below ``directory`` in place.

    ``check`` validates them and ``command`` applies them, both run inside the
    running service. A platform that would restart the service for a new file
    ships these through something it can change under it instead (Docker: a
    volume, components/platforms/docker/files.py).
    """

    directory: str
    command: tuple[str, ...]
    check: tuple[str, ...]


@dataclass(frozen=True)
class Resources:
    memory_mb: int
    cpus: float


@dataclass(frozen=True)
class ServiceSpec:
    """Everything a platform needs to run one Luna service.

    ``name`` is the service's DNS name on both platforms (a network alias on
    Docker, a Service in the stack's namespace on Kubernetes), so generated
    configuration files name the same hosts everywhere.
    """

    name: str
    image: str
    resources: Resources
    workload: Workload = "service"
    replicas: int = 1
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    ports: tuple[Port, ...] = ()
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secret_env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    files: tuple[ConfigFile, ...] = ()
    mounts: tuple[Mount, ...] = ()
    writable_paths: tuple[str, ...] = ()
    """Scratch directories on an otherwise read-only root filesystem."""
    health: HealthCheck | None = None
    user: str | None = None
    """``uid:gid`` to run as; ``None`` keeps the image's own non-root user."""
    capabilities: tuple[str, ...] = ()
    """Linux capabilities added back after dropping all of them."""
    read_only_root: bool = True
    connects_to: tuple[str, ...] = ()
    """Services this one opens connections to: the allowed flows."""
    internet_egress: bool = False
    internet_ports: tuple[int, ...] = (443,)
    """TCP ports ``internet_egress`` may reach (Kubernetes egress; the receivers'
    and the object store's configured ports)."""
    ship_logs: bool = True
    schedule_hours: int | None = None
    drain_s: int = 0
    """Seconds a stopping replica keeps serving before it is signalled, so that
    load balancers stop sending to it first (a Kubernetes ``preStop`` sleep)."""
    stop_signal: str | None = None
    """The signal that stops it, sent to its whole process group; ``None`` keeps the
    image's ``STOPSIGNAL`` for the main process. The postgres image's is SIGINT
    (PostgreSQL's fast shutdown): a shell script running a foreground command acts on
    it only when that command ends, so a sidecar's loop waited out its grace and was
    SIGKILLed, its running pgBackRest with it. Docker realises it (the Kubernetes
    platform runs no such sidecar: CloudNativePG takes the backups there)."""
    reload: Reload | None = None
    single_instance: bool = False
    """Never two instances at once, even for a moment: a replacement stops the
    old one first (two caches answering one name split sessions and counters)."""
    routed: bool = False
    """A load balancer sends users' requests to it: a replica may answer on the
    service's name only once healthy (a readiness-aware Service on Kubernetes; an
    admission after its health check on Docker, components/platforms/docker/gate.py)."""
    component: str = "luna"
    """The ``app.kubernetes.io/component`` label / Docker label."""
    tls_front: TlsFront | None = None
    """Reached by the edge over TLS only (see :class:`TlsFront`)."""

    def __post_init__(self) -> None:
        if (self.workload == "schedule") != (self.schedule_hours is not None):
            raise ValueError(f"{self.name}: schedule_hours goes with workload 'schedule' only")
        if self.replicas < 1:
            raise ValueError(f"{self.name}: replicas must be at least 1")


@dataclass(frozen=True)
class ObjectStoreTarget:
    """An S3-compatible bucket off the host for WAL and base backups (secrets as Inputs)."""

    bucket: str
    endpoint: str
    """``host`` or ``host:port``; always TLS."""
    region: str
    path: str
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]
    encryption_key: pulumi.Input[str]
    """pgBackRest's client-side cipher pass (Docker); unused by Barman Cloud, which
    relies on the bucket's server-side encryption (Kubernetes)."""
    retention_days: int
    uri_style: str = "host"
    kms_key_id: str | None = None
    """Kubernetes: the AWS KMS key every backup object is encrypted with (SSE-KMS);
    ``None``: SSE-S3 (AES256) under the store's own key (docs/kubernetes.md)."""


@dataclass(frozen=True)
class PostgresTls:
    cert_pem: pulumi.Input[str]
    key_pem: pulumi.Input[str]
    ca_pem: pulumi.Input[str]


@dataclass(frozen=True)
class PostgresSpec:
    """A managed PostgreSQL, described once; each platform realises it with its best engine.

    Docker: one hardened container whose archiver (pgBackRest) ships WAL and base
    backups to ``backup``. Kubernetes: a CloudNativePG ``Cluster`` with
    ``instances`` and Barman Cloud to ``backup``. ``role_passwords`` maps the
    owner, app, monitoring and backup roles (components/configs/postgres.py) to
    their passwords; the superuser's reaches no client.
    """

    name: str
    """The service name (Docker DNS name; Kubernetes cluster name)."""
    image: str
    version: int
    instances: int
    storage_gb: int
    resources: Resources
    superuser_password: pulumi.Input[str]
    role_passwords: Mapping[str, pulumi.Input[str]]
    tls: PostgresTls
    app_login: pulumi.Input[str] = ""
    """The app's login role (``luna_app_<suffix>``, a member of the group ``luna_app``),
    renamed with every app password (components/configs/postgres.py)."""
    audit: bool = True
    backup: ObjectStoreTarget | None = None
    backup_schedule_hours: int = 24
    """A base backup this often (Docker: weekly full, differential in between)."""
    drill_hours: int | None = None
    drill_push_url: str | None = None
    backup_push_url: str | None = None
    """Pushgateway job URL each successful base backup reports to (Docker's backup loop)."""
    archive_timeout_s: int = 60
    synchronous: bool = False
    """At least one synchronous standby (RPO 0 on failover)."""
    protect: bool = False
    wal_storage_gb: int | None = None
    """WAL on its own volume of this size (CloudNativePG); ``None``: on the data volume."""
    restore_to_time: str | None = None
    """Bootstrap by point-in-time recovery to this RFC 3339 time (CloudNativePG)."""


@dataclass(frozen=True)
class PostgresService:
    """What a platform made for a :class:`PostgresSpec`."""

    host: str
    """The read-write endpoint clients connect to (its name is in the server certificate)."""
    resources: Sequence[pulumi.Resource]
    """What clients wait for."""
    metrics_dns: str | None = None
    """A name with one A record per instance serving PostgreSQL metrics (CloudNativePG)."""
    backup_metrics: BackupMetrics = None
    """Who reports the base backups' time: the Pushgateway (pushed by the Docker
    server's backup loop), CloudNativePG's own exporter, or nobody (no backups)."""
    container: pulumi.Output[str] | None = None
    """The server's container name (Docker), for runbooks' ``docker exec``."""

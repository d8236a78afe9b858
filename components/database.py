"""Database: SQLite on a volume (dev) or a managed PostgreSQL that each platform realises.

PostgreSQL is described once (:class:`~components.spec.PostgresSpec`: version,
instances, storage, TLS, roles, audit, backup target and schedule); Docker runs
a hardened container with pgBackRest, Kubernetes a CloudNativePG ``Cluster``.
Every client verifies the server's certificate against the stack's CA and
logs in as its own least-privileged role; the superuser password reaches no
client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi

from components.certificates import InternalCA
from components.configs import postgres as pg
from components.passwords import secret_or_generated
from components.platforms import Deployment, Platform
from components.spec import (
    BackupMetrics,
    Mount,
    ObjectStoreTarget,
    PostgresSpec,
    PostgresTls,
    Resources,
    VolumeSpec,
)

__all__ = ["CA_FILE", "BackupArgs", "Database", "DatabaseArgs"]

SERVICE = "database"
SQLITE_DIR = "/app/data"
CA_FILE = "/etc/luna/tls/database-ca.crt"
"""Where clients find the CA that signed the database's certificate."""


@dataclass(frozen=True)
class BackupArgs:
    target: ObjectStoreTarget
    schedule_hours: int
    """A base backup at least this often (WAL is archived continuously); on Docker a
    full one weekly and a differential otherwise."""
    drill_hours: int = 24
    push_url: str | None = None
    """Pushgateway job URL successful backups report to."""
    drill_push_url: str | None = None
    """Pushgateway job URL the restore drill reports to."""


@dataclass(frozen=True)
class DatabaseArgs:
    platform: Platform
    engine: Literal["sqlite", "postgres"]
    volume_gb: int
    image: str = ""
    version: int = 15
    instances: int = 1
    synchronous: bool = False
    ca: InternalCA | None = None
    resources: Resources = field(default_factory=lambda: Resources(memory_mb=512, cpus=1.0))
    password: pulumi.Input[str] | None = None
    """The app role's password; generated when ``None``."""
    backup: BackupArgs | None = None
    protect: bool = False
    """Protect and retain the data (volume or cluster) and the generated passwords (prod)."""
    wal_volume_gb: int | None = None
    """Kubernetes: WAL on its own volume of this size."""
    restore_to_time: str | None = None
    """Kubernetes: recreate the cluster by point-in-time recovery to this RFC 3339 time."""


class Database(pulumi.ComponentResource):
    """Luna's primary data store.

    Usage::

        db = Database("luna-database", DatabaseArgs(platform=p, engine="postgres",
                      image="ghcr.io/luna-app/luna-postgres:15.10-1", volume_gb=20, ca=ca))
        app_env["DATABASE_URL"] = db.url
    """

    url: pulumi.Output[str]
    """Prisma ``DATABASE_URL`` of the app role (DML only), verifying TLS; secret."""
    migrate_url: pulumi.Output[str]
    """Prisma URL of the owner role, for the migration job only; secret."""
    service: str | None
    """The service clients connect to (flows), ``None`` for SQLite."""
    host: str | None
    """The read-write host name clients connect to."""
    ca_pem: pulumi.Output[str] | None
    """The CA clients verify the server with (shipped to them as :data:`CA_FILE`)."""
    mounts: tuple[Mount, ...]
    """Mounts a client needs (the SQLite volume)."""
    monitor_password: pulumi.Output[str] | None
    """The monitoring role's password (secret)."""
    deployment: Deployment | None
    """The PostgreSQL server, for clients that must wait until it is ready."""
    metrics_dns: str | None
    """A name resolving to each instance's metrics endpoint (CloudNativePG), else ``None``."""
    backup_metrics: BackupMetrics
    """Where backups report (``PostgresService.backup_metrics``); the backup alerts follow."""
    container: pulumi.Output[str] | None
    """The PostgreSQL container's name on Docker (for runbooks' ``docker exec``), else ``None``."""
    app_login: pulumi.Output[str] | None
    """The app's current login role (``luna_app_<suffix>``), ``None`` for SQLite."""

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:Database", name, None, opts)
        platform = args.platform
        self.monitor_password = None
        self.ca_pem = None
        self.host = None
        self.metrics_dns = None
        self.backup_metrics = None
        self.container = None
        self.app_login = None

        if args.engine == "sqlite":
            data = VolumeSpec(size_gb=args.volume_gb, protect=args.protect)
            platform.volume(f"{name}-sqlite", "sqlite", data, parent=self)
            self.url = pulumi.Output.secret(f"file:{SQLITE_DIR}/dev.db")
            self.migrate_url = self.url
            self.service = None
            self.mounts = (Mount(volume="sqlite", path=SQLITE_DIR, shared=True),)
            self.deployment = None
        else:
            if not args.image or args.ca is None:
                raise ValueError("postgres needs an image and the stack's CA")
            self._postgres(name, args)
        self.register_outputs(
            {"url": self.url, "migrate_url": self.migrate_url, "service": self.service or ""}
        )

    def _postgres(self, name: str, args: DatabaseArgs) -> None:
        assert args.ca is not None

        def generated(suffix: str, supplied: pulumi.Input[str] | None = None) -> pulumi.Output[str]:
            return secret_or_generated(
                f"{name}-{suffix}", supplied, parent=self, protect=args.protect
            )

        passwords: dict[str, pulumi.Output[str]] = {
            pg.APP_ROLE: generated("password", args.password),
            pg.OWNER_ROLE: generated("owner-password"),
            pg.MONITOR_ROLE: generated("monitor-password"),
        }
        if args.platform.name == "docker":
            # pgBackRest's role; CloudNativePG's archiver needs no login role.
            passwords[pg.BACKUP_ROLE] = generated("backup-password")
        superuser = generated("superuser-password")
        # The app logs in as a member of the luna_app group whose name follows its
        # password (pg.app_login_role): old replicas keep logging in as the previous
        # one while an up replaces them. The name is keyed, so it reveals nothing
        # of the password and need not be secret.
        key = generated("app-login-key")
        app_login = pulumi.Output.unsecret(
            pulumi.Output.all(key, passwords[pg.APP_ROLE]).apply(
                lambda v: pg.app_login_role(v[0], v[1])
            )
        )
        dns_names = args.platform.postgres_dns_names(SERVICE)
        cert = args.ca.issue(SERVICE, dns_names)
        made = args.platform.postgres(
            f"{name}-postgres",
            PostgresSpec(
                name=SERVICE,
                image=args.image,
                version=args.version,
                instances=args.instances,
                storage_gb=args.volume_gb,
                resources=args.resources,
                superuser_password=superuser,
                role_passwords=passwords,
                app_login=app_login,
                tls=PostgresTls(cert.cert_pem, cert.key_pem, cert.ca_pem),
                backup=args.backup.target if args.backup else None,
                backup_schedule_hours=args.backup.schedule_hours if args.backup else 24,
                drill_hours=args.backup.drill_hours if args.backup else None,
                drill_push_url=args.backup.drill_push_url if args.backup else None,
                backup_push_url=args.backup.push_url if args.backup else None,
                synchronous=args.synchronous,
                protect=args.protect,
                wal_storage_gb=args.wal_volume_gb,
                restore_to_time=args.restore_to_time,
            ),
            parent=self,
        )
        self.service = SERVICE
        self.host = made.host
        self.ca_pem = cert.ca_pem
        self.mounts = ()
        self.deployment = Deployment(service=SERVICE, resources=made.resources)
        self.monitor_password = passwords[pg.MONITOR_ROLE]
        self.metrics_dns = made.metrics_dns
        self.backup_metrics = made.backup_metrics
        self.container = made.container

        def url(role: str, user: pulumi.Input[str]) -> pulumi.Output[str]:
            return pulumi.Output.secret(
                pulumi.Output.all(user, passwords[role]).apply(
                    lambda v: pg.prisma_url(
                        user=v[0], password=v[1], host=made.host, ca_file=CA_FILE
                    )
                )
            )

        self.app_login = app_login
        self.url = url(pg.APP_ROLE, app_login)
        self.migrate_url = url(pg.OWNER_ROLE, pg.OWNER_ROLE)

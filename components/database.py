"""Database: SQLite on a volume (dev) or PostgreSQL with scheduled backups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi

from components.configs.postgres import audit_setup_sql, backup_script, postgres_args
from components.passwords import secret_or_generated
from components.platforms import Deployment, Platform
from components.spec import ConfigFile, HealthCheck, Mount, Port, Resources, ServiceSpec, VolumeSpec

__all__ = ["BackupArgs", "Database", "DatabaseArgs"]

SERVICE = "database"
SQLITE_DIR = "/app/data"
PG_USER = "luna"
PG_DB = "luna"
# The data volume's owner. 70 is the alpine image's postgres user; the Debian
# images (the CloudNativePG operand image is one) run any uid through
# nss_wrapper and keep PGDATA's parent 1777, so volumes made before the image
# change stay readable.
PG_UID = "70:70"
AUDIT_SQL = "/opt/luna/audit.sql"


@dataclass(frozen=True)
class BackupArgs:
    interval_hours: int
    retention: int
    volume_gb: int
    push_url: str | None = None
    """Pushgateway job URL that records each successful backup."""


@dataclass(frozen=True)
class DatabaseArgs:
    platform: Platform
    engine: Literal["sqlite", "postgres"]
    volume_gb: int
    image: str = ""
    resources: Resources = field(default_factory=lambda: Resources(memory_mb=512, cpus=1.0))
    password: pulumi.Input[str] | None = None
    backup: BackupArgs | None = None
    protect: bool = False
    """Protect and retain the data volume and the database (prod)."""


class Database(pulumi.ComponentResource):
    """Luna's primary data store.

    Usage::

        db = Database("luna-database", DatabaseArgs(platform=p, engine="postgres",
                      image="postgres:16.4-alpine", volume_gb=20))
        app_env["DATABASE_URL"] = db.url
    """

    url: pulumi.Output[str]
    """Prisma ``DATABASE_URL``; secret."""
    service: str | None
    """The PostgreSQL service name clients connect to, ``None`` for SQLite."""
    mounts: tuple[Mount, ...]
    """Mounts a client needs (the SQLite volume)."""
    password: pulumi.Output[str] | None
    """The PostgreSQL password (secret), for exporters and backups."""
    deployment: Deployment | None
    """The PostgreSQL server, for clients that must wait until it is ready."""

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:Database", name, None, opts)
        platform = args.platform
        data = VolumeSpec(size_gb=args.volume_gb, protect=args.protect)

        if args.engine == "sqlite":
            platform.volume(f"{name}-sqlite", "sqlite", data, parent=self)
            self.url = pulumi.Output.secret(f"file:{SQLITE_DIR}/dev.db")
            self.service = None
            self.mounts = (Mount(volume="sqlite", path=SQLITE_DIR, shared=True),)
            self.password = None
            self.deployment = None
        else:
            if not args.image:
                raise ValueError("postgres needs an image")
            self.password = secret_or_generated(
                f"{name}-password", args.password, parent=self, protect=args.protect
            )
            platform.volume(f"{name}-data", "postgres-data", data, parent=self)
            self.deployment = platform.deploy(
                f"{name}-postgres",
                ServiceSpec(
                    name=SERVICE,
                    component="database",
                    image=args.image,
                    workload="stateful",
                    resources=args.resources,
                    args=postgres_args(),
                    ports=(Port("postgres", 5432),),
                    env={
                        "POSTGRES_USER": PG_USER,
                        "POSTGRES_DB": PG_DB,
                        "PGDATA": "/var/lib/postgresql/data/pgdata",
                        "POSTGRES_INITDB_ARGS": "--auth-host=scram-sha-256",
                    },
                    secret_env={"POSTGRES_PASSWORD": self.password},
                    mounts=(Mount("postgres-data", "/var/lib/postgresql/data"),),
                    writable_paths=("/var/run/postgresql", "/tmp"),
                    health=HealthCheck(
                        command=("pg_isready", "-U", PG_USER, "-d", PG_DB, "-h", "127.0.0.1"),
                        start_period_s=60,
                    ),
                    user=PG_UID,
                ),
                parent=self,
            )
            self.service = SERVICE
            self.mounts = ()
            self.url = pulumi.Output.secret(
                pulumi.Output.concat(
                    f"postgresql://{PG_USER}:",
                    self.password,
                    f"@{SERVICE}:5432/{PG_DB}?schema=public",
                )
            )
            self._audit_setup(name, args)
            if args.backup:
                self._backups(name, args)

        self.register_outputs(
            {"url": self.url, "service": self.service or "", "password": self.password}
        )

    def _audit_setup(self, name: str, args: DatabaseArgs) -> None:
        """Puts every table under pgaudit object auditing; idempotent, runs on each deploy."""
        assert self.password is not None and self.deployment is not None
        args.platform.deploy(
            f"{name}-audit-setup",
            ServiceSpec(
                name="database-audit-setup",
                component="database",
                image=args.image,
                workload="job",
                resources=Resources(memory_mb=128, cpus=0.25),
                command=(
                    "sh",
                    "-c",
                    f"until pg_isready -q; do sleep 2; done; exec psql -X -q -f {AUDIT_SQL}",
                ),
                files=(ConfigFile(AUDIT_SQL, audit_setup_sql(owner=PG_USER)),),
                env={"PGHOST": SERVICE, "PGUSER": PG_USER, "PGDATABASE": PG_DB},
                secret_env={"PGPASSWORD": self.password},
                writable_paths=("/tmp",),
                user=PG_UID,
                connects_to=(SERVICE,),
            ),
            parent=self,
            after=[self.deployment],
        )

    def _backups(self, name: str, args: DatabaseArgs) -> None:
        assert args.backup is not None and self.password is not None
        backup = args.backup
        args.platform.volume(
            f"{name}-backups",
            "postgres-backups",
            VolumeSpec(size_gb=backup.volume_gb, protect=args.protect),
            parent=self,
        )
        targets = (SERVICE, "pushgateway") if backup.push_url else (SERVICE,)
        args.platform.deploy(
            f"{name}-backup",
            ServiceSpec(
                name="database-backup",
                component="database",
                image=args.image,
                workload="schedule",
                schedule_hours=backup.interval_hours,
                resources=Resources(memory_mb=256, cpus=0.5),
                command=("/bin/sh", "/opt/luna/backup.sh"),
                files=(
                    ConfigFile(
                        "/opt/luna/backup.sh",
                        backup_script(
                            retention=backup.retention,
                            backup_dir="/var/lib/postgresql/backups",
                            push_url=backup.push_url,
                        ),
                    ),
                ),
                env={"PGHOST": SERVICE, "PGUSER": PG_USER, "PGDATABASE": PG_DB},
                secret_env={"PGPASSWORD": self.password},
                # The image owns /var/lib/postgresql, so a fresh volume there is
                # writable by the non-root postgres user.
                mounts=(Mount("postgres-backups", "/var/lib/postgresql"),),
                writable_paths=("/tmp",),
                user=PG_UID,
                connects_to=targets,
            ),
            parent=self,
        )

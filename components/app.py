"""LunaApp: the Next.js application and its one-shot database migration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi

from components.database import CA_FILE
from components.passwords import secret_or_generated
from components.platforms import Deployment, Platform
from components.spec import (
    ConfigFile,
    HealthCheck,
    Mount,
    Port,
    Resources,
    ServiceSpec,
    TlsFront,
)

if TYPE_CHECKING:
    from components.certificates import ServerCertificate

__all__ = ["APP_PORT", "INTERNAL_CA_FILE", "TLS_PORT", "LunaApp", "LunaAppArgs"]

SERVICE = "app"
APP_PORT = 3000
TLS_PORT = 3443
"""The app's TLS port, in front of APP_PORT (``ServiceSpec.tls_front``)."""
_SCRATCH = ("/tmp",)
APP_UID = "1001:1001"  # the `nextjs` user of the Next.js standalone image
INTERNAL_CA_FILE = "/etc/luna/tls/ca.crt"
APP_HEALTH_INTERVAL_S = 5
"""The app's health check period (Docker ``interval``, Kubernetes ``periodSeconds``)."""


def node_http_check(port: int, path: str) -> tuple[str, ...]:
    """A health check for a Node image without curl or wget."""
    script = (
        f"require('http').get('http://127.0.0.1:{port}{path}',"
        "r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
    )
    return ("node", "-e", script)


@dataclass(frozen=True)
class LunaAppArgs:
    platform: Platform
    image: str
    app_url: str
    node_env: str
    replicas: int
    resources: Resources
    health_path: str
    database_url: pulumi.Input[str]
    migrate_database_url: pulumi.Input[str] | None = None
    """The owner role's URL: only the migration runs DDL."""
    database_ca_pem: pulumi.Input[str] | None = None
    """The CA the database URLs verify the server with (shipped as its ``sslcert`` file)."""
    database_service: str | None = None
    database_mounts: Sequence[Mount] = ()
    database_deployment: Deployment | None = None
    """The database server; the migration starts only once it is ready."""
    redis_url: pulumi.Input[str] | None = None
    cache_service: str | None = None
    internal_ca_pem: pulumi.Input[str] | None = None
    """The stack's CA: Node trusts it (``NODE_EXTRA_CA_CERTS``) to verify the TLS
    of internal services (``rediss://``), on top of its public roots."""
    openai_api_key: pulumi.Input[str] | None = None
    jwt_secret: pulumi.Input[str] | None = None
    publish_port: int | None = None
    """Publish the app itself on the host's loopback (dev, without a proxy)."""
    drain_s: int = 10
    """Seconds a stopping replica keeps serving while it leaves the load balancers."""
    protect: bool = False
    """Protect the generated JWT secret (prod): losing it signs every user out."""
    tls_cert: ServerCertificate | None = None
    """The stack CA's certificate for ``app``: the edge then reaches the app over
    TLS on ``TLS_PORT`` (where the platform crosses hosts; program.py)."""
    tls_front_image: str | None = None
    """The image that terminates that TLS (the edge's pinned nginx)."""


class LunaApp(pulumi.ComponentResource):
    """The Luna web app, started only after its migration succeeded.

    Usage::

        app = LunaApp("luna-app", LunaAppArgs(platform=p, image="ghcr.io/luna/web:1.4.2",
                      app_url="https://luna-app.com", ..., database_url=db.url))
    """

    addresses: Sequence[str]
    """``host:port`` of each replica, for scraping."""
    deployment: Deployment
    """The replicas, for the proxy (its service address and resolver)."""
    dns_names: Sequence[str]
    """Names with one A record per replica (Kubernetes), for DNS-based scrape discovery."""
    internal_url: str
    url: str

    def __init__(
        self, name: str, args: LunaAppArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:LunaApp", name, None, opts)
        self._name, self._args = name, args
        # The database's CA, when the app verifies PostgreSQL's certificate.
        self._db_files: tuple[ConfigFile, ...] = (
            (ConfigFile(CA_FILE, args.database_ca_pem),) if args.database_ca_pem is not None else ()
        )
        secret_env = self._secret_env()
        migration = self._migration()
        app = self._web(migration, secret_env)
        self.addresses = tuple(app.addresses)
        self.deployment = app
        self.dns_names = tuple(app.dns_names)
        self.internal_url = f"http://{SERVICE}:{APP_PORT}"
        self.url = args.app_url
        self.register_outputs({"url": self.url, "internal_url": self.internal_url})

    def _migration(self) -> Deployment:
        """Prisma's migrations, as the schema's owner, before any replica of the new image."""
        args = self._args
        migrate_url = (
            args.migrate_database_url
            if args.migrate_database_url is not None
            else args.database_url
        )
        return args.platform.deploy(
            f"{self._name}-migrate",
            ServiceSpec(
                name="app-migrate",
                component="app",
                image=args.image,
                workload="job",
                resources=Resources(memory_mb=512, cpus=0.5),
                command=("npx", "--no-install", "prisma", "migrate", "deploy"),
                env={"NODE_ENV": args.node_env, "HOME": "/tmp", "npm_config_cache": "/tmp/.npm"},
                secret_env={"DATABASE_URL": pulumi.Output.secret(migrate_url)},
                files=self._db_files,
                mounts=tuple(args.database_mounts),
                writable_paths=_SCRATCH,
                user=APP_UID,
                connects_to=tuple(s for s in (args.database_service,) if s),
            ),
            parent=self,
            after=[args.database_deployment] if args.database_deployment else [],
        )

    def _secret_env(self) -> dict[str, pulumi.Input[str]]:
        args = self._args
        jwt = secret_or_generated(
            f"{self._name}-jwt-secret", args.jwt_secret, parent=self, protect=args.protect,
            length=64,
        )  # fmt: skip
        env: dict[str, pulumi.Input[str]] = {
            "DATABASE_URL": pulumi.Output.secret(args.database_url),
            "JWT_SECRET": jwt,
        }
        if args.redis_url is not None:
            env["REDIS_URL"] = pulumi.Output.secret(args.redis_url)
        if args.openai_api_key is not None:
            env["OPENAI_API_KEY"] = pulumi.Output.secret(args.openai_api_key)
        return env

    def _tls_front(self) -> TlsFront | None:
        args = self._args
        if args.tls_cert is None:
            return None
        if args.tls_front_image is None:
            raise ValueError("the app's TLS front needs tls_front_image")
        return TlsFront(
            port=TLS_PORT,
            target=APP_PORT,
            cert_pem=args.tls_cert.cert_pem,
            key_pem=args.tls_cert.key_pem,
            image=args.tls_front_image,
        )

    def _web(self, migration: Deployment, secret_env: dict[str, pulumi.Input[str]]) -> Deployment:
        """The replicas, started once the migration has succeeded."""
        args = self._args
        ca_env: dict[str, str] = {}
        ca_files: tuple[ConfigFile, ...] = ()
        if args.internal_ca_pem is not None:
            ca_env = {"NODE_EXTRA_CA_CERTS": INTERNAL_CA_FILE}
            ca_files = (ConfigFile(INTERNAL_CA_FILE, args.internal_ca_pem),)
        return args.platform.deploy(
            f"{self._name}-web",
            ServiceSpec(
                name=SERVICE,
                component="app",
                image=args.image,
                replicas=args.replicas,
                resources=args.resources,
                ports=(Port("http", APP_PORT, publish=args.publish_port),),
                env={
                    "NODE_ENV": args.node_env,
                    "NEXT_PUBLIC_APP_URL": args.app_url,
                    "PORT": str(APP_PORT),
                    "HOSTNAME": "0.0.0.0",  # noqa: S104 - inside the container
                    "NEXT_TELEMETRY_DISABLED": "1",
                    **ca_env,
                },
                secret_env=secret_env,
                files=(*self._db_files, *ca_files),
                mounts=tuple(args.database_mounts),
                writable_paths=(*_SCRATCH, "/app/.next/cache"),
                health=HealthCheck(
                    command=node_http_check(APP_PORT, args.health_path),
                    http_path=args.health_path,
                    http_port=APP_PORT,
                    # Docker runs the first check one interval after the start (20.10
                    # has no start_interval): a release's replica joins, and a dead
                    # one leaves, within seconds rather than a quarter-minute.
                    interval_s=APP_HEALTH_INTERVAL_S,
                ),
                user=APP_UID,
                drain_s=args.drain_s,
                routed=True,
                connects_to=tuple(s for s in (args.database_service, args.cache_service) if s),
                # The app calls the OpenAI API.
                internet_egress=True,
                tls_front=self._tls_front(),
            ),
            parent=self,
            after=[migration],
        )

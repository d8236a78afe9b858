"""Cache: Redis over TLS only, with one ACL user per client and a memory cap."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.certificates import InternalCA
from components.configs.redis import (
    APP_USER,
    EXPORTER_USER,
    RedisTls,
    redis_acl_conf,
    redis_conf,
)
from components.passwords import secret_or_generated
from components.platforms import Platform
from components.spec import ConfigFile, HealthCheck, Port, Resources, ServiceSpec
from components.urls import credential_url

__all__ = ["TLS_PORT", "Cache", "CacheArgs"]

SERVICE = "cache"
TLS_PORT = 6380
CONF = "/usr/local/etc/redis/redis.conf"
ACL_CONF = "/usr/local/etc/redis/auth.conf"
TLS = RedisTls(
    cert_file="/usr/local/etc/redis/tls/redis.crt",
    key_file="/usr/local/etc/redis/tls/redis.key",
    ca_file="/usr/local/etc/redis/tls/ca.crt",
)


@dataclass(frozen=True)
class CacheArgs:
    platform: Platform
    image: str
    max_memory_mb: int
    eviction_policy: str
    password: pulumi.Input[str] | None = None
    """The app user's password (``redisPassword``); generated when absent."""
    protect: bool = False
    """Protect the generated passwords (prod), with the data they guard."""
    ca: InternalCA = field(kw_only=True)
    """Issues the server certificate; clients verify it against ``ca.ca_pem``."""


class Cache(pulumi.ComponentResource):
    """Redis for sessions and rate limits; never published on the host, TLS only.

    Usage::

        cache = Cache("luna-cache", CacheArgs(platform=p, image="redis:7.4.1-alpine",
                      max_memory_mb=256, eviction_policy="allkeys-lru", ca=ca))
    """

    url: pulumi.Output[str]
    """``rediss://app:<password>@cache:6380`` for the app (password URL-encoded); secret."""
    password: pulumi.Output[str]
    """The app user's password; secret."""
    exporter_user: str
    exporter_password: pulumi.Output[str]
    """The exporter user's password (read-only introspection); secret."""
    ca_pem: pulumi.Output[str]
    """What clients verify the server certificate with."""
    tls_port: int
    service: str

    def __init__(self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("luna:components:Cache", name, None, opts)
        self.password = secret_or_generated(
            f"{name}-password", args.password, parent=self, protect=args.protect
        )
        self.exporter_user = EXPORTER_USER
        self.exporter_password = secret_or_generated(
            f"{name}-exporter-password", None, parent=self, protect=args.protect
        )
        self.service = SERVICE
        self.tls_port = TLS_PORT
        # "localhost" for the health check, which runs inside the container.
        cert = args.ca.issue(SERVICE, [SERVICE, "localhost"])
        self.ca_pem = cert.ca_pem
        acl = pulumi.Output.all(self.password, self.exporter_password).apply(
            lambda pw: redis_acl_conf(app_password=pw[0], exporter_password=pw[1])
        )
        # Headroom above maxmemory for Redis' own buffers.
        memory = args.max_memory_mb + max(64, args.max_memory_mb // 4)
        args.platform.deploy(
            f"{name}-redis",
            ServiceSpec(
                name=SERVICE,
                component="cache",
                image=args.image,
                resources=Resources(memory_mb=memory, cpus=0.5),
                command=("redis-server",),
                args=(CONF,),
                ports=(Port("redis-tls", TLS_PORT),),
                files=(
                    ConfigFile(
                        CONF,
                        redis_conf(
                            max_memory_mb=args.max_memory_mb,
                            eviction_policy=args.eviction_policy,
                            acl_include=ACL_CONF,
                            tls=TLS,
                            tls_port=TLS_PORT,
                        ),
                    ),
                    ConfigFile(ACL_CONF, pulumi.Output.secret(acl), secret=True),
                    ConfigFile(TLS.cert_file, cert.cert_pem),
                    ConfigFile(TLS.key_file, cert.key_pem, secret=True),
                    ConfigFile(TLS.ca_file, cert.ca_pem),
                ),
                # The check authenticates as the read-only exporter user; redis-cli
                # reads its password from REDISCLI_AUTH, not argv.
                secret_env={"REDISCLI_AUTH": self.exporter_password},
                health=HealthCheck(
                    command=redis_health_check(TLS.ca_file, TLS_PORT), start_period_s=10
                ),
                user="999:1000",
                writable_paths=("/data",),
                # A replaced Redis (new password, certificate or setting) must not
                # answer beside the old one: clients would split between them and
                # the old password gets WRONGPASS on the new one. The cache holds
                # nothing durable, so a short gap is the lesser harm.
                single_instance=True,
            ),
            parent=self,
        )
        self.url = credential_url("rediss", APP_USER, self.password, f"{SERVICE}:{TLS_PORT}")
        self.register_outputs(
            {
                "url": self.url,
                "password": self.password,
                "exporter_password": self.exporter_password,
                "ca_pem": self.ca_pem,
            }
        )


def redis_health_check(ca_file: str, port: int) -> tuple[str, ...]:
    """PING over TLS as the exporter user, verifying the server certificate."""
    return (
        "redis-cli", "--tls", "--cacert", ca_file, "-h", "localhost", "-p", str(port),
        "--user", EXPORTER_USER, "ping",
    )  # fmt: skip

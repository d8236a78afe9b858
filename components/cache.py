"""Cache: Redis with a password, a memory cap and an eviction policy."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.configs.redis import redis_auth_conf, redis_conf
from components.passwords import secret_or_generated
from components.platforms import Platform
from components.spec import ConfigFile, HealthCheck, Port, Resources, ServiceSpec

__all__ = ["Cache", "CacheArgs"]

SERVICE = "cache"
CONF = "/usr/local/etc/redis/redis.conf"
AUTH_CONF = "/usr/local/etc/redis/auth.conf"


@dataclass(frozen=True)
class CacheArgs:
    platform: Platform
    image: str
    max_memory_mb: int
    eviction_policy: str
    password: pulumi.Input[str] | None = None
    protect: bool = False
    """Protect the generated password (prod), with the data it guards."""


class Cache(pulumi.ComponentResource):
    """Redis for sessions and rate limits; never published on the host.

    Usage::

        cache = Cache("luna-cache", CacheArgs(platform=p, image="redis:7.4.1-alpine",
                      max_memory_mb=256, eviction_policy="allkeys-lru"))
    """

    url: pulumi.Output[str]
    """``redis://:password@cache:6379``; secret."""
    password: pulumi.Output[str]
    service: str

    def __init__(self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("luna:components:Cache", name, None, opts)
        self.password = secret_or_generated(
            f"{name}-password", args.password, parent=self, protect=args.protect
        )
        self.service = SERVICE
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
                ports=(Port("redis", 6379),),
                files=(
                    ConfigFile(
                        CONF,
                        redis_conf(
                            max_memory_mb=args.max_memory_mb,
                            eviction_policy=args.eviction_policy,
                            auth_include=AUTH_CONF,
                        ),
                    ),
                    ConfigFile(AUTH_CONF, self.password.apply(redis_auth_conf), secret=True),
                ),
                # redis-cli reads the password from REDISCLI_AUTH, not argv.
                secret_env={"REDISCLI_AUTH": self.password},
                health=HealthCheck(command=("redis-cli", "ping"), start_period_s=10),
                user="999:1000",
                writable_paths=("/data",),
            ),
            parent=self,
        )
        self.url = pulumi.Output.secret(
            pulumi.Output.concat("redis://:", self.password, f"@{SERVICE}:6379")
        )
        self.register_outputs({"url": self.url, "password": self.password})

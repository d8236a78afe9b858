"""Rules across keys: what each stack and platform needs of the settings as a whole.

Part of the settings (``load_settings`` calls :func:`check_combinations` and
:func:`check_hostile` once every key has been read and checked on its own). Pure
functions of :class:`~infra.settings_types.Settings`: they read no config.
"""

from __future__ import annotations

import re
from typing import Final

from infra.alerting import missing_receivers
from infra.config_error import ConfigError
from infra.secret_checks import port_collision
from infra.settings_types import Settings

__all__ = ["BACKUP_SECRETS", "check_combinations", "check_hostile", "required_secrets"]


# Pulumi.yaml's defaults of the published host ports (tests/test_settings.py keeps them equal).
PORT_DEFAULTS: Final = {"httpPort": 80, "httpsPort": 443, "grafanaPort": 3001, "kibanaPort": 5601}
BACKUP_SECRETS: Final = ("backupAccessKeyId", "backupSecretAccessKey", "backupEncryptionKey")


def required_secrets(stack: str) -> tuple[str, ...]:
    """Secret keys a stack cannot deploy without (no generated fallback)."""
    if stack == "prod":
        # A self-signed certificate behind two years of HSTS would lock users out.
        return ("openaiApiKey", "tlsCert", "tlsKey", *BACKUP_SECRETS)
    return () if stack == "dev" else ("openaiApiKey", *BACKUP_SECRETS)


def check_combinations(s: Settings) -> None:
    """What one stack, platform or feature needs of the others (each key is valid alone)."""
    # Every missing secret in one line, so a first deploy is not a run per secret.
    absent: list[tuple[str, ...]] = [(k,) for k in required_secrets(s.stack)]
    absent = [k for k in absent if _secret(s, k[0]) is None] + missing_receivers(s)
    if absent:
        names = ", ".join(" or ".join(f"luna:{k}" for k in group) for group in absent)
        raise ConfigError(
            absent[0][0],
            None,
            f"required in {s.stack}; every secret still missing: {names} "
            "(pulumi config set --secret <key> …; docs/first-deploy.md lists them)",
        )
    if s.demo_app and s.stack != "dev":
        raise ConfigError("demoApp", "true", f"false in {s.stack}: it runs a real pinned appImage")
    if s.demo_app and s.platform != "docker":
        raise ConfigError(
            "demoApp", "true", "false on kubernetes: the demo image is built on a Docker host"
        )
    if s.proxy and s.stack == "dev":
        # nginx would publish 80/443 on every interface of a laptop, and the app
        # stops publishing localhost:3000, which app_url still names.
        raise ConfigError(
            "proxy",
            "true",
            "false in dev (the app answers on localhost:3000); "
            "try the edge with the offline render or in staging",
        )
    if s.stack != "dev" and s.database != "postgres":
        raise ConfigError("database", s.database, f"{s.stack} needs postgres")
    if s.database == "sqlite" and s.app_replicas != 1:
        raise ConfigError("appReplicas", str(s.app_replicas), "1 with sqlite (one writer)")
    if not s.proxy and s.platform == "docker" and s.app_replicas != 1:
        raise ConfigError(
            "appReplicas",
            str(s.app_replicas),
            "1 without the proxy on docker (the app publishes one host port)",
        )
    if (s.secrets.tls_cert is None) != (s.secrets.tls_key is None):
        raise ConfigError(
            "tlsKey" if s.secrets.tls_key is None else "tlsCert",
            None,
            "tlsCert and tlsKey are set together",
        )
    if s.backups and s.database != "postgres":
        raise ConfigError("backups", "true", "backups need database: postgres")
    floor = {"prod": 3, "staging": 2}.get(s.stack, 1)
    if s.platform == "kubernetes" and s.postgres_instances < floor:
        raise ConfigError(
            "postgresInstances", str(s.postgres_instances), f"at least {floor} in {s.stack}"
        )
    if s.stack != "dev" and not s.backups:
        raise ConfigError("backups", "false", f"{s.stack} keeps its data off the host: true")
    if s.backups:
        # No off-site target, no deploy: the only copy would sit beside the data.
        for key, value in (
            ("backupBucket", s.backup_target.bucket),
            ("backupEndpoint", s.backup_target.endpoint),
            ("backupRegion", s.backup_target.region),
        ):
            if not value:
                raise ConfigError(key, value, "required with backups: the off-site object store")
        for key in BACKUP_SECRETS:
            if _secret(s, key) is None:
                raise ConfigError(
                    key, None, f"required with backups: pulumi config set --secret luna:{key} …"
                )
    registry = (s.registry_server, s.registry_username, s.secrets.registry_password)
    if any(v is not None for v in registry) and None in registry:
        missing = ("registryServer", "registryUsername", "registryPassword")[registry.index(None)]
        raise ConfigError(
            missing,
            None,
            "registryServer, registryUsername and registryPassword (secret) are set together",
        )
    if s.app_max_replicas < s.app_replicas:
        # The replica count is what an operator raises; the ceiling is the guard.
        raise ConfigError(
            "appReplicas",
            str(s.app_replicas),
            f"at most appMaxReplicas ({s.app_max_replicas}); raise appMaxReplicas to run more",
        )


def check_hostile(s: Settings) -> None:
    """Values that parse but cannot work, or would expose the stack (infra/secret_checks.py)."""
    ports = {"httpPort": s.http_port, "httpsPort": s.https_port}
    if s.platform == "docker":
        # Host ports published on one Docker host must differ.
        if s.monitoring:
            ports["grafanaPort"] = s.grafana_port
        if s.logging:
            ports["kibanaPort"] = s.kibana_port
    if clash := port_collision(ports):
        key, port, other = clash
        # Blame the key moved off its default: that is the one the operator set.
        if port == PORT_DEFAULTS.get(key) and port != PORT_DEFAULTS.get(other):
            key, other = other, key
        raise ConfigError(key, str(port), f"a port not already used by {other}")


def _secret(s: Settings, key: str) -> object:
    """The secret of config key ``key`` (``backupAccessKeyId`` -> ``backup_access_key_id``)."""
    return getattr(s.secrets, re.sub(r"([A-Z])", r"_\1", key).lower())

"""Rules across keys: what each stack and platform needs of the settings as a whole.

Part of the settings (``load_settings`` calls :func:`check_combinations` and
:func:`check_hostile` once every key has been read and checked on its own). Pure
functions of :class:`~infra.settings_types.Settings`: they read no config.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from components.configs.nginx import AUTH_PATHS
from infra.alerting import missing_receivers
from infra.config_error import ConfigError
from infra.secret_checks import port_collision
from infra.settings_types import Settings

__all__ = ["BACKUP_SECRETS", "check_combinations", "check_hostile", "required_secrets"]


# Pulumi.yaml's defaults of the published host ports (tests/test_settings.py keeps them equal).
PORT_DEFAULTS: Final = {"httpPort": 80, "httpsPort": 443, "grafanaPort": 3001, "kibanaPort": 5601}
BACKUP_SECRETS: Final = ("backupAccessKeyId", "backupSecretAccessKey", "backupEncryptionKey")


def backup_secrets(platform: str) -> tuple[str, ...]:
    """The object store's credentials, and pgBackRest's cipher pass on Docker only:
    Barman Cloud (Kubernetes) has no client-side cipher (docs/kubernetes.md)."""
    return BACKUP_SECRETS if platform == "docker" else BACKUP_SECRETS[:2]


def required_secrets(stack: str, platform: str = "docker") -> tuple[str, ...]:
    """Secret keys a stack cannot deploy without (no generated fallback)."""
    if stack == "prod":
        # A self-signed certificate behind two years of HSTS would lock users out.
        return ("openaiApiKey", "tlsCert", "tlsKey", *backup_secrets(platform))
    return () if stack == "dev" else ("openaiApiKey", *backup_secrets(platform))


def check_combinations(s: Settings) -> None:
    """What one stack, platform or feature needs of the others (each key is valid alone)."""
    # Every missing secret in one line, so a first deploy is not a run per secret.
    absent: list[tuple[str, ...]] = [(k,) for k in required_secrets(s.stack, s.platform)]
    absent = [k for k in absent if _secret(s, k[0]) is None] + missing_receivers(s)
    if absent:
        names = ", ".join(" or ".join(f"luna:{k}" for k in group) for group in absent)
        raise ConfigError(
            absent[0][0],
            None,
            f"required in {s.stack}; every secret still missing: {names} "
            "(pulumi config set --secret <key> …; docs/first-deploy.md lists them)",
        )
    if s.platform == "docker" and s.backup_target.kms_key_id:
        raise ConfigError(
            "backupKmsKeyId",
            s.backup_target.kms_key_id,
            "empty on docker: pgBackRest ciphers the repository itself with "
            "backupEncryptionKey; the KMS key is Barman Cloud's, on kubernetes",
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
        for key in backup_secrets(s.platform):
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
    if s.restore_to_time and (s.platform != "kubernetes" or not s.backups):
        raise ConfigError(
            "restoreToTime", s.restore_to_time,
            "empty, or set on kubernetes with backups (Docker: docs/runbooks/backup-restore.md)",
        )  # fmt: skip
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
    _check_paths(s)
    _check_production(s)
    _check_alert_text(s)
    if s.logging and s.log_retention_days > MAX_LOG_RETENTION_DAYS:
        # The policy pack reads Kubernetes' es-setup ConfigMap; Docker's setup
        # script is an upload it cannot see, so the bound is enforced here for both.
        raise ConfigError(
            "logRetentionDays",
            str(s.log_retention_days),
            f"1 to {MAX_LOG_RETENTION_DAYS} (GDPR storage limitation; the audit index "
            "has auditRetentionDays)",
        )


MAX_LOG_RETENTION_DAYS: Final = 30
"""The policy pack's default ``maxLogRetentionDays`` (policy/resource_policies.py)."""

CONTRACT_PATHS: Final = {
    "healthPath": "/api/health",
    "metricsPath": "/api/metrics",
    "crisisPath": "/api/crisis/health",
}
"""The app contract's paths (docs/app-contract.md, Pulumi.yaml's defaults)."""
_DOT_SEGMENT = re.compile(r"//|/\.\.?(/|$)")


def _check_paths(s: Settings) -> None:
    """The app's paths become nginx locations (components/configs/nginx.py): `/` or
    a duplicate location makes `nginx -t` fail, and a crisis path under the metrics
    path would answer 404 to a person in crisis."""
    paths = {
        "healthPath": s.health_path,
        "metricsPath": s.metrics_path,
        "crisisPath": s.crisis_path,
    }
    for key, path in paths.items():
        if path.rstrip("/") == "" or _DOT_SEGMENT.search(path):
            raise ConfigError(key, path, "a path below / without //, /./ or /../ segments")
    crisis = _crisis_prefix(s.crisis_path)
    metrics = s.metrics_path.rstrip("/")
    for key, path in paths.items():
        for other_key, other in paths.items():
            if key != other_key and path.rstrip("/") == other.rstrip("/"):
                # Name the one moved off the app contract's default (Pulumi.yaml).
                culprit = key if path != CONTRACT_PATHS[key] else other_key
                raise ConfigError(
                    culprit, path, f"a path of its own ({key} and {other_key} are both {path})"
                )
    if _under(crisis, metrics) or _under(s.health_path, metrics):
        key = "crisisPath" if _under(crisis, metrics) else "healthPath"
        raise ConfigError(
            key, paths[key], f"a path outside metricsPath ({metrics}), which the edge hides"
        )
    for auth in AUTH_PATHS:
        if any(_under(p, auth.rstrip("/")) for p in (crisis, s.crisis_path)):
            raise ConfigError(
                "crisisPath", s.crisis_path, f"a path outside the rate-limited {auth}"
            )


def _crisis_prefix(path: str) -> str:
    """As infra.program.crisis_prefix: the folder the edge never rate-limits."""
    parent = path.rstrip("/").rsplit("/", 1)[0]
    return path if parent == "" else parent + "/"


def _under(path: str, base: str) -> bool:
    return path.rstrip("/") == base or path.startswith(base + "/")


def _check_production(s: Settings) -> None:
    """What staging may try and prod may not."""
    host = s.server_name
    if s.stack == "prod" and (host == "localhost" or host.rsplit(".", 1)[-1] in _RESERVED_TLDS):
        raise ConfigError("appUrl", s.app_url, "the public DNS name users reach in prod")
    if s.stack != "dev" and s.node_env != "production":
        raise ConfigError("nodeEnv", s.node_env, f"production in {s.stack}")
    if s.stack == "prod" and not s.proxy:
        raise ConfigError("proxy", "false", "true in prod: the TLS edge with HSTS and rate limits")


# RFC 2606 and RFC 6761/6762 names that never resolve publicly.
_RESERVED_TLDS: Final = ("localhost", "local", "test", "invalid", "example", "internal")
_TEMPLATE = re.compile(r"[{}\s\"'<>\\,;]")


def _check_alert_text(s: Settings) -> None:
    """Text Alertmanager and Prometheus put into Go templates or SMTP headers."""
    a = s.alerting
    for key, value in (
        ("runbookBaseUrl", a.runbook_base_url),
        ("smtpFrom", a.smtp_from),
        ("alertEmailTo", a.email_to),
        ("smtpUsername", a.smtp_username),
        ("smtpSmarthost", a.smtp_smarthost),
    ):
        if value and _TEMPLATE.search(value):
            raise ConfigError(
                key, value, "text without spaces, braces, quotes, <>, commas, ; or backslashes"
            )
    try:
        port = urlsplit(a.runbook_base_url).port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(
            "runbookBaseUrl", a.runbook_base_url, "an https:// URL with a port 1-65535"
        )
    if a.smtp_smarthost and not 1 <= int(a.smtp_smarthost.rsplit(":", 1)[1]) <= 65535:
        raise ConfigError(
            "smtpSmarthost", a.smtp_smarthost, "host:port with a port from 1 to 65535"
        )


def _secret(s: Settings, key: str) -> object:
    """The secret of config key ``key`` (``backupAccessKeyId`` -> ``backup_access_key_id``)."""
    return getattr(s.secrets, re.sub(r"([A-Z])", r"_\1", key).lower())

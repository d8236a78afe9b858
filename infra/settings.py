"""The only reader of configuration: validates ``luna:*`` keys into frozen settings.

Every problem is reported as one :class:`ConfigError` line naming the key, the
bad value and what is allowed, before any resource is created.

Split by concern; only this module reads config, and it re-exports what callers
import (``from infra.settings import Settings, ConfigError, ...``):
- infra/config_reader.py: :class:`Reader`, which reads and checks one key at a time;
- infra/settings_types.py: the frozen dataclasses it returns (alerting's too);
- infra/settings_rules.py: rules across keys, run on the validated settings;
- infra/alerting.py: Alertmanager's receivers and the crisis SLO;
- infra/secret_checks.py: pure checks of secret and hostile values;
- infra/config_error.py: :class:`ConfigError`, the one-line error.
"""

from __future__ import annotations

import contextvars
import difflib
import re
from datetime import datetime
from typing import Final
from urllib.parse import urlparse

import pulumi
from pulumi.runtime import config as runtime_config

from components.configs.elasticsearch import AUDIT_RETENTION_MIN_DAYS
from components.configs.redis import EVICTION_POLICIES
from infra.alerting import (
    ALERT_SECRET_KEYS,
    AlertingSettings,
    check_alerting,
    placeholder_secret,
    read_alerting,
    required_secret_groups,
)
from infra.config_error import NAMESPACE, ConfigError
from infra.config_reader import HOST_PORT, KeySpec, Reader, matches
from infra.secret_checks import app_url_problem, ascii_host
from infra.settings_rules import (
    BACKUP_SECRETS,
    check_combinations,
    check_hostile,
    required_secrets,
)
from infra.settings_types import BackupTarget, Images, Secrets, Settings

__all__ = [
    "BACKUP_SECRETS",
    "NAMESPACE",
    "SECRET_KEYS",
    "STACKS",
    "AlertingSettings",
    "BackupTarget",
    "ConfigError",
    "Images",
    "KeySpec",
    "Secrets",
    "Settings",
    "check_prod_app_image",
    "describe_keys",
    "load_settings",
    "placeholder_secret",
    "required_secret_groups",
    "required_secrets",
]


STACKS: Final = ("dev", "staging", "prod")
PLATFORMS: Final = ("docker", "kubernetes")
SECRET_KEYS: Final = (
    "dbPassword",
    "redisPassword",
    "grafanaPassword",
    "elasticPassword",
    "jwtSecret",
    "openaiApiKey",
    "tlsCert",
    "tlsKey",
    "kubeconfig",
    "registryPassword",
    # Off-site backups (issue #12): the object store's credentials and pgBackRest's cipher pass.
    *BACKUP_SECRETS,
    *ALERT_SECRET_KEYS,
)
BACKUP_INTERVALS: Final = (1, 2, 3, 4, 6, 8, 12, 24)
_KMS_ID = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
_KMS_ALIAS = r"alias/(?!aws/)[A-Za-z0-9/_-]{1,250}"
# AWS KMS KeyId forms (a key id, a key ARN, an alias name, an alias ARN), which
# barman-cloud passes to S3 as SSEKMSKeyId (barman/cloud_providers/aws_s3.py).
KMS_KEY_ID: Final = (
    rf"{_KMS_ID}|{_KMS_ALIAS}|arn:aws[a-z-]*:kms:[a-z0-9-]{{2,32}}:\d{{12}}:"
    rf"(key/{_KMS_ID}|{_KMS_ALIAS})"
)


def _backup_target(r: Reader) -> BackupTarget:
    # Empty is allowed here; staging and prod refuse an empty target (settings_rules.py).
    # host[:port]: pgBackRest and Barman Cloud always speak TLS to it.
    endpoint = r.optional(
        "backupEndpoint",
        "an S3 host[:port] without scheme, e.g. s3.eu-central-1.amazonaws.com",
        matches(HOST_PORT),
    )
    bucket = r.optional(
        "backupBucket",
        "an S3 bucket name (3-63 lowercase, digits, . -)",
        matches(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"),
    )
    region = r.optional(
        "backupRegion", "a region name such as eu-central-1", matches(r"[a-z0-9-]{2,32}")
    )
    kms = r.optional(
        "backupKmsKeyId",
        "an AWS KMS key id, key ARN, alias/<name> or alias ARN of a key the stack's "
        "account manages (alias/aws/… are AWS-managed keys)",
        matches(KMS_KEY_ID),
    )
    return BackupTarget(
        kms_key_id=kms,
        bucket=bucket or "",
        endpoint=endpoint or "",
        region=region or "",
        uri_style=r.choice("backupUriStyle", ("host", "path")),
        retention_days=r.integer("backupRetentionDays", 1, 3650),
        drill_hours=r.integer("restoreDrillHours", 1, 168),
    )


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


def _rfc3339(value: str) -> bool:
    """An RFC 3339 date-time with an explicit offset (CloudNativePG's ``targetTime``
    reads one without an offset as UTC; a restore time must not be guessed)."""
    if not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname) and parsed.path in ("", "/")


def load_settings(stack: str | None = None, config: pulumi.Config | None = None) -> Settings:
    """Read and validate every ``luna:*`` key for ``stack`` (default: the current stack)."""
    stack = stack or pulumi.get_stack()
    if stack not in STACKS:
        raise ConfigError("(stack)", stack, "the stack must be one of " + ", ".join(STACKS))
    r = Reader(config or pulumi.Config(NAMESPACE), SECRET_KEYS)
    settings = _read(r, stack)
    _check_unknown(r.read)
    check_combinations(settings)
    check_alerting(settings)
    check_hostile(settings)
    _check_tls_pair(settings)
    check_prod_app_image(settings)
    return settings


# Where prod may pull the app image from (issue #25): this organisation's packages only.
PROD_APP_REGISTRIES: Final = ("ghcr.io/luna-app/",)
_DIGEST = re.compile(r"@sha256:[a-f0-9]{64}$")


def check_prod_app_image(s: Settings) -> None:
    """Prod runs only an app image pinned by digest, from an allowed registry.

    A tag can be re-pushed (``evil.example/x:1`` and ``ghcr.io/luna-app/luna-web:1.4.2``
    both pass the generic "pinned" check); a digest names one image for ever, the one
    the pipeline built, scanned, signed and recorded (docs/pipeline.md, "Images").
    """
    if s.stack != "prod":
        return
    ref = s.images.app
    if not ref.startswith(PROD_APP_REGISTRIES) or not _DIGEST.search(ref):
        raise ConfigError(
            "appImage",
            ref,
            "in prod, an image from "
            + " or ".join(PROD_APP_REGISTRIES)
            + " pinned by digest: name[:tag]@sha256:<64 hex>",
        )


def _check_tls_pair(s: Settings) -> None:
    """The supplied edge pair (infra/tls_checks.py), read as plain text here only."""
    cert, key = (runtime_config.get_config(f"{NAMESPACE}:{k}") for k in ("tlsCert", "tlsKey"))
    if cert is None or key is None:
        return
    if placeholder_secret("tlsCert") in (cert, key) or placeholder_secret("tlsKey") in (cert, key):
        return  # the offline render's stand-in for a secret it cannot decrypt
    # Imported here: `cryptography` loads only when a real pair is supplied.
    from infra.tls_checks import tls_pair_problem

    if problem := tls_pair_problem(cert, key, s.server_name):
        raise ConfigError(problem[0], "[hidden]", problem[1])


def describe_keys(config: dict[str, str], stack: str = "dev") -> list[KeySpec]:
    """How each key is validated, in reading order, by reading ``config`` (full
    ``luna:key`` names, e.g. Pulumi.yaml's defaults) exactly as ``load_settings`` does.

    Raises ConfigError when a value in ``config`` is invalid.
    """

    def run() -> list[KeySpec]:
        secret_keys = [f"{NAMESPACE}:{k}" for k in SECRET_KEYS if f"{NAMESPACE}:{k}" in config]
        pulumi.runtime.set_all_config(config, secret_keys)
        r = Reader(pulumi.Config(NAMESPACE), SECRET_KEYS)
        _read(r, stack)
        return list(r.specs.values())

    # Pulumi keeps config in context variables: a copied context leaves the caller's alone.
    return contextvars.copy_context().run(run)


def _read(r: Reader, stack: str) -> Settings:
    """Read and validate each key on its own (rules across keys: _check_combinations)."""
    platform = r.choice("platform", PLATFORMS)
    database = r.choice("database", ("sqlite", "postgres"))
    app_url = r.checked(
        "appUrl", "an http(s) URL without a path, e.g. https://luna-app.com", _url, kind="url"
    )
    if problem := app_url_problem(app_url, stack=stack):
        raise ConfigError("appUrl", app_url, problem)
    images = Images(
        app=r.image("appImage"),
        postgres=r.image("postgresImage"),
        redis=r.image("redisImage"),
        nginx=r.image("nginxImage"),
        prometheus=r.image("prometheusImage"),
        grafana=r.image("grafanaImage"),
        pushgateway=r.image("pushgatewayImage"),
        blackbox=r.image("blackboxImage"),
        postgres_exporter=r.image("postgresExporterImage"),
        redis_exporter=r.image("redisExporterImage"),
        nginx_exporter=r.image("nginxExporterImage"),
        elasticsearch=r.image("elasticsearchImage"),
        logstash=r.image("logstashImage"),
        kibana=r.image("kibanaImage"),
        fluent_bit=r.image("fluentBitImage"),
        alertmanager=r.image("alertmanagerImage"),
        cnpg_postgres=r.image("cnpgPostgresImage"),
    )
    secrets = Secrets(
        db_password=r.secret("dbPassword"),
        redis_password=r.secret("redisPassword"),
        grafana_password=r.secret("grafanaPassword"),
        elastic_password=r.secret("elasticPassword"),
        jwt_secret=r.secret("jwtSecret"),
        openai_api_key=r.secret("openaiApiKey"),
        tls_cert=r.secret("tlsCert"),
        tls_key=r.secret("tlsKey"),
        kubeconfig=r.secret("kubeconfig"),
        registry_password=r.secret("registryPassword"),
        backup_access_key_id=r.secret("backupAccessKeyId"),
        backup_secret_access_key=r.secret("backupSecretAccessKey"),
        backup_encryption_key=r.secret("backupEncryptionKey"),
    )
    return Settings(
        stack=stack,
        platform=platform,  # type: ignore[arg-type]
        docker_host=r.checked(
            "dockerHost",
            "unix:///path or ssh://user@host (tcp:// would carry the Docker API, root on the "
            "host, without TLS)",
            matches(r"(unix|ssh)://\S+"),
        ),
        kube_context=r.raw("kubeContext", "empty, or a context name in the kubeconfig") or None,
        storage_class=r.optional(
            "storageClass",
            "a StorageClass name (lowercase DNS subdomain)",
            # A DNS-1123 subdomain, as Kubernetes requires of object names.
            matches(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"),
        ),
        images=images,
        demo_app=r.boolean("demoApp"),
        app_url=app_url.rstrip("/"),
        server_name=ascii_host(app_url),
        node_env=r.choice("nodeEnv", ("production", "development")),  # type: ignore[arg-type]
        app_replicas=r.integer("appReplicas", 1, 50),
        app_max_replicas=r.integer("appMaxReplicas", 1, 100),
        app_memory_mb=r.integer("appMemoryMb", 128, 16384),
        app_cpus=r.number("appCpus", 0.1, 16),
        health_path=r.path("healthPath"),
        metrics_path=r.path("metricsPath"),
        crisis_path=r.path("crisisPath"),
        database=database,  # type: ignore[arg-type]
        database_volume_gb=r.integer("databaseVolumeGb", 1, 10000),
        backups=r.boolean("backups"),
        backup_interval_hours=r.integer("backupIntervalHours", 1, 24, options=BACKUP_INTERVALS),
        backup_target=_backup_target(r),
        postgres_instances=r.integer("postgresInstances", 1, 9),
        postgres_memory_mb=r.integer("postgresMemoryMb", 256, 262144),
        postgres_cpus=r.number("postgresCpus", 0.25, 64),
        cnpg_operator=r.choice("cnpgOperator", ("install", "prerequisite")),  # type: ignore[arg-type]
        cache=r.boolean("cache"),
        redis_max_memory_mb=r.integer("redisMaxMemoryMb", 16, 65536),
        redis_eviction_policy=r.choice("redisEvictionPolicy", EVICTION_POLICIES),
        proxy=r.boolean("proxy"),
        http_port=r.port("httpPort"),
        https_port=r.port("httpsPort"),
        client_max_body_mb=r.integer("clientMaxBodyMb", 1, 1024),
        monitoring=r.boolean("monitoring"),
        prometheus_retention_days=r.integer("prometheusRetentionDays", 1, 3650),
        prometheus_volume_gb=r.integer("prometheusVolumeGb", 1, 10000),
        crisis_latency_budget_ms=r.integer("crisisLatencyBudgetMs", 50, 60000),
        grafana_port=r.port("grafanaPort"),
        logging=r.boolean("logging"),
        log_retention_days=r.integer("logRetentionDays", 1, 3650),
        audit_retention_days=r.integer("auditRetentionDays", AUDIT_RETENTION_MIN_DAYS, 36500),
        elasticsearch_volume_gb=r.integer("elasticsearchVolumeGb", 1, 10000),
        elasticsearch_heap_mb=r.integer("elasticsearchHeapMb", 256, 32768),
        kibana_port=r.port("kibanaPort"),
        gelf_port=r.port("gelfPort"),
        protect_data=r.boolean("protectData"),
        edge_drain_s=r.integer("edgeDrainSeconds", 0, 600),
        registry_server=r.optional(
            "registryServer",
            "a registry host such as ghcr.io or registry.example:5000",
            matches(HOST_PORT),
        ),
        registry_username=r.raw("registryUsername", "empty, or the registry user name") or None,
        secrets=secrets,
        alerting=read_alerting(r),
        restore_to_time=r.optional(
            "restoreToTime",
            "an RFC 3339 time with its offset, e.g. 2026-12-06T09:30:00Z (kubernetes)",
            _rfc3339,
        ),
    )


def _check_unknown(read: set[str]) -> None:
    prefix = f"{NAMESPACE}:"
    for full in sorted(runtime_config.CONFIG.get()):
        key = full[len(prefix) :]
        if full.startswith(prefix) and key not in read:
            raise ConfigError(key, "…", f"unknown key; {_did_you_mean(key, read)}"
                              "see docs/configuration.md for the keys")  # fmt: skip


def _did_you_mean(key: str, known: set[str]) -> str:
    """The closest known key: a case slip (``appurl``) first, then a typo (``appReplica``)."""
    by_case = {k.lower(): k for k in known}
    close = [by_case[key.lower()]] if key.lower() in by_case else []
    close = close or difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return f"did you mean {close[0]}? " if close else ""

"""The settings' typed shape: the frozen dataclasses ``load_settings`` returns.

Part of the settings (infra/settings.py reads and validates the keys into these),
kept apart by concern: this module reads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi

from components.logs import LoggingImages
from components.monitoring import MonitoringImages

__all__ = ["AlertingSettings", "BackupTarget", "Images", "Secrets", "Settings"]


@dataclass(frozen=True)
class AlertingSettings:
    """Alertmanager's receivers and the crisis SLO. Secret values stay Outputs."""

    pagerduty_routing_key: pulumi.Output[str] | None
    opsgenie_api_key: pulumi.Output[str] | None
    chat_kind: Literal["slack", "teams"]
    chat_webhook_url: pulumi.Output[str] | None
    webhook_url: pulumi.Output[str] | None
    heartbeat_url: pulumi.Output[str] | None
    smtp_smarthost: str | None
    smtp_from: str | None
    email_to: str | None
    smtp_username: str | None
    smtp_password: pulumi.Output[str] | None
    slo_objective_percent: float
    runbook_base_url: str
    receiver_ports: tuple[int, ...] = ()
    """TCP ports of the configured webhook URLs (a port is not the secret part)."""

    @property
    def can_page(self) -> bool:
        return self.pagerduty_routing_key is not None or self.opsgenie_api_key is not None


@dataclass(frozen=True, kw_only=True)
class Images(MonitoringImages, LoggingImages):
    """Every pinned image a stack runs. The monitoring and logging groups are the
    components' own args types, so ``program.py`` hands this object to them as is."""

    app: str
    """The Luna web app (dev with ``demoApp`` builds demo-app/ instead)."""
    postgres: str
    """PostgreSQL on Docker."""
    cnpg_postgres: str = ""
    """Kubernetes: the CloudNativePG operand image (ships pgaudit and Barman Cloud)."""
    redis: str
    nginx: str
    """The edge: TLS, HSTS and the security headers."""
    fluent_bit: str
    """Kubernetes: the log collector DaemonSet."""


@dataclass(frozen=True)
class Secrets:
    """Secret config; ``None`` means "generate it" (or, for the API key, "none")."""

    db_password: pulumi.Output[str] | None
    redis_password: pulumi.Output[str] | None
    grafana_password: pulumi.Output[str] | None
    elastic_password: pulumi.Output[str] | None
    jwt_secret: pulumi.Output[str] | None
    openai_api_key: pulumi.Output[str] | None
    tls_cert: pulumi.Output[str] | None
    tls_key: pulumi.Output[str] | None
    kubeconfig: pulumi.Output[str] | None
    registry_password: pulumi.Output[str] | None
    backup_access_key_id: pulumi.Output[str] | None = None
    backup_secret_access_key: pulumi.Output[str] | None = None
    backup_encryption_key: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class BackupTarget:
    """The off-site object store (issue #12); secrets live in :class:`Secrets`."""

    bucket: str
    endpoint: str
    region: str
    uri_style: str
    retention_days: int
    drill_hours: int
    kms_key_id: str | None = None
    """Kubernetes only: SSE-KMS key for Barman Cloud's objects."""


@dataclass(frozen=True)
class Settings:
    stack: str
    platform: Literal["docker", "kubernetes"]
    docker_host: str
    kube_context: str | None
    storage_class: str | None
    """Kubernetes PVC storage class; ``None``: the cluster's default class."""
    images: Images
    demo_app: bool
    """dev: build and run demo-app/ instead of ``images.app``."""
    app_url: str
    server_name: str
    node_env: Literal["production", "development"]
    app_replicas: int
    app_max_replicas: int
    """Kubernetes HPA ceiling for the app."""
    app_memory_mb: int
    app_cpus: float
    health_path: str
    metrics_path: str
    crisis_path: str
    database: Literal["sqlite", "postgres"]
    database_volume_gb: int
    backups: bool
    backup_interval_hours: int
    backup_target: BackupTarget
    postgres_instances: int
    """Kubernetes: CloudNativePG instances (Docker runs one)."""
    postgres_memory_mb: int
    """Each instance's memory limit; shared_buffers and effective_cache_size follow it."""
    postgres_cpus: float
    cnpg_operator: Literal["install", "prerequisite"]
    cache: bool
    redis_max_memory_mb: int
    redis_eviction_policy: str
    proxy: bool
    http_port: int
    https_port: int
    client_max_body_mb: int
    monitoring: bool
    prometheus_retention_days: int
    prometheus_volume_gb: int
    crisis_latency_budget_ms: int
    grafana_port: int
    logging: bool
    log_retention_days: int
    audit_retention_days: int
    """Days the audit index keeps records (HIPAA 164.316(b)(2): at least six years)."""
    elasticsearch_volume_gb: int
    elasticsearch_heap_mb: int
    kibana_port: int
    gelf_port: int
    protect_data: bool
    edge_drain_s: int
    """Kubernetes: seconds a stopping edge pod keeps serving (longer than the LB's checks)."""
    registry_server: str | None
    """Private registry host the app image is pulled from, with ``registry_username``."""
    registry_username: str | None
    secrets: Secrets
    alerting: AlertingSettings
    restore_to_time: str | None = None
    """Kubernetes: bootstrap the database by point-in-time recovery to this RFC 3339
    time from the object store (docs/runbooks/backup-restore.md)."""

"""``build()``: settings in, Luna's components out. No config is read here."""

from __future__ import annotations

import posixpath
from typing import Any

import pulumi

from components.app import APP_PORT, LunaApp, LunaAppArgs
from components.cache import Cache, CacheArgs
from components.certificates import InternalCA, InternalCAArgs
from components.configs.elasticsearch import SnapshotStore
from components.configs.prometheus import AlertThresholds
from components.database import BackupArgs, Database, DatabaseArgs
from components.logs import Logging, LoggingArgs
from components.monitoring import (
    DRILL_PUSH_URL,
    PUSHGATEWAY_URL,
    AlertReceivers,
    EmailArgs,
    Monitoring,
    MonitoringArgs,
)
from components.platforms import Platform, RegistryAuth
from components.proxy import SERVICE as PROXY_SERVICE
from components.proxy import ReverseProxy, ReverseProxyArgs
from components.spec import ObjectStoreTarget, Resources
from infra.settings import Settings

__all__ = ["EDGE_REPLICAS", "build"]

EDGE_REPLICAS = 2


def make_platform(s: Settings, ca_pem: pulumi.Output[str]) -> Platform:
    """The stack's platform; each module is imported only when chosen (SDK import time)."""
    registry = (
        RegistryAuth(
            server=s.registry_server,
            username=s.registry_username,
            password=s.secrets.registry_password,
        )
        if s.registry_server and s.registry_username and s.secrets.registry_password
        else None
    )
    if s.platform == "kubernetes":
        from components.platforms.kubernetes import KubernetesPlatform, KubernetesPlatformArgs

        return KubernetesPlatform(
            f"luna-{s.platform}",
            KubernetesPlatformArgs(
                stack=s.stack,
                kubeconfig=s.secrets.kubeconfig,
                context=s.kube_context,
                storage_class=s.storage_class,
                app_max_replicas=s.app_max_replicas,
                ship_logs=s.logging,
                log_collector_image=s.images.fluent_bit,
                log_collector_ca=ca_pem,
                protect_data=s.protect_data,
                registry=registry,
                cnpg_operator=s.cnpg_operator,
            ),
        )
    from components.platforms.docker import DockerPlatform, DockerPlatformArgs

    return DockerPlatform(
        f"luna-{s.platform}",
        DockerPlatformArgs(
            stack=s.stack,
            host=s.docker_host,
            ship_logs=s.logging,
            gelf_port=s.gelf_port,
            registry=registry,
        ),
    )


def crisis_prefix(path: str) -> str:
    """The crisis endpoints' directory (``/api/crisis/health`` → ``/api/crisis/``): the
    whole crisis area, not only the probed endpoint, is exempt from rate limits."""
    parent = posixpath.dirname(path.rstrip("/"))
    return path if parent in ("", "/") else parent + "/"


def build(s: Settings) -> dict[str, Any]:
    """Create every component the stack's settings ask for; return the stack outputs."""
    # One CA per stack: every internal TLS hop is verified against it.
    ca = InternalCA("luna-ca", InternalCAArgs(stack=s.stack))
    platform = make_platform(s, ca.ca_pem)
    app_image = _app_image(s, platform)
    database = _database(s, platform, ca)
    cache = _cache(s, platform, ca) if s.cache else None
    app = _app(s, platform, ca, app_image, database, cache)
    proxy = _proxy(s, platform, app, ca) if s.proxy else None
    outputs: dict[str, Any] = {
        "stack": s.stack,
        "platform": s.platform,
        "app_url": s.app_url,
        "app_image": app_image,
        "database_url": database.url,
        # What an operator's browser or curl trusts for Kibana (and any internal hop).
        "internal_ca_pem": ca.ca_pem,
    }
    if database.container is not None:
        # Runbooks `docker exec` into the server by this name (it changes on replacement).
        outputs["database_container"] = database.container
    if s.monitoring:
        monitoring = _monitoring(s, platform, app, database, cache, proxy)
        outputs["grafana_url"] = monitoring.grafana_url
    if s.logging:
        logging = _logging(s, platform, ca)
        outputs["kibana_url"] = logging.kibana_url
        # Operators sign in to Kibana as luna_ops (read-only); elastic is break-glass.
        outputs["kibana_operator_password"] = logging.operator_password
    platform.finish()
    # What the runbooks name: `pulumi stack output workloads`, never a typed pattern
    # (after finish(): the platform's own workloads, such as a log collector, exist then).
    outputs["workloads"] = platform.workloads
    if proxy is not None and (edge := platform.public_address(PROXY_SERVICE)) is not None:
        # Where DNS for appUrl's host must point (docs/first-deploy.md, step 6).
        outputs["edge_address"] = edge
    return outputs


def _app_image(s: Settings, platform: Platform) -> str:
    """``appImage``, or in dev the demo app built on the Docker host."""
    if not s.demo_app:
        return s.images.app
    from components.demo_app import DemoAppImage, DemoAppImageArgs
    from components.platforms.docker import DockerPlatform

    assert isinstance(platform, DockerPlatform), "settings allow demoApp on docker only"
    return DemoAppImage("luna-demo-app", DemoAppImageArgs(platform=platform)).ref


def _backup(s: Settings) -> BackupArgs | None:
    if not s.backups:
        return None
    t, sec = s.backup_target, s.secrets
    assert sec.backup_access_key_id and sec.backup_secret_access_key
    # pgBackRest's cipher pass (Docker); Barman Cloud has none (docs/kubernetes.md).
    assert s.platform == "kubernetes" or sec.backup_encryption_key
    return BackupArgs(
        target=ObjectStoreTarget(
            bucket=t.bucket,
            endpoint=t.endpoint,
            region=t.region,
            path=f"/luna-{s.stack}",
            access_key_id=sec.backup_access_key_id,
            secret_access_key=sec.backup_secret_access_key,
            encryption_key=sec.backup_encryption_key or "",
            retention_days=t.retention_days,
            uri_style=t.uri_style,
            kms_key_id=t.kms_key_id,
        ),
        schedule_hours=s.backup_interval_hours,
        drill_hours=t.drill_hours,
        push_url=PUSHGATEWAY_URL if s.monitoring else None,
        drill_push_url=DRILL_PUSH_URL if s.monitoring else None,
    )


def _database(s: Settings, platform: Platform, ca: InternalCA) -> Database:
    kubernetes = s.platform == "kubernetes"
    return Database(
        "luna-database",
        DatabaseArgs(
            platform=platform,
            engine=s.database,
            image=s.images.cnpg_postgres if kubernetes else s.images.postgres,
            instances=s.postgres_instances if kubernetes else 1,
            synchronous=kubernetes and s.stack == "prod",
            ca=ca,
            volume_gb=s.database_volume_gb,
            resources=Resources(memory_mb=s.postgres_memory_mb, cpus=s.postgres_cpus),
            password=s.secrets.db_password,
            backup=_backup(s),
            protect=s.protect_data,
            # Kubernetes staging and prod: WAL on its own volume, a quarter of the data's.
            wal_volume_gb=max(2, s.database_volume_gb // 4)
            if kubernetes and s.stack != "dev"
            else None,
            restore_to_time=s.restore_to_time,
        ),
    )


def _cache(s: Settings, platform: Platform, ca: InternalCA) -> Cache:
    return Cache(
        "luna-cache",
        CacheArgs(
            platform=platform,
            image=s.images.redis,
            max_memory_mb=s.redis_max_memory_mb,
            eviction_policy=s.redis_eviction_policy,
            password=s.secrets.redis_password,
            protect=s.protect_data,
            ca=ca,
        ),
    )


def _app(
    s: Settings,
    platform: Platform,
    ca: InternalCA,
    image: str,
    database: Database,
    cache: Cache | None,
) -> LunaApp:
    return LunaApp(
        "luna-app",
        LunaAppArgs(
            platform=platform,
            image=image,
            app_url=s.app_url,
            node_env=s.node_env,
            replicas=s.app_replicas,
            resources=Resources(memory_mb=s.app_memory_mb, cpus=s.app_cpus),
            health_path=s.health_path,
            database_url=database.url,
            migrate_database_url=database.migrate_url,
            database_ca_pem=database.ca_pem,
            database_service=database.service,
            database_mounts=database.mounts,
            database_deployment=database.deployment,
            redis_url=cache.url if cache else None,
            cache_service=cache.service if cache else None,
            internal_ca_pem=ca.ca_pem,
            openai_api_key=s.secrets.openai_api_key,
            jwt_secret=s.secrets.jwt_secret,
            # Without the proxy (dev) the app itself answers on localhost:3000.
            publish_port=None if s.proxy else APP_PORT,
            protect=s.protect_data,
            # Across nodes, the edge reaches the app over TLS (docs/architecture.md).
            tls_cert=ca.issue("app", ["app"]) if s.proxy and platform.crosses_hosts else None,
            tls_front_image=s.images.nginx,
        ),
    )


def _proxy(s: Settings, platform: Platform, app: LunaApp, ca: InternalCA) -> ReverseProxy:
    return ReverseProxy(
        "luna-proxy",
        ReverseProxyArgs(
            platform=platform,
            image=s.images.nginx,
            server_name=s.server_name,
            upstream=app.deployment,
            # Kubernetes runs two edges behind its load balancer, each draining
            # for longer than that balancer's health-check window; one Docker
            # host binds the public ports once.
            replicas=EDGE_REPLICAS if s.platform == "kubernetes" else 1,
            drain_s=s.edge_drain_s if s.platform == "kubernetes" else 0,
            http_port=s.http_port,
            https_port=s.https_port,
            client_max_body_mb=s.client_max_body_mb,
            tls_cert=s.secrets.tls_cert,
            tls_key=s.secrets.tls_key,
            crisis_paths=(crisis_prefix(s.crisis_path),),
            # Prometheus scrapes the app inside; the internet never reads it.
            internal_paths=(s.metrics_path,),
            internal_ca_pem=ca.ca_pem,
        ),
    )


def _monitoring(
    s: Settings,
    platform: Platform,
    app: LunaApp,
    database: Database,
    cache: Cache | None,
    proxy: ReverseProxy | None,
) -> Monitoring:
    return Monitoring(
        "luna-monitoring",
        MonitoringArgs(
            platform=platform,
            stack=s.stack,
            # Settings' Images is a MonitoringImages and a LoggingImages.
            images=s.images,
            app_targets=app.addresses,
            app_dns_names=app.dns_names,
            app_metrics_path=s.metrics_path,
            crisis_probe_url=f"{app.internal_url}{s.crisis_path}",
            thresholds=_thresholds(s, database),
            receivers=_receivers(s),
            # Two gossiping replicas where the platform can spread them; one on a
            # single Docker host, where a second copy shares its fate.
            alertmanager_replicas=2 if s.platform == "kubernetes" else 1,
            # What users reach: the public URL, through the edge and its certificate.
            edge_probe_url=f"{s.app_url}{s.crisis_path}" if proxy else None,
            retention_days=s.prometheus_retention_days,
            volume_gb=s.prometheus_volume_gb,
            database_service=database.service,
            database_host=database.host,
            database_password=database.monitor_password,
            database_ca_pem=database.ca_pem,
            database_metrics_dns=database.metrics_dns,
            cache_service=cache.service if cache else None,
            cache_password=cache.exporter_password if cache else None,
            cache_user=cache.exporter_user if cache else "exporter",
            cache_tls_port=cache.tls_port if cache else 6380,
            cache_ca_pem=cache.ca_pem if cache else None,
            proxy_status=proxy.status_address if proxy else None,
            backups=s.backups,
            grafana_password=s.secrets.grafana_password,
            grafana_port=s.grafana_port,
            protect=s.protect_data,
        ),
    )


def _thresholds(s: Settings, database: Database) -> AlertThresholds:
    return AlertThresholds(
        crisis_latency_s=s.crisis_latency_budget_ms / 1000,
        backup_max_age_h=s.backup_interval_hours * 2 + 2,
        backup_metrics=database.backup_metrics,
        app_replicas=s.app_replicas,
        slo_objective_percent=s.alerting.slo_objective_percent,
        runbook_base=s.alerting.runbook_base_url,
    )


def _logging(s: Settings, platform: Platform, ca: InternalCA) -> Logging:
    return Logging(
        "luna-logging",
        LoggingArgs(
            platform=platform,
            stack=s.stack,
            images=s.images,
            ca=ca,
            retention_days=s.log_retention_days,
            audit_retention_days=s.audit_retention_days,
            volume_gb=s.elasticsearch_volume_gb,
            heap_mb=s.elasticsearch_heap_mb,
            elastic_password=s.secrets.elastic_password,
            kibana_port=s.kibana_port,
            gelf_port=s.gelf_port,
            protect=s.protect_data,
            **_snapshots(s),
        ),
    )


def _snapshots(s: Settings) -> dict[str, Any]:
    """The audit indices' off-site copy, beside the database's backups (with backups)."""
    backup = _backup(s)
    if backup is None:
        return {}
    t = s.backup_target
    return {
        "snapshots": SnapshotStore(
            bucket=t.bucket,
            endpoint=t.endpoint,
            base_path=f"luna-{s.stack}/elasticsearch",
            path_style=t.uri_style == "path",
        ),
        "snapshot_keys": (backup.target.access_key_id, backup.target.secret_access_key),
    }


def _receivers(s: Settings) -> AlertReceivers:
    a = s.alerting
    email = (
        EmailArgs(
            smarthost=a.smtp_smarthost,
            sender=a.smtp_from,
            to=a.email_to,
            username=a.smtp_username,
            password=a.smtp_password,
        )
        if a.smtp_smarthost and a.smtp_from and a.email_to
        else None
    )
    return AlertReceivers(
        pagerduty_routing_key=a.pagerduty_routing_key,
        opsgenie_api_key=a.opsgenie_api_key,
        chat_kind=a.chat_kind,
        chat_webhook_url=a.chat_webhook_url,
        email=email,
        webhook_url=a.webhook_url,
        heartbeat_url=a.heartbeat_url,
        webhook_ports=a.receiver_ports,
        allow_unrouted=s.stack == "dev",
    )


def export(outputs: dict[str, Any]) -> None:
    for key, value in outputs.items():
        pulumi.export(key, value)

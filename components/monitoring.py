"""Monitoring: Prometheus, its exporters and probes, Alertmanager (alerting.py), and Grafana."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi

from components.alerting import AlertReceivers, EmailArgs, deploy_alertmanager
from components.configs import blackbox, grafana
from components.configs.postgres import MONITOR_ROLE, libpq_dsn
from components.configs.prometheus import (
    RULES_PATH,
    Alerting,
    AlertThresholds,
    ScrapeJob,
    alert_rules,
    prometheus_config,
)
from components.configs.rules import EDGE_JOB, PROBE_JOB
from components.database import CA_FILE
from components.passwords import secret_or_generated
from components.platforms import Deployment, Platform
from components.spec import ConfigFile, HealthCheck, Mount, Port, Resources, ServiceSpec, VolumeSpec

__all__ = [
    "DRILL_PUSH_URL",
    "PUSHGATEWAY_URL",
    "AlertReceivers",
    "EmailArgs",
    "Monitoring",
    "MonitoringArgs",
    "MonitoringImages",
    "retention_size_mb",
]

PUSHGATEWAY_URL = "http://pushgateway:9091/metrics/job/luna-backup"
DRILL_PUSH_URL = "http://pushgateway:9091/metrics/job/luna-restore-drill"
_SMALL = Resources(memory_mb=64, cpus=0.25)
REDIS_EXPORTER_CA = "/etc/redis-exporter/ca.crt"


@dataclass(frozen=True)
class MonitoringImages:
    prometheus: str
    grafana: str
    pushgateway: str
    blackbox: str
    postgres_exporter: str
    redis_exporter: str
    nginx_exporter: str
    alertmanager: str = "prom/alertmanager:v0.27.0"


@dataclass(frozen=True)
class MonitoringArgs:
    platform: Platform
    stack: str
    images: MonitoringImages
    app_targets: Sequence[str]
    app_metrics_path: str
    crisis_probe_url: str
    """What the blackbox exporter requests to prove the crisis path answers."""
    thresholds: AlertThresholds
    retention_days: int
    volume_gb: int
    database_service: str | None = None
    database_password: pulumi.Input[str] | None = None
    """The monitoring role's password (never the superuser's)."""
    database_host: str | None = None
    database_metrics_dns: str | None = None
    """CloudNativePG's per-instance metrics (a headless Service), scraped by DNS."""
    database_ca_pem: pulumi.Input[str] | None = None
    cache_service: str | None = None
    cache_password: pulumi.Input[str] | None = None
    """The cache's exporter user's password (never the app's)."""
    cache_user: str = "exporter"
    cache_tls_port: int = 6380
    cache_ca_pem: pulumi.Input[str] | None = None
    """The CA the exporter verifies the cache's certificate with (TLS only)."""
    proxy_status: str | None = None
    backups: bool = False
    grafana_password: pulumi.Input[str] | None = None
    grafana_port: int | None = 3001
    """Host loopback port for Grafana (Docker); reach it through an SSH tunnel."""
    protect: bool = False
    app_dns_names: Sequence[str] = ()
    """When set, replicas are discovered through DNS (one A record each) on the
    targets' port, since one Service address reaches a random replica."""
    receivers: AlertReceivers = field(default_factory=lambda: AlertReceivers(allow_unrouted=True))
    alertmanager_replicas: int = 1
    """More than one forms a gossip cluster (Kubernetes: 2, with a PDB)."""
    edge_probe_url: str | None = None
    """The crisis path as users reach it (``https://<appUrl><crisisPath>``)."""


class Monitoring(pulumi.ComponentResource):
    """Prometheus scraping the app and exporters; Grafana provisioned as code.

    Usage::

        Monitoring("luna-monitoring", MonitoringArgs(platform=p, stack="prod", ...))
    """

    prometheus_yml: str
    rules_yml: str
    alertmanager_yml: pulumi.Output[str]
    """Secret: it holds the receivers' keys and URLs."""
    grafana_url: str
    grafana_password: pulumi.Output[str]
    """Grafana's admin password; secret."""

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:Monitoring", name, None, opts)
        self._name, self._args, self._p = name, args, args.platform
        self._jobs = self._probe_jobs()
        self._scraped = ["app", "blackbox", "alertmanager"]
        self._blackbox()
        alertmanager = self._alertmanager()
        self._database_exporter()
        self._cache_exporter()
        self._edge_exporter()
        self._pushgateway()
        self._prometheus(alertmanager)
        self._grafana()
        self.register_outputs(
            {
                "grafana_url": self.grafana_url,
                "grafana_password": self.grafana_password,
                "alertmanager_yml": self.alertmanager_yml,
            }
        )

    def _probe_jobs(self) -> list[ScrapeJob]:
        """The app's replicas, the crisis path (inside and, with an edge, as users reach it)."""
        args = self._args
        jobs = [
            ScrapeJob(
                "app",
                args.app_targets,
                metrics_path=args.app_metrics_path,
                dns_names=tuple(args.app_dns_names),
            ),
            ScrapeJob(
                PROBE_JOB,
                [args.crisis_probe_url],
                probe_via="blackbox:9115",
                module=blackbox.INTERNAL_MODULE,
            ),
            ScrapeJob("prometheus", ["127.0.0.1:9090"]),
        ]
        if args.edge_probe_url:
            jobs.append(
                ScrapeJob(
                    EDGE_JOB,
                    [args.edge_probe_url],
                    probe_via="blackbox:9115",
                    module=blackbox.EDGE_MODULE,
                )
            )
        return jobs

    def _scrape(self, job: str, exporter: ServiceSpec) -> None:
        """Deploy an exporter and scrape it at the address the platform gives it."""
        deployed = self._p.deploy(f"{self._name}-{exporter.name}", exporter, parent=self)
        self._scraped.append(exporter.name)
        self._jobs.append(ScrapeJob(job, list(deployed.addresses)))

    def _blackbox(self) -> None:
        args = self._args
        self._p.deploy(
            f"{self._name}-blackbox",
            dataclasses.replace(
                self._exporter("blackbox", args.images.blackbox, 9115, connects_to=("app",)),
                args=(f"--config.file={blackbox.CONFIG_PATH}",),
                files=(ConfigFile(blackbox.CONFIG_PATH, blackbox.blackbox_config()),),
                # The edge probe goes out and back in through the public address,
                # as a user's request does.
                internet_egress=bool(args.edge_probe_url),
            ),
            parent=self,
        )

    def _alertmanager(self) -> Deployment:
        args = self._args
        am, self.alertmanager_yml = deploy_alertmanager(
            self._name,
            self._p,
            image=args.images.alertmanager,
            receivers=args.receivers,
            replicas=args.alertmanager_replicas,
            parent=self,
        )
        self._jobs.append(ScrapeJob("alertmanager", am.addresses, dns_names=tuple(am.dns_names)))
        return am

    def _database_exporter(self) -> None:
        """postgres_exporter on Docker; CloudNativePG's own per-instance metrics on Kubernetes."""
        args = self._args
        if args.database_service and args.database_password is not None:
            ca_pem = args.database_ca_pem
            ca = (ConfigFile(CA_FILE, ca_pem),) if ca_pem is not None else ()
            self._scrape(
                "postgres",
                self._exporter(
                    "postgres-exporter",
                    args.images.postgres_exporter,
                    9187,
                    env={
                        # Verified TLS as the pg_monitor role (components/configs/postgres.py).
                        "DATA_SOURCE_URI": libpq_dsn(
                            host=args.database_host or args.database_service, ca_file=CA_FILE
                        ),
                        "DATA_SOURCE_USER": MONITOR_ROLE,
                    },
                    secret_env={"DATA_SOURCE_PASS": args.database_password},
                    files=ca,
                    # Slow queries from pg_stat_statements: per queryid, never
                    # the text (the server log no longer has statements at all).
                    args=("--collector.stat_statements",),
                    connects_to=(args.database_service,),
                ),
            )
        if args.database_metrics_dns:
            dns = args.database_metrics_dns
            self._jobs.append(ScrapeJob("cnpg", [f"{dns}:9187"], dns_names=(dns,)))

    def _cache_exporter(self) -> None:
        args = self._args
        if not args.cache_service or args.cache_password is None:
            return
        if args.cache_ca_pem is None:
            raise ValueError("the Redis exporter needs the CA of the cache's certificate")
        self._scrape(
            "redis",
            self._exporter(
                "redis-exporter",
                args.images.redis_exporter,
                9121,
                # rediss://: TLS, verified against the stack's CA for the name "cache".
                env={
                    "REDIS_ADDR": f"rediss://{args.cache_service}:{args.cache_tls_port}",
                    "REDIS_USER": args.cache_user,
                    "REDIS_EXPORTER_TLS_CA_CERT_FILE": REDIS_EXPORTER_CA,
                },
                secret_env={"REDIS_PASSWORD": args.cache_password},
                files=(ConfigFile(REDIS_EXPORTER_CA, args.cache_ca_pem),),
                connects_to=(args.cache_service,),
            ),
        )

    def _edge_exporter(self) -> None:
        status = self._args.proxy_status
        if not status:
            return
        self._scrape(
            "nginx",
            self._exporter(
                "nginx-exporter",
                self._args.images.nginx_exporter,
                9113,
                args=(f"--nginx.scrape-uri=http://{status}/stub_status",),
                connects_to=(status.split(":")[0],),
            ),
        )

    def _pushgateway(self) -> None:
        """Where the Docker backup loop and drill push their last result."""
        args = self._args
        if not args.backups:
            return
        self._p.volume(
            f"{self._name}-pushgateway-data",
            "pushgateway-data",
            VolumeSpec(size_gb=1, protect=args.protect),
            parent=self,
        )
        self._p.deploy(
            f"{self._name}-pushgateway",
            ServiceSpec(
                name="pushgateway",
                component="monitoring",
                image=args.images.pushgateway,
                resources=_SMALL,
                # Persisted, so a restart does not forget the last backup.
                # /pushgateway is the image's own directory, owned by nobody: a
                # fresh Docker volume there inherits that owner (one at /data is root's).
                args=("--persistence.file=/pushgateway/pushgateway.db",),
                ports=(Port("http", 9091),),
                mounts=(Mount("pushgateway-data", "/pushgateway"),),
                user="65534:65534",
            ),
            parent=self,
        )
        self._scraped.append("pushgateway")
        self._jobs.append(ScrapeJob("pushgateway", ["pushgateway:9091"], honor_labels=True))

    def _prometheus(self, alertmanager: Deployment) -> None:
        args = self._args
        thresholds = dataclasses.replace(args.thresholds, jobs=tuple(j.name for j in self._jobs))
        self.prometheus_yml = prometheus_config(
            stack=args.stack,
            jobs=self._jobs,
            alerting=Alerting(
                targets=alertmanager.addresses, dns_names=tuple(alertmanager.dns_names)
            ),
        )
        self.rules_yml = alert_rules(thresholds)
        self._p.volume(
            f"{self._name}-prometheus-data",
            "prometheus-data",
            VolumeSpec(size_gb=args.volume_gb, protect=args.protect),
            parent=self,
        )
        self._p.deploy(
            f"{self._name}-prometheus",
            ServiceSpec(
                name="prometheus",
                component="monitoring",
                image=args.images.prometheus,
                workload="stateful",
                resources=Resources(memory_mb=1024, cpus=1.0),
                args=(
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={args.retention_days}d",
                    # A volume size bounds nothing on one Docker host: the TSDB
                    # deletes its oldest blocks to stay within 80% of it.
                    f"--storage.tsdb.retention.size={retention_size_mb(args.volume_gb)}MB",
                ),
                ports=(Port("http", 9090),),
                files=(
                    ConfigFile("/etc/prometheus/prometheus.yml", self.prometheus_yml),
                    ConfigFile(RULES_PATH, self.rules_yml),
                ),
                mounts=(Mount("prometheus-data", "/prometheus"),),
                health=HealthCheck.http(9090, "/-/ready"),
                user="65534:65534",
                connects_to=tuple(self._scraped),
            ),
            parent=self,
        )

    def _grafana(self) -> None:
        args = self._args
        self.grafana_password = secret_or_generated(
            f"{self._name}-grafana-password",
            args.grafana_password,
            parent=self,
            protect=args.protect,
        )
        self._p.volume(
            f"{self._name}-grafana-data",
            "grafana-data",
            VolumeSpec(size_gb=1, protect=args.protect),
            parent=self,
        )
        spec = grafana_service(
            args.images.grafana,
            stack=args.stack,
            port=args.grafana_port,
            password=self.grafana_password,
            error_budget=1 - args.thresholds.slo_objective_percent / 100,
        )
        self._p.deploy(f"{self._name}-grafana", spec, parent=self)
        self.grafana_url = (
            self._p.service_url(spec, "http") if args.grafana_port else "http://grafana:3000"
        )

    @staticmethod
    def _exporter(
        service: str,
        image: str,
        port: int,
        *,
        env: dict[str, pulumi.Input[str]] | None = None,
        secret_env: dict[str, pulumi.Input[str]] | None = None,
        args: tuple[str, ...] | None = None,
        files: tuple[ConfigFile, ...] = (),
        connects_to: tuple[str, ...] = (),
    ) -> ServiceSpec:
        return ServiceSpec(
            name=service,
            component="monitoring",
            image=image,
            resources=_SMALL,
            args=args,
            ports=(Port("metrics", port),),
            env=env or {},
            secret_env=secret_env or {},
            files=files,
            user="65534:65534",
            connects_to=connects_to,
        )


def retention_size_mb(volume_gb: int) -> int:
    """80% of the volume: the WAL and compaction need the rest (Prometheus storage docs)."""
    return volume_gb * 1024 * 8 // 10


def grafana_service(
    image: str, *, stack: str, port: int | None, password: pulumi.Input[str], error_budget: float
) -> ServiceSpec:
    """Grafana provisioned as code: the Prometheus data source and Luna's dashboard."""
    return ServiceSpec(
        name="grafana",
        component="monitoring",
        image=image,
        resources=Resources(memory_mb=256, cpus=0.5),
        ports=(Port("http", 3000, publish=port),),
        env={
            "GF_SECURITY_ADMIN_USER": "admin",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            "GF_SECURITY_DISABLE_GRAVATAR": "true",
            "GF_SECURITY_COOKIE_SAMESITE": "strict",
        },
        secret_env={"GF_SECURITY_ADMIN_PASSWORD": password},
        files=(
            ConfigFile(
                "/etc/grafana/provisioning/datasources/luna.yaml",
                grafana.datasources(prometheus_url="http://prometheus:9090"),
            ),
            ConfigFile(
                "/etc/grafana/provisioning/dashboards/luna.yaml", grafana.dashboard_provider()
            ),
            ConfigFile(
                f"{grafana.DASHBOARD_DIR}/luna-overview.json",
                grafana.dashboard_json(stack=stack, error_budget=error_budget),
            ),
        ),
        mounts=(Mount("grafana-data", "/var/lib/grafana"),),
        writable_paths=("/tmp",),
        health=HealthCheck.http(3000, "/api/health"),
        user="472:0",
        connects_to=("prometheus",),
    )

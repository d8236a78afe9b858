"""Logging: Elasticsearch (security on, retention), Logstash and Kibana.

Named ``logs`` rather than ``logging`` so it can never shadow the stdlib.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.configs.elasticsearch import AUDIT_RETENTION_MIN_DAYS, setup_script
from components.configs.logstash import GELF_PORT, QUEUE_DIR, logstash_pipeline, logstash_yml
from components.passwords import secret_or_generated
from components.platforms import Platform
from components.spec import ConfigFile, HealthCheck, Mount, Port, Resources, ServiceSpec, VolumeSpec

__all__ = ["Logging", "LoggingArgs", "LoggingImages", "disk_watermarks"]

ES_URL = "http://elasticsearch:9200"


@dataclass(frozen=True)
class LoggingImages:
    elasticsearch: str
    logstash: str
    kibana: str


@dataclass(frozen=True)
class LoggingArgs:
    platform: Platform
    stack: str
    images: LoggingImages
    retention_days: int
    volume_gb: int
    heap_mb: int
    elastic_password: pulumi.Input[str] | None = None
    audit_retention_days: int = AUDIT_RETENTION_MIN_DAYS
    """Days the audit index keeps records; HIPAA asks for six years."""
    queue_volume_gb: int = 2
    """Logstash's persistent queue (queue.max_bytes is 1gb) survives restarts here."""
    kibana_port: int | None = 5601
    gelf_port: int | None = 12201
    """Host loopback port for GELF (Docker's log driver); unique per stack on a host."""
    """Host loopback port for Kibana (Docker); reach it through an SSH tunnel."""
    protect: bool = False


class Logging(pulumi.ComponentResource):
    """Central, redacted, retention-limited logs.

    Usage::

        Logging("luna-logging", LoggingArgs(platform=p, stack="prod", images=...,
                retention_days=30, volume_gb=50, heap_mb=1024))
    """

    pipeline: str
    setup_script: str
    kibana_url: str
    elastic_password: pulumi.Output[str]

    def __init__(
        self, name: str, args: LoggingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:Logging", name, None, opts)
        p, img = args.platform, args.images
        self.elastic_password = secret_or_generated(
            f"{name}-elastic-password", args.elastic_password, parent=self, protect=args.protect
        )
        kibana_password = secret_or_generated(
            f"{name}-kibana-password", None, parent=self, protect=args.protect
        )
        logstash_password = secret_or_generated(
            f"{name}-logstash-password", None, parent=self, protect=args.protect
        )
        kibana_key = secret_or_generated(
            f"{name}-kibana-key", None, parent=self, protect=args.protect, length=48
        )

        p.volume(
            f"{name}-es-data",
            "elasticsearch-data",
            VolumeSpec(size_gb=args.volume_gb, protect=args.protect),
            parent=self,
        )
        es = p.deploy(
            f"{name}-elasticsearch",
            ServiceSpec(
                name="elasticsearch",
                component="logging",
                image=img.elasticsearch,
                workload="stateful",
                resources=Resources(memory_mb=args.heap_mb * 2, cpus=1.0),
                ports=(Port("http", 9200),),
                env={
                    "discovery.type": "single-node",
                    "cluster.name": f"luna-{args.stack}",
                    "xpack.security.enabled": "true",
                    # Plain HTTP on a private network; TLS to ES is a later step.
                    "xpack.security.http.ssl.enabled": "false",
                    "xpack.security.transport.ssl.enabled": "false",
                    # Avoids the host sysctl vm.max_map_count >= 262144.
                    "node.store.allow_mmap": "false",
                    "ingest.geoip.downloader.enabled": "false",
                    "ES_JAVA_OPTS": f"-Xms{args.heap_mb}m -Xmx{args.heap_mb}m",
                    **disk_watermarks(args.volume_gb),
                },
                secret_env={"ELASTIC_PASSWORD": self.elastic_password},
                mounts=(Mount("elasticsearch-data", "/usr/share/elasticsearch/data"),),
                health=HealthCheck(
                    command=(
                        "sh",
                        "-c",
                        'curl -fsS -u "elastic:$ELASTIC_PASSWORD" '
                        "'http://127.0.0.1:9200/_cluster/health?local=true' > /dev/null",
                    ),
                    start_period_s=120,
                ),
                user="1000:0",
                # The Elastic images write their keystore and settings at start.
                read_only_root=False,
                ship_logs=False,
            ),
            parent=self,
        )
        self.setup_script = setup_script(
            stack=args.stack,
            elasticsearch_url=ES_URL,
            retention_days=args.retention_days,
            audit_retention_days=args.audit_retention_days,
        )
        setup = p.deploy(
            f"{name}-es-setup",
            ServiceSpec(
                name="elasticsearch-setup",
                component="logging",
                image=img.elasticsearch,
                workload="job",
                resources=Resources(memory_mb=128, cpus=0.25),
                command=("/bin/sh", "/opt/luna/es-setup.sh"),
                files=(ConfigFile("/opt/luna/es-setup.sh", self.setup_script),),
                secret_env={
                    "ELASTIC_PASSWORD": self.elastic_password,
                    "KIBANA_PASSWORD": kibana_password,
                    "LOGSTASH_PASSWORD": logstash_password,
                },
                writable_paths=("/tmp",),
                user="1000:0",
                connects_to=("elasticsearch",),
                ship_logs=False,
            ),
            parent=self,
            after=[es],
        )
        self.pipeline = logstash_pipeline(
            stack=args.stack,
            elasticsearch_url=ES_URL,
            user="luna_logstash",
            password_env="LOGSTASH_ES_PASSWORD",  # noqa: S106 - a variable name
        )
        # The persistent queue lives on a volume: events accepted but not yet
        # indexed survive a restart or a replaced container.
        p.volume(
            f"{name}-logstash-queue",
            "logstash-queue",
            VolumeSpec(size_gb=args.queue_volume_gb, protect=args.protect),
            parent=self,
        )
        p.deploy(
            f"{name}-logstash",
            ServiceSpec(
                name="logstash",
                component="logging",
                image=img.logstash,
                workload="stateful",
                resources=Resources(memory_mb=1024, cpus=1.0),
                ports=(
                    # The Docker daemon's gelf driver sends to the host loopback.
                    Port("gelf-udp", GELF_PORT, protocol="udp", publish=args.gelf_port),
                    Port("gelf-tcp", GELF_PORT),
                ),
                env={"LS_JAVA_OPTS": "-Xms512m -Xmx512m"},
                secret_env={"LOGSTASH_ES_PASSWORD": logstash_password},
                mounts=(Mount("logstash-queue", QUEUE_DIR),),
                files=(
                    ConfigFile("/usr/share/logstash/pipeline/logstash.conf", self.pipeline),
                    ConfigFile("/usr/share/logstash/config/logstash.yml", logstash_yml()),
                ),
                health=HealthCheck(
                    command=("curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9600/"),
                    start_period_s=90,
                ),
                user="1000:0",
                read_only_root=False,
                connects_to=("elasticsearch",),
                ship_logs=False,
            ),
            parent=self,
            after=[setup],
        )
        kibana = ServiceSpec(
            name="kibana",
            component="logging",
            image=img.kibana,
            resources=Resources(memory_mb=1024, cpus=0.5),
            ports=(Port("http", 5601, publish=args.kibana_port),),
            env={
                "ELASTICSEARCH_HOSTS": ES_URL,
                "ELASTICSEARCH_USERNAME": "kibana_system",
                "TELEMETRY_OPTIN": "false",
            },
            secret_env={
                "ELASTICSEARCH_PASSWORD": kibana_password,
                "XPACK_SECURITY_ENCRYPTIONKEY": kibana_key,
                "XPACK_ENCRYPTEDSAVEDOBJECTS_ENCRYPTIONKEY": kibana_key,
                "XPACK_REPORTING_ENCRYPTIONKEY": kibana_key,
            },
            # /api/status needs credentials once security is on (401 otherwise),
            # so the check signs in as kibana_system; an exec probe on Kubernetes.
            health=HealthCheck(
                command=(
                    "sh",
                    "-c",
                    'curl -fsS -o /dev/null -u "kibana_system:$ELASTICSEARCH_PASSWORD" '
                    "http://127.0.0.1:5601/api/status",
                ),
                start_period_s=120,
            ),
            user="1000:0",
            read_only_root=False,
            connects_to=("elasticsearch",),
            ship_logs=False,
        )
        p.deploy(f"{name}-kibana", kibana, parent=self, after=[setup])
        self.kibana_url = (
            p.service_url(kibana, "http") if args.kibana_port else "http://kibana:5601"
        )
        self.register_outputs(
            {"kibana_url": self.kibana_url, "elastic_password": self.elastic_password}
        )


def disk_watermarks(volume_gb: int) -> dict[str, str]:
    """Free space Elasticsearch leaves on its filesystem, in absolute sizes.

    On one Docker host that filesystem is PostgreSQL's too, and a volume size
    bounds nothing there. Absolute watermarks are free space: at ``flood_stage``
    Elasticsearch makes its indices read-only (logs wait in Logstash) instead of
    filling the disk the database needs. On Kubernetes its PVC is its own.
    """
    flood = max(2, volume_gb // 10)
    return {
        "cluster.routing.allocation.disk.threshold_enabled": "true",
        "cluster.routing.allocation.disk.watermark.low": f"{flood * 3}gb",
        "cluster.routing.allocation.disk.watermark.high": f"{flood * 2}gb",
        "cluster.routing.allocation.disk.watermark.flood_stage": f"{flood}gb",
    }

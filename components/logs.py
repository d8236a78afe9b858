"""Logging: Elasticsearch (security on, retention), Logstash and Kibana, TLS on every hop.

Certificates come from the stack's CA (components/certificates.py). Every
client of Elasticsearch (Logstash, Kibana, the setup job, the health checks)
and of Logstash's network input (the Kubernetes log collector) verifies the
server's chain and host name against that CA.

Named ``logs`` rather than ``logging`` so it can never shadow the stdlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi

from components.certificates import InternalCA, ServerCertificate
from components.configs.elasticsearch import (
    AUDIT_RETENTION_MIN_DAYS,
    S3_KEY_DIR,
    SnapshotStore,
    keystore_command,
    s3_client_settings,
    setup_script,
)
from components.configs.logstash import (
    GELF_PORT,
    QUEUE_DIR,
    LogstashTls,
    audit_origin,
    logstash_pipeline,
    logstash_yml,
)
from components.passwords import secret_or_generated
from components.platforms import Deployment, Platform
from components.spec import ConfigFile, HealthCheck, Mount, Port, Resources, ServiceSpec, VolumeSpec

__all__ = [
    "ES_CERTS",
    "ES_URL",
    "KIBANA_CERTS",
    "LOGSTASH_CERTS",
    "Logging",
    "LoggingArgs",
    "LoggingImages",
    "TlsFiles",
    "disk_watermarks",
]

ES_URL = "https://elasticsearch:9200"


@dataclass(frozen=True)
class TlsFiles:
    """Where a program finds its certificate, key and the stack CA."""

    cert: str
    key: str
    ca: str


# Under each program's config directory: Elasticsearch reads SSL files only
# from there (its security manager), and Kibana and Logstash keep theirs alike.
ES_CERTS = TlsFiles(
    "/usr/share/elasticsearch/config/certs/elasticsearch.crt",
    "/usr/share/elasticsearch/config/certs/elasticsearch.key",
    "/usr/share/elasticsearch/config/certs/ca.crt",
)
LOGSTASH_CERTS = TlsFiles(
    "/usr/share/logstash/config/certs/logstash.crt",
    # PKCS#8: the only PEM key form logstash-input-tcp reads.
    "/usr/share/logstash/config/certs/logstash.pkcs8.key",
    "/usr/share/logstash/config/certs/ca.crt",
)
KIBANA_CERTS = TlsFiles(
    "/usr/share/kibana/config/certs/kibana.crt",
    "/usr/share/kibana/config/certs/kibana.key",
    "/usr/share/kibana/config/certs/ca.crt",
)


def _tls_files(
    where: TlsFiles, cert: ServerCertificate, *, pkcs8: bool = False
) -> tuple[ConfigFile, ...]:
    return (
        ConfigFile(where.cert, cert.cert_pem),
        ConfigFile(where.key, cert.key_pem_pkcs8 if pkcs8 else cert.key_pem, secret=True),
        ConfigFile(where.ca, cert.ca_pem),
    )


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
    ca: InternalCA
    """Issues the Elasticsearch, Logstash and Kibana certificates."""
    retention_days: int
    volume_gb: int
    heap_mb: int
    elastic_password: pulumi.Input[str] | None = None
    audit_retention_days: int = AUDIT_RETENTION_MIN_DAYS
    """Days the audit index keeps records; HIPAA asks for six years."""
    queue_volume_gb: int = 2
    """Logstash's persistent queue (queue.max_bytes is 1gb) survives restarts here."""
    kibana_port: int | None = 5601
    """Host loopback port for Kibana (Docker); reach it through an SSH tunnel."""
    gelf_port: int | None = 12201
    """Host loopback port for GELF (Docker's log driver); unique per stack on a host."""
    protect: bool = False
    snapshots: SnapshotStore | None = None
    """The object store the audit indices are snapshotted to (with backups)."""
    snapshot_keys: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
    """The object store's access key id and secret key, for ``snapshots``."""


# The Elasticsearch image's own entrypoint and command (its Dockerfile's
# ENTRYPOINT and CMD), started after the S3 keys are in the keystore.
ES_ENTRYPOINT = ("/bin/tini", "--", "/usr/local/bin/docker-entrypoint.sh", "eswrapper")


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
    operator_password: pulumi.Output[str]
    """The password of ``luna_ops``, the read-only operator account (not ``elastic``)."""

    def __init__(
        self, name: str, args: LoggingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:Logging", name, None, opts)
        self._name, self._args, self._p = name, args, args.platform
        self._kubernetes = args.platform.name == "kubernetes"
        self._passwords()
        es_cert, ls_cert, kb_cert = self._certificates()
        es = self._elasticsearch(es_cert)
        setup = self._setup(es, es_cert)
        self._logstash(setup, ls_cert)
        self._kibana(setup, kb_cert)
        self.register_outputs(
            {
                "kibana_url": self.kibana_url,
                "elastic_password": self.elastic_password,
                "operator_password": self.operator_password,
            }
        )

    def _passwords(self) -> None:
        """Each account's own password, and Kibana's three encryption keys."""
        self.elastic_password = secret_or_generated(
            f"{self._name}-elastic-password",
            self._args.elastic_password,
            parent=self,
            protect=self._args.protect,
        )
        self._kibana_password = secret_or_generated(
            f"{self._name}-kibana-password", None, parent=self, protect=self._args.protect
        )
        self._logstash_password = secret_or_generated(
            f"{self._name}-logstash-password", None, parent=self, protect=self._args.protect
        )
        # Three keys, one per Kibana subsystem: a leaked reporting key must not
        # decrypt saved objects or sessions (Kibana's security settings docs).
        self._kibana_keys = {
            env: secret_or_generated(
                f"{self._name}-kibana-{suffix}",
                None,
                parent=self,
                protect=self._args.protect,
                length=48,
            )
            for env, suffix in (
                ("XPACK_SECURITY_ENCRYPTIONKEY", "key"),
                ("XPACK_ENCRYPTEDSAVEDOBJECTS_ENCRYPTIONKEY", "saved-objects-key"),
                ("XPACK_REPORTING_ENCRYPTIONKEY", "reporting-key"),
            )
        }
        self.operator_password = secret_or_generated(
            f"{self._name}-operator-password", None, parent=self, protect=self._args.protect
        )

    def _certificates(self) -> tuple[ServerCertificate, ServerCertificate, ServerCertificate]:
        # "elasticsearch" is the name every client uses, "localhost" the health
        # check's. Transport connections are both client and server: client_auth.
        es_cert = self._args.ca.issue("elasticsearch", ["elasticsearch", "localhost"], client=True)
        ls_cert = self._args.ca.issue("logstash", ["logstash"])
        kb_cert = self._args.ca.issue("kibana", ["kibana", "localhost"])
        return es_cert, ls_cert, kb_cert

    def _elasticsearch(self, es_cert: ServerCertificate) -> Deployment:
        """One node, security and its own audit log on, its data on a volume."""
        self._p.volume(
            f"{self._name}-es-data",
            "elasticsearch-data",
            VolumeSpec(size_gb=self._args.volume_gb, protect=self._args.protect),
            parent=self,
        )
        snapshot_files: tuple[ConfigFile, ...] = ()
        if self._args.snapshots:
            assert self._args.snapshot_keys, "snapshots need the object store's keys"
            key_id, secret_key = self._args.snapshot_keys
            snapshot_files = (
                ConfigFile(f"{S3_KEY_DIR}/access_key", key_id, secret=True),
                ConfigFile(f"{S3_KEY_DIR}/secret_key", secret_key, secret=True),
            )
        return self._p.deploy(
            f"{self._name}-elasticsearch",
            ServiceSpec(
                name="elasticsearch",
                component="logging",
                image=self._args.images.elasticsearch,
                workload="stateful",
                resources=Resources(memory_mb=self._args.heap_mb * 2, cpus=1.0),
                ports=(Port("http", 9200),),
                env={
                    "discovery.type": "single-node",
                    "cluster.name": f"luna-{self._args.stack}",
                    "xpack.security.enabled": "true",
                    # Its own audit trail: sign-ins, denials, security changes (the
                    # image logs it to stdout; request bodies are never included,
                    # xpack.security.audit.logfile.events.emit_request_body: false).
                    "xpack.security.audit.enabled": "true",
                    **elasticsearch_tls(ES_CERTS),
                    # Avoids the host sysctl vm.max_map_count >= 262144.
                    "node.store.allow_mmap": "false",
                    "ingest.geoip.downloader.enabled": "false",
                    "ES_JAVA_OPTS": f"-Xms{self._args.heap_mb}m -Xmx{self._args.heap_mb}m",
                    **disk_watermarks(self._args.volume_gb),
                    **(s3_client_settings(self._args.snapshots) if self._args.snapshots else {}),
                },
                secret_env={"ELASTIC_PASSWORD": self.elastic_password},
                mounts=(Mount("elasticsearch-data", "/usr/share/elasticsearch/data"),),
                files=_tls_files(ES_CERTS, es_cert) + snapshot_files,
                command=keystore_command(ES_ENTRYPOINT) if self._args.snapshots else None,
                # Snapshots go to the object store off the cluster (HTTPS), on
                # its endpoint's own port (Kubernetes egress opens that one only).
                internet_egress=self._args.snapshots is not None,
                internet_ports=(_store_port(self._args.snapshots.endpoint),)
                if self._args.snapshots
                else (443,),
                health=HealthCheck(
                    command=(
                        "sh",
                        "-c",
                        # The password reaches curl on stdin (-K -), never its arguments.
                        'printf \'user = "elastic:%s"\\n\' "$ELASTIC_PASSWORD" | '
                        f"curl -fsS -K - --cacert {ES_CERTS.ca} "
                        "'https://localhost:9200/_cluster/health?local=true' > /dev/null",
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

    def _setup(self, es: Deployment, es_cert: ServerCertificate) -> Deployment:
        """Users, roles, retention (ILM) and snapshots, applied once per deploy."""
        self.setup_script = setup_script(
            stack=self._args.stack,
            elasticsearch_url=ES_URL,
            ca_file=ES_CERTS.ca,
            retention_days=self._args.retention_days,
            audit_retention_days=self._args.audit_retention_days,
            snapshots=self._args.snapshots,
        )
        return self._p.deploy(
            f"{self._name}-es-setup",
            ServiceSpec(
                name="elasticsearch-setup",
                component="logging",
                image=self._args.images.elasticsearch,
                workload="job",
                resources=Resources(memory_mb=128, cpus=0.25),
                command=("/bin/sh", "/opt/luna/es-setup.sh"),
                files=(
                    ConfigFile("/opt/luna/es-setup.sh", self.setup_script),
                    ConfigFile(ES_CERTS.ca, es_cert.ca_pem),
                ),
                secret_env={
                    "ELASTIC_PASSWORD": self.elastic_password,
                    "KIBANA_PASSWORD": self._kibana_password,
                    "LOGSTASH_PASSWORD": self._logstash_password,
                    "OPERATOR_PASSWORD": self.operator_password,
                },
                writable_paths=("/tmp",),
                user="1000:0",
                connects_to=("elasticsearch",),
                ship_logs=False,
            ),
            parent=self,
            after=[es],
        )

    def _logstash(self, setup: Deployment, ls_cert: ServerCertificate) -> None:
        """The pipeline that redacts, routes the audit stream and writes to Elasticsearch."""
        self.pipeline = logstash_pipeline(
            stack=self._args.stack,
            elasticsearch_url=ES_URL,
            user="luna_logstash",
            password_env="LOGSTASH_ES_PASSWORD",  # noqa: S106 - a variable name
            tls=LogstashTls(
                ca_file=LOGSTASH_CERTS.ca,
                cert_file=LOGSTASH_CERTS.cert,
                key_file=LOGSTASH_CERTS.key,
            ),
            # Kubernetes' collector crosses nodes: TLS. Docker's gelf driver sends
            # to the host loopback and has no TLS (components/configs/logstash.py).
            tls_input=self._kubernetes,
            audit_from=audit_origin(
                stack=self._args.stack,
                namespace=f"luna-{self._args.stack}" if self._kubernetes else None,
            ),
        )
        # The persistent queue lives on a volume: events accepted but not yet
        # indexed survive a restart or a replaced container.
        self._p.volume(
            f"{self._name}-logstash-queue",
            "logstash-queue",
            VolumeSpec(size_gb=self._args.queue_volume_gb, protect=self._args.protect),
            parent=self,
        )
        self._p.deploy(
            f"{self._name}-logstash",
            ServiceSpec(
                name="logstash",
                component="logging",
                image=self._args.images.logstash,
                workload="stateful",
                resources=Resources(memory_mb=1024, cpus=1.0),
                ports=(
                    (Port("logs-tls", GELF_PORT),)
                    if self._kubernetes
                    # The Docker daemon's gelf driver sends to the host loopback.
                    else (
                        Port("gelf-udp", GELF_PORT, protocol="udp", publish=self._args.gelf_port),
                    )
                ),
                env={"LS_JAVA_OPTS": "-Xms512m -Xmx512m"},
                secret_env={"LOGSTASH_ES_PASSWORD": self._logstash_password},
                mounts=(Mount("logstash-queue", QUEUE_DIR),),
                files=(
                    ConfigFile("/usr/share/logstash/pipeline/logstash.conf", self.pipeline),
                    ConfigFile("/usr/share/logstash/config/logstash.yml", logstash_yml()),
                    *_tls_files(LOGSTASH_CERTS, ls_cert, pkcs8=True),
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

    def _kibana(self, setup: Deployment, kb_cert: ServerCertificate) -> None:
        kibana = ServiceSpec(
            name="kibana",
            component="logging",
            image=self._args.images.kibana,
            resources=Resources(memory_mb=1024, cpus=0.5),
            ports=(Port("https", 5601, publish=self._args.kibana_port),),
            env={
                "ELASTICSEARCH_HOSTS": ES_URL,
                "ELASTICSEARCH_USERNAME": "kibana_system",
                "TELEMETRY_OPTIN": "false",
                **kibana_tls(KIBANA_CERTS),
            },
            files=_tls_files(KIBANA_CERTS, kb_cert),
            secret_env={
                "ELASTICSEARCH_PASSWORD": self._kibana_password,
                **self._kibana_keys,
            },
            # /api/status needs credentials once security is on (401 otherwise),
            # so the check signs in as kibana_system; an exec probe on Kubernetes.
            health=HealthCheck(
                command=(
                    "sh",
                    "-c",
                    'printf \'user = "kibana_system:%s"\\n\' "$ELASTICSEARCH_PASSWORD" | '
                    f"curl -fsS -K - -o /dev/null --cacert {KIBANA_CERTS.ca} "
                    "https://localhost:5601/api/status",
                ),
                start_period_s=120,
            ),
            user="1000:0",
            read_only_root=False,
            connects_to=("elasticsearch",),
            ship_logs=False,
        )
        self._p.deploy(f"{self._name}-kibana", kibana, parent=self, after=[setup])
        # The platform gives the address an operator reaches; Kibana speaks https there.
        self.kibana_url = (
            urlsplit(self._p.service_url(kibana, "https"))._replace(scheme="https").geturl()
            if self._args.kibana_port
            else "https://kibana:5601"
        )


def elasticsearch_tls(files: TlsFiles) -> dict[str, str]:
    """HTTP and transport TLS from the stack CA (Elasticsearch security settings).

    HTTP clients verify the chain and the name ``elasticsearch``. Transport
    (node to node) requires a client certificate by default
    (``transport.ssl.client_authentication: required``) and checks it with
    ``verification_mode: full``; a single node never dials itself, and a
    second node would need its own name in its certificate.
    """
    return {
        "xpack.security.http.ssl.enabled": "true",
        "xpack.security.http.ssl.certificate": files.cert,
        "xpack.security.http.ssl.key": files.key,
        "xpack.security.http.ssl.certificate_authorities": files.ca,
        "xpack.security.transport.ssl.enabled": "true",
        "xpack.security.transport.ssl.certificate": files.cert,
        "xpack.security.transport.ssl.key": files.key,
        "xpack.security.transport.ssl.certificate_authorities": files.ca,
        "xpack.security.transport.ssl.verification_mode": "full",
    }


def kibana_tls(files: TlsFiles) -> dict[str, str]:
    """Kibana's settings, as its Docker image maps environment variables to them.

    The image's bin/kibana-docker maps ``ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES``
    to ``elasticsearch.ssl.certificateAuthorities`` and so on; with
    ``verificationMode: full`` Kibana checks the chain and the host name
    (src/core/packages/elasticsearch/client-server-internal: ``full`` keeps
    Node's ``rejectUnauthorized`` and its name check).
    """
    return {
        "ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES": files.ca,
        "ELASTICSEARCH_SSL_VERIFICATIONMODE": "full",
        "SERVER_SSL_ENABLED": "true",
        "SERVER_SSL_CERTIFICATE": files.cert,
        "SERVER_SSL_KEY": files.key,
    }


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


def _store_port(endpoint: str) -> int:
    """``host[:port]`` of the object store: its port, 443 when none is given."""
    host, _, port = endpoint.rpartition(":")
    return int(port) if host and port.isdigit() else 443

"""Kubernetes' managed PostgreSQL: a CloudNativePG ``Cluster`` with Barman Cloud backups.

The operator (CloudNativePG v1.30) runs the instances, fails over, manages the
roles and archives WAL and base backups to the object store. What this module
writes:

- the ``Cluster``: instances, synchronous standby (prod), required pod
  anti-affinity, the operator's PodDisruptionBudget, TLS with the stack CA's
  certificate, superuser access disabled, declarative roles, pgaudit, WAL
  archiving (``archive_timeout``) and a retention window;
- a ``ScheduledBackup`` at least daily;
- Secrets for the roles, the object store and the certificate;
- a headless Service over the instances' metrics port, which the stack's
  Prometheus discovers by DNS (what the instances may reach: network.postgres_policies).

Manifests are built by pure functions (:func:`cluster_manifest`,
:func:`scheduled_backup_manifest`) and checked against the operator's CRD schemas
in tests/kubernetes/test_cnpg.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.core.v1 import Secret, Service

from components.configs import postgres as pg
from components.spec import PostgresService, PostgresSpec

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = [
    "CNPG_CRD",
    "METRICS_PORT",
    "cluster_manifest",
    "deploy_cnpg",
    "dns_names",
    "scheduled_backup_manifest",
]

API = "postgresql.cnpg.io/v1"
CNPG_CRD = "clusters.postgresql.cnpg.io"
METRICS_PORT = 9187
Manifest = dict[str, Any]


def dns_names(cluster: str, namespace: str) -> tuple[str, ...]:
    """The operator's Services for ``cluster``; ``-rw`` (the primary) first."""
    names: list[str] = []
    for suffix in ("rw", "r", "ro"):
        svc = f"{cluster}-{suffix}"
        names += [svc, f"{svc}.{namespace}", f"{svc}.{namespace}.svc"]
    return tuple(names)


def _secret_names(cluster: str) -> dict[str, str]:
    return {
        "owner": f"{cluster}-owner",
        "app": f"{cluster}-app-role",
        "monitor": f"{cluster}-monitor-role",
        "backup": f"{cluster}-backup-role",
        "s3": f"{cluster}-object-store",
        "tls": f"{cluster}-server-tls",
        "ca": f"{cluster}-server-ca",
    }


def cluster_manifest(
    spec: PostgresSpec, *, namespace: str, labels: dict[str, str], storage_class: str | None
) -> Manifest:
    """The ``Cluster`` object (without Pulumi's Outputs: every secret is referenced by name)."""
    s = _secret_names(spec.name)
    storage: Manifest = {"size": f"{spec.storage_gb}Gi"}
    if storage_class:
        storage["storageClass"] = storage_class
    parameters = {
        "archive_timeout": f"{spec.archive_timeout_s}s",
        # The same rule as on Docker: no statement text or parameter in the server log.
        **pg.LOG_SETTINGS,
        "password_encryption": "scram-sha-256",
        "ssl_min_protocol_version": "TLSv1.2",
    }
    if spec.audit:
        # Setting pgaudit.* and pg_stat_statements.* makes the operator preload both
        # libraries and CREATE EXTENSION them in every database (ManagedExtensions in
        # cloudnative-pg pkg/postgres/configuration.go; reconcileExtensions in
        # internal/management/controller/instance_controller.go), and
        # shared_preload_libraries is the operator's to set, so it is left out here.
        parameters |= {
            k: v for k, v in pg.AUDIT_SETTINGS.items() if k != "shared_preload_libraries"
        }
    postgresql: Manifest = {
        "parameters": parameters,
        # hostssl only: a plaintext connection matches no rule and is refused.
        "pg_hba": [
            "hostnossl all all all reject",
            f"hostssl {pg.DATABASE} {pg.OWNER_ROLE},{pg.APP_ROLE},{pg.MONITOR_ROLE} all "
            "scram-sha-256",
        ],
    }
    if spec.synchronous:
        # One standby confirms every commit: a failover loses no committed transaction.
        postgresql["synchronous"] = {"method": "any", "number": 1, "dataDurability": "required"}
    role_refs = {pg.APP_ROLE: s["app"], pg.MONITOR_ROLE: s["monitor"], pg.BACKUP_ROLE: s["backup"]}
    roles = [
        {
            "name": role,
            "ensure": "present",
            "login": True,
            "superuser": False,
            "createdb": False,
            "createrole": False,
            "replication": False,
            "inherit": True,
            "passwordSecret": {"name": secret},
            **({"inRoles": ["pg_monitor"]} if role == pg.MONITOR_ROLE else {}),
        }
        for role, secret in role_refs.items()
    ]
    body: Manifest = {
        "description": f"Luna {namespace}",
        "imageName": spec.image,
        "instances": spec.instances,
        "primaryUpdateStrategy": "unsupervised",
        "enableSuperuserAccess": False,
        "enablePDB": True,
        "storage": storage,
        "resources": {
            "requests": {
                "memory": f"{spec.resources.memory_mb}Mi",
                "cpu": f"{round(spec.resources.cpus * 1000)}m",
            },
            "limits": {"memory": f"{spec.resources.memory_mb}Mi"},
        },
        "affinity": {
            "enablePodAntiAffinity": True,
            "podAntiAffinityType": "required",
            "topologyKey": "kubernetes.io/hostname",
        },
        # Our labels on every instance pod: the stack's NetworkPolicies select by them.
        "inheritedMetadata": {"labels": labels},
        "postgresql": postgresql,
        "certificates": {"serverTLSSecret": s["tls"], "serverCASecret": s["ca"]},
        "bootstrap": {
            "initdb": {
                "database": pg.DATABASE,
                "owner": pg.OWNER_ROLE,
                "secret": {"name": s["owner"]},
                "dataChecksums": True,
                # The app role's rights on what the owner's migrations create.
                "postInitApplicationSQL": _grants(audit=spec.audit),
            }
        },
        "managed": {"roles": roles},
    }
    if spec.backup:
        b = spec.backup
        scheme = "https://"
        body["backup"] = {
            "retentionPolicy": f"{b.retention_days}d",
            "barmanObjectStore": {
                "destinationPath": f"s3://{b.bucket}{b.path}",
                "endpointURL": scheme + b.endpoint,
                "s3Credentials": {
                    "accessKeyId": {"name": s["s3"], "key": "ACCESS_KEY_ID"},
                    "secretAccessKey": {"name": s["s3"], "key": "ACCESS_SECRET_KEY"},
                    "region": {"name": s["s3"], "key": "REGION"},
                },
                # Barman Cloud has no client-side cipher: every object is written
                # with server-side encryption.
                "wal": {"compression": "gzip", "encryption": "AES256", "maxParallel": 2},
                "data": {"compression": "gzip", "encryption": "AES256", "jobs": 2},
            },
        }
    return {
        "apiVersion": API,
        "kind": "Cluster",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": labels},
        "spec": body,
    }


def _grants(*, audit: bool) -> list[str]:
    """The owner's grants, run once at bootstrap in the app database.

    ``managed.roles`` are reconciled after bootstrap, so the roles are created
    here first (without login or password); the operator then adopts them and
    sets their attributes and passwords from their Secrets. The auditor role
    never logs in and is not managed: it only carries the grants pgaudit reads.
    """
    sql = pg.roles_sql(audit=audit).splitlines()
    keep = ("GRANT", "REVOKE", "ALTER DEFAULT")
    create = [f"CREATE ROLE {r} NOLOGIN;" for r in (pg.APP_ROLE, pg.MONITOR_ROLE, pg.BACKUP_ROLE)]
    if audit:
        create.append(f"CREATE ROLE {pg.AUDITOR_ROLE} NOLOGIN NOINHERIT;")
    return create + [
        line
        for line in sql
        if line.startswith(keep) and "pg_backup" not in line and "pg_switch" not in line
        and "pg_create_restore_point" not in line
    ]  # fmt: skip


def scheduled_backup_manifest(
    spec: PostgresSpec, *, namespace: str, labels: dict[str, str]
) -> Manifest:
    """A base backup every ``backup_schedule_hours`` (six-field cron: seconds first)."""
    hours = spec.backup_schedule_hours
    every = "3" if hours >= 24 else f"*/{hours}"
    return {
        "apiVersion": API,
        "kind": "ScheduledBackup",
        "metadata": {"name": f"{spec.name}-base", "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": f"0 17 {every} * * *",
            "cluster": {"name": spec.name},
            "method": "barmanObjectStore",
            "backupOwnerReference": "self",
            "immediate": True,
        },
    }


def deploy_cnpg(
    platform: KubernetesPlatform,
    name: str,
    spec: PostgresSpec,
    *,
    parent: pulumi.Resource,
    operator: pulumi.Resource | None,
) -> PostgresService:
    ns = platform.namespace
    s = _secret_names(spec.name)
    labels = platform.labels(spec.name, "database")
    opts = platform.opts(parent)
    if operator is None:
        # Preflight: reading the CRD fails the preview, naming it, when the operator
        # (a documented prerequisite) is not installed.
        # CustomResource.get reads any object: the typed CustomResourceDefinition class
        # would import pulumi_kubernetes.apiextensions.v1 (its schema types) for one read.
        crd = CustomResource.get(
            f"{name}-crd", "apiextensions.k8s.io/v1", "CustomResourceDefinition", CNPG_CRD,
            opts=pulumi.ResourceOptions(parent=parent, provider=platform.provider),
        )  # fmt: skip
        operator = crd

    def secret(key: str, data: dict[str, pulumi.Input[str]], kind: str = "Opaque") -> Secret:
        return Secret(
            f"{name}-{key}",
            metadata=platform.meta(s[key], "database", spec.name),
            type=kind,
            string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
            opts=opts,
        )

    made = [
        secret("owner", {"username": pg.OWNER_ROLE,
                         "password": spec.role_passwords[pg.OWNER_ROLE]},
               "kubernetes.io/basic-auth"),
        secret("tls", {"tls.crt": spec.tls.cert_pem, "tls.key": spec.tls.key_pem},
               "kubernetes.io/tls"),
        secret("ca", {"ca.crt": spec.tls.ca_pem}),
    ]  # fmt: skip
    for key, role in (("app", pg.APP_ROLE), ("monitor", pg.MONITOR_ROLE),
                      ("backup", pg.BACKUP_ROLE)):  # fmt: skip
        made.append(secret(key, {"username": role, "password": spec.role_passwords[role]},
                           "kubernetes.io/basic-auth"))  # fmt: skip
    if spec.backup:
        made.append(secret("s3", {
            "ACCESS_KEY_ID": spec.backup.access_key_id,
            "ACCESS_SECRET_KEY": spec.backup.secret_access_key,
            "REGION": spec.backup.region,
        }))  # fmt: skip
    manifest = cluster_manifest(
        spec, namespace=ns, labels=labels, storage_class=platform.storage_class
    )
    cluster = CustomResource(
        name,
        api_version=API,
        kind="Cluster",
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        # The cluster holds the data: protected and retained in prod, like a PVC.
        opts=pulumi.ResourceOptions.merge(
            platform.opts(parent, protect=spec.protect),
            pulumi.ResourceOptions(depends_on=[*made, operator]),
        ),
    )
    platform.name_workload(spec.name, f"cluster/{manifest['metadata']['name']}")
    if spec.backup:
        sb = scheduled_backup_manifest(spec, namespace=ns, labels=labels)
        CustomResource(
            f"{name}-scheduled-backup",
            api_version=API,
            kind="ScheduledBackup",
            metadata=sb["metadata"],
            spec=sb["spec"],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[cluster])),
        )
    # One A record per instance: the stack's Prometheus scrapes each by DNS.
    Service(
        f"{name}-metrics",
        metadata=platform.meta(f"{spec.name}-metrics", "database", spec.name),
        spec={
            "clusterIP": "None",
            "selector": {"cnpg.io/cluster": spec.name},
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT}],
        },
        opts=opts,
    )
    return PostgresService(
        host=f"{spec.name}-rw",
        resources=[cluster],
        metrics_dns=f"{spec.name}-metrics",
        # The operator's collector exports the last backup's time (in-tree
        # barmanObjectStore backups, as cluster_manifest writes them).
        backup_metrics="cnpg" if spec.backup else None,
    )

"""Kubernetes' managed PostgreSQL: a CloudNativePG ``Cluster`` backed up by the Barman Cloud plugin.

The operator (CloudNativePG 1.30, installed or checked by :mod:`.cnpg_install`)
runs the instances, fails over, manages the roles; the Barman Cloud plugin
(:mod:`.barman`) archives WAL and base backups to the object store. What this
module writes:

- the ``Cluster``: instances, quorum-synchronous standby (prod), switchover for
  primary updates, WAL on its own volume (staging, prod), required pod
  anti-affinity, the operator's PodDisruptionBudget, TLS with the stack CA's
  certificate, superuser access disabled, declarative roles, pgaudit, pg_hba
  ending in a reject, and either ``initdb`` or a point-in-time ``recovery``;
- the ``ObjectStore`` and a ``ScheduledBackup`` at least daily (:mod:`.barman`),
  and a scheduled restore drill (:mod:`.drill`);
- Secrets for the roles, the object store and the certificate, each labelled
  ``cnpg.io/reload`` so the operator applies a change at once;
- a headless Service over the instances' metrics port, which the stack's
  Prometheus discovers by DNS (what the instances may reach: network.postgres_policies).

Its Secrets, the ObjectStore, the backup schedule and the Cluster's
NetworkPolicy are protected and retained with it, so ``pulumi destroy
--exclude-protected`` leaves a database that starts and archives; the Secrets
stay rotatable in place (see :func:`_secrets`).

Manifests are built by pure functions (:func:`cluster_manifest`, barman.py) and
checked against the operator's CRD schemas in tests/kubernetes/test_cnpg.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.core.v1 import Secret, Service

from components.configs import postgres as pg
from components.platforms.kubernetes import barman
from components.platforms.kubernetes.cnpg_install import prerequisites
from components.platforms.kubernetes.drill import deploy_drill
from components.spec import PostgresService, PostgresSpec

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = [
    "LOGIN_ROLES",
    "METRICS_PORT",
    "RELOAD_LABEL",
    "cluster_manifest",
    "deploy_cnpg",
    "dns_names",
]

API = "postgresql.cnpg.io/v1"
METRICS_PORT = 9187
RELOAD_LABEL = {"cnpg.io/reload": "true"}
"""CloudNativePG reloads a Secret it does not own at once only with this label
(cloudnative-pg internal/controller/cluster_predicates.go); without it a rotated
password waits for a later reconcile."""
LOGIN_ROLES = (pg.APP_ROLE, pg.MONITOR_ROLE)
"""The roles clients use: the app's group (its members log in) and the monitor.
pgBackRest's role (luna_backup) exists on Docker only: Barman Cloud connects
over the instance's local socket as postgres."""
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
        "s3": f"{cluster}-object-store",
        "tls": f"{cluster}-server-tls",
        "ca": f"{cluster}-server-ca",
    }


def cluster_manifest(
    spec: PostgresSpec, *, namespace: str, labels: dict[str, str], storage_class: str | None
) -> Manifest:
    """The ``Cluster`` object (no secret in it: every secret is referenced by name; the
    app's login role name, ``spec.app_login``, may be an Output)."""
    s = _secret_names(spec.name)
    body: Manifest = {
        "description": f"Luna {namespace}",
        "imageName": spec.image,
        "instances": spec.instances,
        "primaryUpdateStrategy": "unsupervised",
        # A minor upgrade or a restart promotes an updated standby first, instead of
        # restarting the primary in place (the CRD's default, ``restart``).
        "primaryUpdateMethod": "switchover",
        "enableSuperuserAccess": False,
        "enablePDB": True,
        "storage": _volume(spec.storage_gb, storage_class),
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
        "postgresql": _postgresql(spec),
        "certificates": {"serverTLSSecret": s["tls"], "serverCASecret": s["ca"]},
        "managed": {"roles": _roles(s, spec.app_login)},
    }
    if spec.wal_storage_gb:
        # WAL on its own volume: a burst of WAL (or an archiving outage) fills
        # it, not the data volume, and the two do not compete for I/O.
        body["walStorage"] = _volume(spec.wal_storage_gb, storage_class)
    if spec.backup:
        body["plugins"] = [barman.plugin_entry(spec)]
    if spec.restore_to_time:
        body |= barman.recovery(
            spec, owner_secret=s["owner"], database=pg.DATABASE, owner=pg.OWNER_ROLE
        )
    else:
        body["bootstrap"] = {
            "initdb": {
                "database": pg.DATABASE,
                "owner": pg.OWNER_ROLE,
                "secret": {"name": s["owner"]},
                "dataChecksums": True,
                # The app role's rights on what the owner's migrations create.
                "postInitApplicationSQL": _grants(audit=spec.audit),
            }
        }
    return {
        "apiVersion": API,
        "kind": "Cluster",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": labels},
        "spec": body,
    }


def _volume(size_gb: int, storage_class: str | None) -> Manifest:
    storage: Manifest = {"size": f"{size_gb}Gi"}
    if storage_class:
        storage["storageClass"] = storage_class
    return storage


def _postgresql(spec: PostgresSpec) -> Manifest:
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
    # "+luna_app": the group's members, the app's login roles (as on Docker, pg.pg_hba).
    logins = ",".join((pg.OWNER_ROLE, f"+{pg.APP_ROLE}", pg.MONITOR_ROLE))
    postgresql: Manifest = {
        "parameters": parameters,
        "pg_hba": [
            # hostssl only: a plaintext connection is refused.
            "hostnossl all all all reject",
            f"hostssl {pg.DATABASE} {logins} all scram-sha-256",
            # CloudNativePG appends `host all all all scram-sha-256` after these
            # rules (pkg/postgres/configuration.go): end with a reject, so no other
            # role or database is reachable over the network.
            "host all all all reject",
        ],
    }
    if spec.synchronous:
        # One standby confirms every commit, and the operator promotes only a
        # standby it knows holds every such commit (failoverQuorum: R + W > N),
        # else it waits (cloudnative-pg docs/src/failover.md, "Failover Quorum").
        postgresql["synchronous"] = {
            "method": "any",
            "number": 1,
            "dataDurability": "required",
            "failoverQuorum": True,
        }
    return postgresql


def _roles(s: dict[str, str], app_login: pulumi.Input[str]) -> list[Manifest]:
    """The app's current login role (a member of the group) and the monitor.

    When a rotation renames the app's login role, the previous one leaves this
    list, and CloudNativePG leaves a role that is in the database but not in the
    spec untouched (``roleIgnore`` in evaluateNextRoleActions,
    cloudnative-pg internal/management/controller/roles/roles.go): it keeps its
    LOGIN and password, so the Deployment's old pods keep logging in until the
    rolling update has replaced them. The operator never drops it by itself; the
    rotation runbook prunes it (docs/runbooks/rotation.md). The group ``luna_app``
    is not declared: it is created NOLOGIN at bootstrap (:func:`_grants`), and
    declaring it ``login: false`` would make the operator take the LOGIN away from
    a cluster set up before the group (roleUpdate) while pods still use it.
    """
    base: Manifest = {
        "ensure": "present",
        "login": True,
        "superuser": False,
        "createdb": False,
        "createrole": False,
        "replication": False,
        "inherit": True,
    }
    return [
        {"name": app_login, **base, "inRoles": [pg.APP_ROLE], "passwordSecret": {"name": s["app"]}},
        {
            "name": pg.MONITOR_ROLE,
            **base,
            "inRoles": ["pg_monitor"],
            "passwordSecret": {"name": s["monitor"]},
        },
    ]


def _grants(*, audit: bool) -> list[str]:
    """The owner's grants, run once at bootstrap in the app database.

    ``managed.roles`` are reconciled after bootstrap, so the roles are created
    here first (without login or password); the operator then adopts them and
    sets their attributes and passwords from their Secrets. The auditor role
    never logs in and is not managed: it only carries the grants pgaudit reads.
    """
    sql = pg.roles_sql(audit=audit).splitlines()
    keep = ("GRANT", "REVOKE", "ALTER DEFAULT")
    create = [f"CREATE ROLE {r} NOLOGIN;" for r in LOGIN_ROLES]
    if audit:
        create.append(f"CREATE ROLE {pg.AUDITOR_ROLE} NOLOGIN NOINHERIT;")
    # No luna_backup here (LOGIN_ROLES): its grants go, and it leaves the CONNECT list.
    lines = [line.replace(f", {pg.BACKUP_ROLE}", "") for line in sql if line.startswith(keep)]
    return create + [line for line in lines if not line.endswith(f"TO {pg.BACKUP_ROLE};")]


def deploy_cnpg(
    platform: KubernetesPlatform,
    name: str,
    spec: PostgresSpec,
    *,
    parent: pulumi.Resource,
    operator: Sequence[pulumi.Resource],
) -> PostgresService:
    """The Cluster and what it reads; ``operator``: what installs the operator and
    the plugin (empty: they are prerequisites, checked here)."""
    ns = platform.namespace
    labels = platform.labels(spec.name, "database")
    ready = list(operator) or prerequisites(platform, name, parent=parent)
    secrets = _secrets(platform, name, spec, parent=parent)
    # What the Cluster reads is kept with it: protected and retained in prod.
    kept = platform.opts(parent, protect=spec.protect)
    needs: list[pulumi.Resource] = [*secrets.values(), *ready]
    if spec.backup:
        store = barman.object_store_manifest(
            spec, namespace=ns, labels=labels, secret=_secret_names(spec.name)["s3"]
        )
        needs.append(_custom(f"{name}-object-store", store, kept, after=ready))
    manifest = cluster_manifest(
        spec, namespace=ns, labels=labels, storage_class=platform.storage_class
    )
    # A new bootstrap (luna:restoreToTime) is a new Cluster of the same name: the
    # old one goes first (docs/runbooks/backup-restore.md; prod must unprotect it).
    replace = pulumi.ResourceOptions(
        replace_on_changes=["spec.bootstrap"], delete_before_replace=True
    )
    cluster = _custom(name, manifest, pulumi.ResourceOptions.merge(kept, replace), after=needs)
    platform.name_workload(spec.name, f"cluster/{manifest['metadata']['name']}")
    if spec.backup:
        sb = barman.scheduled_backup_manifest(spec, namespace=ns, labels=labels)
        _custom(f"{name}-scheduled-backup", sb, kept, after=[cluster])
    if spec.backup and spec.drill_hours:
        conf = store["spec"]["configuration"]
        deploy_drill(platform, name, spec, conf, barman.server_name(spec), parent=parent)
    # One A record per instance: the stack's Prometheus scrapes each by DNS.
    Service(
        f"{name}-metrics",
        metadata=platform.meta(f"{spec.name}-metrics", "database", spec.name),
        spec={
            "clusterIP": "None",
            "selector": {"cnpg.io/cluster": spec.name},
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT}],
        },
        opts=platform.opts(parent),
    )
    return PostgresService(
        host=f"{spec.name}-rw",
        # Clients wait for the Cluster and for their role's Secret: a rotated
        # password reaches the server (reload label) before the app rolls.
        resources=[cluster, secrets["app"], secrets["owner"]],
        metrics_dns=f"{spec.name}-metrics",
        # The plugin's metrics, through each instance's exporter (barman.py).
        backup_metrics="cnpg" if spec.backup else None,
    )


def _custom(
    name: str, manifest: Manifest, opts: pulumi.ResourceOptions, *, after: Sequence[pulumi.Resource]
) -> CustomResource:
    return CustomResource(
        name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(after))),
    )


def _secrets(
    platform: KubernetesPlatform, name: str, spec: PostgresSpec, *, parent: pulumi.Resource
) -> dict[str, Secret]:
    """Every Secret the Cluster reads: labelled for reload, kept with the Cluster.

    Managed by the platform's data provider (``enableSecretMutable``): a rotated
    password or certificate is an in-place update, which protection allows, and
    the reload label makes CloudNativePG apply it at once. Under the default
    provider the same change is a replacement, which a protected Secret refuses
    (tests/engine/facts.py; tests/test_day2.py test_6, test_11).
    """
    names = _secret_names(spec.name)

    def secret(key: str, data: dict[str, pulumi.Input[str]], kind: str = "Opaque") -> Secret:
        meta = platform.meta(names[key], "database", spec.name)
        meta["labels"] |= RELOAD_LABEL
        return Secret(
            f"{name}-{key}",
            metadata=meta,
            type=kind,
            string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
            opts=platform.opts(parent, protect=spec.protect, mutable_secret=True),
        )

    def login(role: str) -> dict[str, pulumi.Input[str]]:
        return {"username": role, "password": spec.role_passwords[role]}

    made = {
        "owner": secret("owner", login(pg.OWNER_ROLE), "kubernetes.io/basic-auth"),
        # CloudNativePG wants the Secret's username to be the role's name (getPassword,
        # internal/management/controller/roles/runnable.go).
        "app": secret(
            "app",
            {"username": spec.app_login, "password": spec.role_passwords[pg.APP_ROLE]},
            "kubernetes.io/basic-auth",
        ),
        "monitor": secret("monitor", login(pg.MONITOR_ROLE), "kubernetes.io/basic-auth"),
        "tls": secret("tls", {"tls.crt": spec.tls.cert_pem, "tls.key": spec.tls.key_pem},
                      "kubernetes.io/tls"),
        "ca": secret("ca", {"ca.crt": spec.tls.ca_pem}),
    }  # fmt: skip
    if spec.backup:
        made["s3"] = secret("s3", {
            "ACCESS_KEY_ID": spec.backup.access_key_id,
            "ACCESS_SECRET_KEY": spec.backup.secret_access_key,
            "REGION": spec.backup.region,
        })  # fmt: skip
    return made

"""Kubernetes backups through the Barman Cloud plugin (cloudnative-pg/plugin-barman-cloud).

The in-tree ``spec.backup.barmanObjectStore`` is deprecated since CloudNativePG
1.26; its successor is the plugin, which runs as a sidecar of every instance
and reads one ``ObjectStore`` (barmancloud.cnpg.io/v1). What this module builds,
as pure functions checked against the CRDs in tests/kubernetes/test_cnpg.py:

- :func:`object_store_manifest`: where WAL and base backups go, with which
  credentials, compression and server-side encryption (SSE-KMS under the
  stack's key with ``backupKmsKeyId``), and the retention;
- :func:`plugin_entry`: the Cluster's ``spec.plugins`` item that makes the
  plugin the WAL archiver (``isWALArchiver``) under a server name;
- :func:`scheduled_backup_manifest`: base backups with ``method: plugin``;
- :func:`recovery`: the bootstrap and ``externalClusters`` of a Cluster restored
  from the object store to a point in time (``luna:restoreToTime``).

Field names: plugin-barman-cloud ``api/v1/objectstore_types.go`` (the CRD) and
its docs ``web/docs/usage.md`` / ``web/docs/recovery.md`` (the ``barmanObjectName``
and ``serverName`` plugin parameters).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from components.spec import PostgresSpec

__all__ = [
    "OBJECT_STORE_API",
    "PLUGIN",
    "SOURCE",
    "object_store_manifest",
    "object_store_name",
    "plugin_entry",
    "recovery",
    "scheduled_backup_manifest",
    "server_name",
]

Manifest = dict[str, Any]

PLUGIN: Final = "barman-cloud.cloudnative-pg.io"
"""The plugin's name (plugin-barman-cloud internal/cnpgi/metadata/constants.go)."""
OBJECT_STORE_API: Final = "barmancloud.cnpg.io/v1"
SOURCE: Final = "origin"
"""The ``externalClusters`` entry a restored Cluster recovers from."""


def object_store_name(cluster: str) -> str:
    return f"{cluster}-backups"


def server_name(spec: PostgresSpec) -> str:
    """The folder the Cluster archives into, under the bucket's path.

    A restored Cluster writes a new lineage (``<name>-pitr-<time>``): the plugin
    refuses to archive into a folder that already holds another cluster's WAL,
    and the origin's backups must stay as they were.
    """
    if spec.restore_to_time is None:
        return spec.name
    when = datetime.fromisoformat(spec.restore_to_time).astimezone(UTC)
    return f"{spec.name}-pitr-{when:%Y%m%dt%H%M%S}z"


def object_store_manifest(
    spec: PostgresSpec, *, namespace: str, labels: dict[str, str], secret: str
) -> Manifest:
    """The ``ObjectStore``: S3 target, credentials by Secret reference, retention."""
    assert spec.backup is not None
    b = spec.backup
    ref = {"name": secret}
    return {
        "apiVersion": OBJECT_STORE_API,
        "kind": "ObjectStore",
        "metadata": {
            "name": object_store_name(spec.name),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": {
            "retentionPolicy": f"{b.retention_days}d",
            "configuration": {
                "destinationPath": f"s3://{b.bucket}{b.path}",
                "endpointURL": f"https://{b.endpoint}",
                "s3Credentials": {
                    "accessKeyId": {**ref, "key": "ACCESS_KEY_ID"},
                    "secretAccessKey": {**ref, "key": "ACCESS_SECRET_KEY"},
                    "region": {**ref, "key": "REGION"},
                },
                "wal": {"compression": "gzip", "maxParallel": 2, **_sse(b.kms_key_id, wal=True)},
                "data": {"compression": "gzip", "jobs": 2, **_sse(b.kms_key_id, wal=False)},
            },
        },
    }


def _sse(kms_key_id: str | None, *, wal: bool) -> Manifest:
    """Server-side encryption of every object: Barman Cloud has no client-side cipher.

    With a key id: SSE-KMS under the stack's key. The CRD's ``encryption`` takes
    only the algorithm (AES256 | aws:kms), so the key id goes through the
    commands' extra arguments, which barman-cloud >= 3.5 accepts as
    ``--sse-kms-key-id`` (barman/clients/cloud_backup.py, cloud_walarchive.py;
    the plugin's sidecar ships barman 3.19, containers/sidecar-requirements.in).
    One ``--flag=value`` item: cloudnative-pg/barman-cloud pkg/api/config.go
    ``appendAdditionalCommandArgs`` dedups on the text before ``=``.
    Without one: SSE-S3 (AES256) under the store's own key (docs/kubernetes.md).
    """
    if kms_key_id is None:
        return {"encryption": "AES256"}
    extra = "archiveAdditionalCommandArgs" if wal else "additionalCommandArgs"
    return {"encryption": "aws:kms", extra: [f"--sse-kms-key-id={kms_key_id}"]}


def plugin_entry(spec: PostgresSpec) -> Manifest:
    """``spec.plugins[]``: the plugin archives WAL and takes the base backups."""
    return {
        "name": PLUGIN,
        "isWALArchiver": True,
        "parameters": {
            "barmanObjectName": object_store_name(spec.name),
            "serverName": server_name(spec),
        },
    }


def recovery(spec: PostgresSpec, *, owner_secret: str, database: str, owner: str) -> Manifest:
    """``bootstrap`` and ``externalClusters`` of a point-in-time restore.

    The source is the origin's folder (``serverName`` = the cluster's name) in the
    same ObjectStore; CloudNativePG picks the newest base backup before the target
    and replays WAL up to it (docs/src/recovery.md, "Point in time recovery").
    """
    assert spec.restore_to_time is not None
    return {
        "bootstrap": {
            "recovery": {
                "source": SOURCE,
                "database": database,
                "owner": owner,
                "secret": {"name": owner_secret},
                "recoveryTarget": {"targetTime": spec.restore_to_time},
            }
        },
        "externalClusters": [
            {
                "name": SOURCE,
                "plugin": {
                    "name": PLUGIN,
                    "parameters": {
                        "barmanObjectName": object_store_name(spec.name),
                        "serverName": spec.name,
                    },
                },
            }
        ],
    }


def scheduled_backup_manifest(
    spec: PostgresSpec, *, namespace: str, labels: dict[str, str]
) -> Manifest:
    """A base backup every ``backup_schedule_hours`` (six-field cron: seconds first)."""
    hours = spec.backup_schedule_hours
    every = "3" if hours >= 24 else f"*/{hours}"
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "ScheduledBackup",
        "metadata": {"name": f"{spec.name}-base", "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": f"0 17 {every} * * *",
            "cluster": {"name": spec.name},
            "method": "plugin",
            "pluginConfiguration": {"name": PLUGIN},
            "backupOwnerReference": "self",
            "immediate": True,
        },
    }

"""Elasticsearch bootstrap: users, least-privilege roles, and retention per index.

Two index families per stack (docs/logging.md):

- ``luna-<stack>-logs-*``: operational logs, redacted, kept ``retention_days``.
- ``luna-<stack>-audit-*``: who touched which record (pgaudit, the edge), kept
  ``audit_retention_days`` (HIPAA 164.316(b)(2): six years).

Roles: the shipper (Logstash) may only add documents, to both; the operator
role may only read both. Nobody but the ``elastic`` superuser (break-glass)
and ILM itself can delete an audit document or index.

Off-site copy (both platforms, with backups): a snapshot repository of type
``s3`` in the stack's object store, and a daily snapshot lifecycle (SLM) policy
for the audit indices that keeps every snapshot at least six years
(:func:`snapshot_repository`, :func:`slm_policy`). The calls follow Elastic's API
reference: "Create or update a snapshot repository" (``PUT /_snapshot/<repo>``,
type ``s3``, settings ``bucket``, ``client``, ``base_path``,
``server_side_encryption``: docs/reference/snapshot-restore/repository-s3.asciidoc)
and "Create or update a snapshot lifecycle policy" (``PUT /_slm/policy/<id>``:
``schedule``, ``name``, ``repository``, ``config.indices``,
``config.include_global_state``, ``retention.expire_after``/``min_count``/``max_count``:
docs/reference/slm/apis/slm-put.asciidoc). The S3 client's keys are secure
settings, so they live in each node's keystore (:func:`keystore_command`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "AUDIT_RETENTION_MIN_DAYS",
    "OPERATOR_ROLE",
    "OPERATOR_USER",
    "S3_CLIENT",
    "S3_KEY_DIR",
    "SLM_POLICY",
    "SNAPSHOT_REPOSITORY",
    "WRITER_ROLE",
    "SnapshotStore",
    "audit_index_pattern",
    "index_pattern",
    "keystore_command",
    "roles",
    "s3_client_settings",
    "setup_script",
    "slm_policy",
    "snapshot_repository",
]

WRITER_ROLE: Final = "luna_logs_writer"
OPERATOR_ROLE: Final = "luna_operator"
OPERATOR_USER: Final = "luna_ops"
"""The named account operators sign in to Kibana with (role ``luna_operator``);
``elastic`` stays break-glass only (docs/logging.md)."""

# curl reads the credentials from a file (-K) and every body from stdin
# (--data-binary @-): a password in curl's arguments is readable by every user
# of the host in /proc/<pid>/cmdline for as long as the call runs. printf is a
# shell builtin, so no process ever carries the password in its arguments.
_CURL_AUTH: Final = """umask 077
auth="$(mktemp)"
trap 'rm -f "$auth"' EXIT
printf 'user = "elastic:%s"\\n' "$ELASTIC_PASSWORD" > "$auth"
"""

AUDIT_RETENTION_MIN_DAYS: Final = 6 * 365
SNAPSHOT_REPOSITORY: Final = "luna-backups"
SLM_POLICY: Final = "luna-audit-daily"
S3_CLIENT: Final = "luna"
S3_KEY_DIR: Final = "/usr/share/elasticsearch/config/luna-s3"
"""Where the node finds the S3 client's two keys, as secret files, to load its keystore."""
SNAPSHOT_MIN_DAYS: Final = 2200
"""Six calendar years (2191 or 2192 days) and a margin: a snapshot outlives the
audit index it copies (HIPAA 164.316(b)(2))."""


@dataclass(frozen=True)
class SnapshotStore:
    """The object store the snapshots go to (the keys reach the nodes as files)."""

    bucket: str
    endpoint: str
    """``host`` or ``host:port``; always HTTPS."""
    base_path: str
    """The folder in the bucket, e.g. ``luna-prod/elasticsearch`` (no leading slash)."""
    path_style: bool = False


def s3_client_settings(store: SnapshotStore) -> dict[str, str]:
    """Node settings of the ``luna`` S3 client (repository-s3's client settings)."""
    return {
        f"s3.client.{S3_CLIENT}.endpoint": store.endpoint,
        f"s3.client.{S3_CLIENT}.protocol": "https",
        f"s3.client.{S3_CLIENT}.path_style_access": "true" if store.path_style else "false",
    }


def keystore_command(entrypoint: tuple[str, ...]) -> tuple[str, ...]:
    """Load the S3 keys from :data:`S3_KEY_DIR` into the node's keystore, then start.

    Secure settings cannot come from the environment or elasticsearch.yml; the
    image's entrypoint creates the keystore only when none exists. The keys are
    read from files on stdin (``-x``), never from a command line.
    """
    load = "; ".join(
        f"bin/elasticsearch-keystore add -f -x s3.client.{S3_CLIENT}.{key} < {S3_KEY_DIR}/{key}"
        for key in ("access_key", "secret_key")
    )
    script = (
        "set -eu; [ -f config/elasticsearch.keystore ] || bin/elasticsearch-keystore create; "
        f"{load}; exec {shlex.join(entrypoint)}"
    )
    return ("/bin/sh", "-c", script)


def snapshot_repository(store: SnapshotStore) -> dict[str, Any]:
    """``PUT /_snapshot/luna-backups``: an ``s3`` repository in the stack's bucket."""
    return {
        "type": "s3",
        "settings": {
            "bucket": store.bucket,
            "client": S3_CLIENT,
            "base_path": store.base_path,
            "server_side_encryption": True,
        },
    }


def slm_policy(stack: str, audit_retention_days: int) -> dict[str, Any]:
    """``PUT /_slm/policy/luna-audit-daily``: the audit indices, daily, kept >= 6 years."""
    keep = max(audit_retention_days, SNAPSHOT_MIN_DAYS)
    return {
        # Daily at 01:30 UTC (SLM's cron has a seconds field).
        "schedule": "0 30 1 * * ?",
        "name": f"<luna-{stack}-audit-{{now/d}}>",
        "repository": SNAPSHOT_REPOSITORY,
        "config": {
            "indices": [audit_index_pattern(stack)],
            "include_global_state": False,
            "ignore_unavailable": True,
        },
        # One a day for the whole period, and never fewer than a week's even if
        # the clock or a restore makes every snapshot look expired.
        "retention": {"expire_after": f"{keep}d", "min_count": 7, "max_count": keep + 30},
    }


def index_pattern(stack: str) -> str:
    return f"luna-{stack}-logs-*"


def audit_index_pattern(stack: str) -> str:
    return f"luna-{stack}-audit-*"


def roles(stack: str) -> dict[str, dict[str, Any]]:
    """The role definitions, as the security API takes them."""
    both = [index_pattern(stack), audit_index_pattern(stack)]
    return {
        WRITER_ROLE: {
            "cluster": ["monitor"],
            "indices": [
                {
                    "names": both,
                    # Add documents and the day's index; never read, replace,
                    # update or delete one (the output uses action => create).
                    "privileges": ["create_doc", "create_index", "auto_configure"],
                }
            ],
        },
        OPERATOR_ROLE: {
            "cluster": [],
            "indices": [{"names": both, "privileges": ["read", "view_index_metadata"]}],
            # Kibana: search and dashboards, read-only; data views to find them.
            "applications": [
                {
                    "application": "kibana-.kibana",
                    "privileges": [
                        "feature_discover.read",
                        "feature_dashboard.read",
                        "feature_indexPatterns.all",
                    ],
                    "resources": ["*"],
                }
            ],
        },
    }


def _policy(delete_after_days: int, *, readonly_after_days: int | None = None) -> dict[str, Any]:
    phases: dict[str, Any] = {"hot": {"min_age": "0ms", "actions": {}}}
    if readonly_after_days is not None:
        phases["warm"] = {"min_age": f"{readonly_after_days}d", "actions": {"readonly": {}}}
    phases["delete"] = {"min_age": f"{delete_after_days}d", "actions": {"delete": {}}}
    return {"policy": {"phases": phases}}


def _template(pattern: str, policy: str) -> dict[str, Any]:
    return {
        "index_patterns": [pattern],
        "template": {"settings": {"index.lifecycle.name": policy, "number_of_replicas": 0}},
    }


def setup_script(
    *,
    stack: str,
    elasticsearch_url: str,
    ca_file: str,
    retention_days: int,
    audit_retention_days: int,
    snapshots: SnapshotStore | None = None,
) -> str:
    """A POSIX sh script run once per deploy with the Elasticsearch image (it ships curl).

    Passwords come from the environment (ELASTIC_PASSWORD, KIBANA_PASSWORD,
    LOGSTASH_PASSWORD, OPERATOR_PASSWORD) and never reach a command line; they are
    generated without quotes or backslashes, so the shell can place them in JSON.
    Every call is an idempotent PUT.
    Every call verifies Elasticsearch's certificate against ``ca_file`` (curl
    checks the chain and the host name by default; ``--cacert`` replaces its roots).
    """
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    if audit_retention_days < AUDIT_RETENTION_MIN_DAYS:
        raise ValueError(f"audit_retention_days must be at least {AUDIT_RETENTION_MIN_DAYS}")
    role_calls = "\n".join(
        f"put PUT /_security/role/{name} '{json.dumps(body)}'"
        for name, body in roles(stack).items()
    )
    # The day's audit index is written for a day; from then on it is read-only
    # for everyone, the superuser included, until ILM deletes it.
    audit_policy = _policy(audit_retention_days, readonly_after_days=2)
    audit_template = _template(audit_index_pattern(stack), "luna-audit")
    snapshot_calls = ""
    if snapshots is not None:
        repo = json.dumps(snapshot_repository(snapshots))
        policy = json.dumps(slm_policy(stack, audit_retention_days))
        snapshot_calls = (
            f"put PUT /_snapshot/{SNAPSHOT_REPOSITORY} '{repo}'\n"
            # Elasticsearch writes and reads a test blob: credentials, bucket, SSE.
            f"put POST /_snapshot/{SNAPSHOT_REPOSITORY}/_verify '{{}}'\n"
            f"put PUT /_slm/policy/{SLM_POLICY} '{policy}'\n"
        )
    return f"""#!/bin/sh
# Generated by components/configs/elasticsearch.py
set -eu
es="{elasticsearch_url}"
ca="{ca_file}"
{_CURL_AUTH}put() {{
  printf '%s' "$3" | curl -fsS --cacert "$ca" -K "$auth" -H 'Content-Type: application/json' \\
    -X "$1" "$es$2" --data-binary @- > /dev/null
  echo "es-setup: $1 $2"
}}
until curl -fsS --cacert "$ca" -K "$auth" \\
    "$es/_cluster/health?wait_for_status=yellow&timeout=30s" > /dev/null; do
  echo "es-setup: waiting for Elasticsearch"; sleep 5
done
put POST /_security/user/kibana_system/_password "{{\\"password\\":\\"$KIBANA_PASSWORD\\"}}"
{role_calls}
put PUT /_security/user/luna_logstash \\
  "{{\\"password\\":\\"$LOGSTASH_PASSWORD\\",\\"roles\\":[\\"{WRITER_ROLE}\\"]}}"
put PUT /_security/user/{OPERATOR_USER} \\
  "{{\\"password\\":\\"$OPERATOR_PASSWORD\\",\\"roles\\":[\\"{OPERATOR_ROLE}\\"]}}"
put PUT /_ilm/policy/luna-logs '{json.dumps(_policy(retention_days))}'
put PUT /_ilm/policy/luna-audit '{json.dumps(audit_policy)}'
put PUT /_index_template/luna-logs '{json.dumps(_template(index_pattern(stack), "luna-logs"))}'
put PUT /_index_template/luna-audit '{json.dumps(audit_template)}'
{snapshot_calls}echo "es-setup: done"
"""

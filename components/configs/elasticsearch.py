"""Elasticsearch bootstrap: users, least-privilege roles, and retention per index.

Two index families per stack (docs/logging.md):

- ``luna-<stack>-logs-*``: operational logs, redacted, kept ``retention_days``.
- ``luna-<stack>-audit-*``: who touched which record (pgaudit, the edge), kept
  ``audit_retention_days`` (HIPAA 164.316(b)(2): six years).

Roles: the shipper (Logstash) may only add documents, to both; the operator
role may only read both. Nobody but the ``elastic`` superuser (break-glass)
and ILM itself can delete an audit document or index.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = [
    "AUDIT_RETENTION_MIN_DAYS",
    "OPERATOR_ROLE",
    "OPERATOR_USER",
    "WRITER_ROLE",
    "audit_index_pattern",
    "index_pattern",
    "roles",
    "setup_script",
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
echo "es-setup: done"
"""

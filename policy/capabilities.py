"""Safeguards that other issues deliver, and whether each is in main yet.

A policy that depends on one of these is ADVISORY (reported, never blocking) and
names the capability in its description until the capability lands. When it is in
main, flip its ``landed`` to ``True``: that one line makes every policy that waits
for it MANDATORY. docs/compliance.md lists which policy waits for which.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALERTMANAGER",
    "AUDIT_INDEX",
    "DIGEST_PINS",
    "LEAST_PRIVILEGE_DB",
    "OFFSITE_WAL",
    "PAGING_RECEIVER",
    "PGAUDIT",
    "POD_SECURITY_ENFORCE",
    "RESTORE_DRILL",
    "TLS_ELASTICSEARCH",
    "TLS_POSTGRES",
    "TLS_REDIS",
    "Capability",
]


@dataclass(frozen=True)
class Capability:
    what: str
    landed: bool


TLS_POSTGRES = Capability("TLS to PostgreSQL (issue #10)", landed=True)
TLS_REDIS = Capability("TLS to Redis (issue #10)", landed=True)
TLS_ELASTICSEARCH = Capability("TLS to Elasticsearch (issue #10)", landed=True)
POD_SECURITY_ENFORCE = Capability("Pod Security `restricted` enforced (issue #10)", landed=True)
LEAST_PRIVILEGE_DB = Capability("least-privilege PostgreSQL roles (issue #10)", landed=True)
PGAUDIT = Capability("pgaudit (issue #11)", landed=True)
AUDIT_INDEX = Capability("the audit index and its retention (issue #11)", landed=True)
OFFSITE_WAL = Capability("WAL archiving off the host (issue #12)", landed=True)
RESTORE_DRILL = Capability("a scheduled restore drill (issue #12)", landed=False)
PAGING_RECEIVER = Capability("paging receiver (issue #13)", landed=True)
ALERTMANAGER = Capability("Alertmanager routes (issue #13)", landed=True)
# Not another issue: the pipeline does not resolve tags to digests yet.
DIGEST_PINS = Capability("image digests resolved by the pipeline", landed=False)

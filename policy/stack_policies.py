"""Policies over the whole stack (the engine's ``AnalyzeStack`` call): invariants
that span resources, such as "every PHI service is isolated" or "every alert
reaches a receiver"."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from pulumi_policy import (
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from . import capabilities as cap
from .controls import control, stack_policy
from .evidence import (
    DOCKER_CONTAINER,
    env_pairs,
    get,
    ilm_policies,
    items,
    pod_spec,
    secret_file_paths,
    service_of,
    stack_of,
    strings,
)

__all__ = ["STACK_POLICIES"]

PHI_SERVICES = ("database", "database-backup", "cache", "elasticsearch")
"""Services that keep health data at rest (rows, dumps, sessions, logs)."""
AUDIT_MIN_DAYS = 2190  # six years: HIPAA 164.316(b)(2)(i)
CNPG_CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"


def _stack(args: StackValidationArgs) -> str:
    return next((stack_of(r.urn) for r in args.resources), "")


def _texts(r: PolicyResource) -> Iterator[str]:
    """String values and mapping keys (CloudNativePG takes parameters as keys)."""
    yield from strings(r.props)
    parameters = get(r.props, "spec", "postgresql", "parameters")
    if isinstance(parameters, Mapping):
        yield from (str(k) for k in parameters)


def _databases(args: StackValidationArgs) -> list[PolicyResource]:
    return [
        r
        for r in args.resources
        if r.resource_type == CNPG_CLUSTER
        or (
            service_of(r.resource_type, r.props) == "database"
            and (r.resource_type == DOCKER_CONTAINER or pod_spec(r.resource_type, r.props))
        )
    ]


# --- HIPAA 164.312(a)(1): isolation of PHI services ---------------------------
def _phi_isolation(args: StackValidationArgs, report: ReportViolation) -> None:
    phi = set(args.get_config().get("phiServices") or PHI_SERVICES)
    networks = {
        get(r.props, "name"): r
        for r in args.resources
        if r.resource_type == "docker:index/network:Network"
    }
    selectors = [
        get(r.props, "spec", "podSelector", "matchLabels") or {}
        for r in args.resources
        if r.resource_type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
    ]
    for r in args.resources:
        service = service_of(r.resource_type, r.props)
        if r.resource_type == CNPG_CLUSTER:
            # CloudNativePG labels its instance pods cnpg.io/cluster=<name>.
            service, cluster = "database", get(r.props, "metadata", "name")
            # Its pods also carry the Cluster's inheritedMetadata labels (the stack's).
            inherited = get(r.props, "spec", "inheritedMetadata", "labels") or {}
            pods = {"cnpg.io/cluster": cluster, **inherited}
            found_pods: tuple[dict[str, str], Any] | None = (pods, None)
        else:
            found_pods = pod_spec(r.resource_type, r.props)
        if service not in phi:
            continue
        if r.resource_type == DOCKER_CONTAINER:
            published = bool(items(get(r.props, "ports")))
            for attachment in items(get(r.props, "networksAdvanced")):
                name = str(get(attachment, "name"))
                net = networks.get(name)
                # The one exception: the database's (and its backup loop's) own
                # egress-only network, which carries WAL and base backups to the
                # off-site store (issue #12); no port is published on it and no
                # other service joins it.
                offsite = service in ("database", "database-backup") and name.endswith(
                    f"-{service}-edge"
                )
                if offsite and not published:
                    continue
                if net is None or get(net.props, "internal") is not True:
                    report(
                        f"PHI service {service} joins network {get(attachment, 'name')}, "
                        "which is not internal-only",
                        r.urn,
                    )
            continue
        if not found_pods:
            continue
        labels = found_pods[0]
        # The stack-wide default-deny selects every pod ({}); a PHI service needs its own.
        own = [s for s in selectors if s and all(labels.get(k) == v for k, v in s.items())]
        if not own:
            report(f"PHI service {service} has no NetworkPolicy of its own", r.urn)


# --- HIPAA 164.312(a)(1): no client connects as the superuser ------------------
_USER_VARS = {"PGUSER", "DATA_SOURCE_USER", "DB_USER", "DATABASE_USER", "POSTGRES_USER"}
_PG_URL_USER = re.compile(r"postgres(?:ql)?://([^:@/\s]+)[:@]")


def _no_superuser(args: StackValidationArgs, report: ReportViolation) -> None:
    databases = _databases(args)
    if not databases:
        return
    superuser = "postgres"
    for db in databases:
        for name, value in env_pairs(db.resource_type, db.props):
            if name == "POSTGRES_USER" and isinstance(value, str):
                superuser = value
    for r in args.resources:
        if r in databases:
            continue
        users = [
            v
            for n, v in env_pairs(r.resource_type, r.props)
            if n in _USER_VARS and isinstance(v, str)
        ]
        users += [u for text in strings(r.props) for u in _PG_URL_USER.findall(text)]
        if superuser in users:
            report(f"{r.name} connects as the database superuser {superuser!r}", r.urn)


# --- HIPAA 164.312(b): audit controls -----------------------------------------
def _db_audit(args: StackValidationArgs, report: ReportViolation) -> None:
    databases = _databases(args)
    if not databases:
        return
    texts = [t for r in args.resources for t in _texts(r)]
    loaded = any(re.search(r"shared_preload_libraries\W[^\n]*pgaudit", t) for t in texts) or any(
        "pgaudit"
        in [str(x) for x in items(get(r.props, "spec", "postgresql", "shared_preload_libraries"))]
        for r in databases
    )
    configured = any("pgaudit.log" in t for t in texts)
    # CloudNativePG adds pgaudit to shared_preload_libraries itself once pgaudit.* is set.
    loaded = loaded or any(db.resource_type == CNPG_CLUSTER for db in databases)
    if not (loaded and configured):
        report(
            "the database runs without pgaudit (shared_preload_libraries, pgaudit.log)",
            databases[0].urn,
        )


def _ilm(args: StackValidationArgs) -> list[tuple[PolicyResource, str, float | None]]:
    return [
        (r, name, days)
        for r in args.resources
        for text in strings(r.props)
        for name, days in ilm_policies(text)
    ]


def _audit_retention(args: StackValidationArgs, report: ReportViolation) -> None:
    if _stack(args) != "prod":
        return
    found = _ilm(args)
    if not found:
        return  # no log store in this stack
    audit = [(r, n, d) for r, n, d in found if "audit" in n]
    if not audit:
        report("prod keeps logs but has no audit index policy", found[0][0].urn)
    for r, name, days in audit:
        if days is not None and days < AUDIT_MIN_DAYS:
            report(
                f"audit index policy {name} deletes after {days:g} days "
                f"(< {AUDIT_MIN_DAYS}, six years)",
                r.urn,
            )


# --- HIPAA 164.308(a)(7): contingency plan ------------------------------------
_OFFSITE = re.compile(
    r"repo\d+-type\s*=\s*s3|barman-cloud-wal-archive|archive_command\s*=.*(pgbackrest|barman)"
)


def _offsite(args: StackValidationArgs, report: ReportViolation) -> None:
    databases = _databases(args)
    if _stack(args) not in ("staging", "prod") or not databases:
        return
    for db in databases:
        if db.resource_type == CNPG_CLUSTER and get(
            db.props, "spec", "backup", "barmanObjectStore"
        ):
            return
    if any(_OFFSITE.search(t) for r in args.resources for t in strings(r.props)):
        return
    report("the database archives no WAL and backs up nothing off the host", databases[0].urn)


def _restore_drill(args: StackValidationArgs, report: ReportViolation) -> None:
    databases = _databases(args)
    if _stack(args) not in ("staging", "prod") or not databases:
        return
    for r in args.resources:
        scheduled = r.resource_type == "kubernetes:batch/v1:CronJob" or (
            r.resource_type == DOCKER_CONTAINER
        )
        if scheduled and "drill" in (service_of(r.resource_type, r.props) + r.name):
            return
    report("no restore drill is scheduled", databases[0].urn)


# --- Operations: alerts reach a person -----------------------------------------
def _yaml_docs(args: StackValidationArgs, *keys: str) -> list[tuple[PolicyResource, Any]]:
    found = []
    for r in args.resources:
        for text in strings(r.props):
            if not all(f"{k}:" in text for k in keys):
                continue
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if isinstance(doc, dict) and all(k in doc for k in keys):
                found.append((r, doc))
    return found


_PAGERS = ("pagerduty_configs", "opsgenie_configs")
_MASKED = PolicyConfigSchema(properties={"secretsMasked": {"type": "boolean", "default": False}})


def _unseen_alertmanager(args: StackValidationArgs) -> None:
    """Alertmanager's config holds receiver secrets, so it ships as a secret file. The
    engine shows a policy its content at preview; a render masks it, and then the
    policy cannot judge (it says so rather than report a violation it cannot see)."""
    if not args.get_config().get("secretsMasked"):
        return
    masked = [
        path
        for r in args.resources
        for path in secret_file_paths(r.resource_type, r.props)
        if "alertmanager" in path
    ]
    if masked:
        args.not_applicable(f"{masked[0]} is a secret file, masked in a render; judged at preview")


def _paging(args: StackValidationArgs, report: ReportViolation) -> None:
    if _stack(args) != "prod":
        return
    configs = _yaml_docs(args, "route", "receivers")
    if not configs:
        _unseen_alertmanager(args)
    pagers = [
        rcv.get("name")
        for _, doc in configs
        for rcv in doc.get("receivers") or []
        if isinstance(rcv, dict) and any(rcv.get(k) for k in _PAGERS)
    ]
    if not pagers:
        report("prod has no paging receiver (PagerDuty or Opsgenie) in Alertmanager", None)


_MATCHER = re.compile(r'^\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def _matches(route: dict[str, Any], labels: dict[str, str]) -> bool:
    """Alertmanager's route matching (prometheus/alertmanager dispatch/route.go):
    every ``match``, ``match_re`` and ``matchers`` entry must hold."""
    for k, v in (route.get("match") or {}).items():
        if labels.get(k, "") != str(v):
            return False
    for k, v in (route.get("match_re") or {}).items():
        if not re.fullmatch(str(v), labels.get(k, "")):
            return False
    for m in route.get("matchers") or []:
        parsed = _MATCHER.match(str(m))
        if not parsed:
            return False
        name, op, value = parsed.groups()
        have = labels.get(name, "")
        ok = {
            "=": have == value,
            "!=": have != value,
            "=~": bool(re.fullmatch(value, have)),
            "!~": not re.fullmatch(value, have),
        }[op]
        if not ok:
            return False
    return True


def _receivers_for(route: dict[str, Any], labels: dict[str, str], inherited: str) -> list[str]:
    receiver = str(route.get("receiver") or inherited)
    found: list[str] = []
    for child in route.get("routes") or []:
        if isinstance(child, dict) and _matches(child, labels):
            found += _receivers_for(child, labels, receiver)
            if not child.get("continue"):
                break
    return found or [receiver]


def _alert_routes(args: StackValidationArgs, report: ReportViolation) -> None:
    # Prod only: issue #13 lets staging leave its dead-man's switch unmonitored.
    if _stack(args) != "prod":
        return
    rules = [
        (r, rule)
        for r, doc in _yaml_docs(args, "groups")
        for group in doc.get("groups") or []
        for rule in (group.get("rules") or [] if isinstance(group, dict) else [])
        if isinstance(rule, dict) and "alert" in rule
    ]
    if not rules:
        return
    configs = _yaml_docs(args, "route", "receivers")
    if not configs:
        _unseen_alertmanager(args)
        report(
            f"{len(rules)} alert rules and no Alertmanager routes them anywhere", rules[0][0].urn
        )
        return
    _, doc = configs[0]
    notifiers = {
        str(rcv.get("name"))
        for rcv in doc.get("receivers") or []
        if isinstance(rcv, dict) and any(k.endswith("_configs") and rcv[k] for k in rcv)
    }
    for r, rule in rules:
        labels = {"alertname": str(rule["alert"])}
        labels.update({str(k): str(v) for k, v in (rule.get("labels") or {}).items()})
        for receiver in _receivers_for(doc.get("route") or {}, labels, ""):
            if receiver not in notifiers:
                report(
                    f"alert {rule['alert']} routes to {receiver or 'no receiver'}, "
                    "which notifies nobody",
                    r.urn,
                )


STACK_POLICIES: list[StackValidationPolicy] = [
    stack_policy(
        "phi-network-isolation",
        "Every PHI-holding service has its own NetworkPolicy (Kubernetes) or joins "
        "internal-only networks (Docker).",
        _phi_isolation,
        control("HIPAA", "164.312(a)(1)", "Access control"),
        config_schema=PolicyConfigSchema(
            properties={"phiServices": {"type": "array", "items": {"type": "string"}}}
        ),
    ),
    stack_policy(
        "no-superuser-client",
        "No client connects to PostgreSQL as its superuser.",
        _no_superuser,
        control("HIPAA", "164.312(a)(1)", "Access control; unique user identification"),
        needs=cap.LEAST_PRIVILEGE_DB,
    ),
    stack_policy(
        "database-audit-logging",
        "PostgreSQL loads and configures pgaudit.",
        _db_audit,
        control("HIPAA", "164.312(b)", "Audit controls"),
        needs=cap.PGAUDIT,
    ),
    stack_policy(
        "audit-retention",
        f"In prod, the audit index is kept at least {AUDIT_MIN_DAYS} days (six years).",
        _audit_retention,
        control("HIPAA", "164.312(b), 164.316(b)(2)(i)", "Audit controls; retention"),
        needs=cap.AUDIT_INDEX,
    ),
    stack_policy(
        "offsite-backup",
        "Staging and prod archive WAL or back up off the host (object storage).",
        _offsite,
        control("HIPAA", "164.308(a)(7)(ii)(A)", "Data backup plan"),
        needs=cap.OFFSITE_WAL,
    ),
    stack_policy(
        "restore-drill-scheduled",
        "Staging and prod run a restore drill on a schedule.",
        _restore_drill,
        control("HIPAA", "164.308(a)(7)(ii)(D)", "Testing and revision procedures"),
        needs=cap.RESTORE_DRILL,
    ),
    stack_policy(
        "paging-receiver",
        "Prod's Alertmanager has a paging receiver (PagerDuty or Opsgenie).",
        _paging,
        control("OPS", "alerting", "Every alert reaches a person"),
        needs=cap.PAGING_RECEIVER,
        config_schema=_MASKED,
    ),
    stack_policy(
        "alert-routes",
        "In prod, every alert rule routes to a receiver that notifies someone.",
        _alert_routes,
        control("OPS", "alerting", "Every alert reaches a person"),
        needs=cap.ALERTMANAGER,
        config_schema=_MASKED,
    ),
]

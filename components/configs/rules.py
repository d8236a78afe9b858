"""Luna's alert and recording rules, for the services a stack runs.

Every alert carries ``severity`` (``critical`` pages, ``warning`` goes to chat,
``none`` is the Watchdog heartbeat), ``cause`` (what is broken: a critical alert
inhibits the warnings of the same cause, see ``alertmanager.py``) and a
``runbook_url`` to ``docs/runbooks/alerts/<cause>.md#<alert>``. Labels and
annotations name services and probe URLs only, never a user or a request: no
health data leaves the stack in a notification.

The crisis-path SLOs follow the multiwindow, multi-burn-rate alerts of Google's
SRE workbook (chapter "Alerting on SLOs"), for a 30-day objective: page at
14.4x the sustainable burn over 1 h and 5 m (2 % of the budget in an hour) or
at 6x over 6 h and 30 m (5 % in six hours); open a ticket at 1x over 3 d and
6 h. The SLI is the blackbox probe: a probe is bad when either the internal or
the public-edge probe fails (availability) or takes longer than the crisis
latency budget (latency).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "EDGE_JOB",
    "PROBE_JOB",
    "RUNBOOK_BASE",
    "AlertThresholds",
    "alert_rules",
]

RUNBOOK_BASE = "https://github.com/luna-app/luna-infrastructure/blob/main/docs/runbooks"
"""Where ``runbook_url`` annotations point: ``<base>/alerts/<cause>.md#<alert>``."""
WAL_ARCHIVE_MAX_AGE_S = 150
"""Docker: the newest archived WAL may be this old. The backup loop's heartbeat
writes WAL every 30 s and archive_timeout (60 s) closes a segment, so a working
archive stays under ~100 s; a dead store crosses 150 s within 150 s, and the
alert fires a minute later (the rehearsal's ``alerts`` scenario measures it at the
pager)."""
PROBE_JOB = "crisis-probe"
EDGE_JOB = "crisis-edge"
_PROBES = f'job=~"{PROBE_JOB}|{EDGE_JOB}"'
# (name, severity, factor, long window, short window, for): the SRE workbook's table.
_BURNS = (
    ("BudgetBurn", "critical", 14.4, "1h", "5m", "1m"),
    ("BudgetBurn", "critical", 6.0, "6h", "30m", "1m"),
    ("BudgetTicket", "warning", 1.0, "3d", "6h", "15m"),
)
_SLIS = {
    "Availability": ("errors", "fails"),
    "Latency": ("slow", "is slower than its budget in"),
}


@dataclass(frozen=True)
class AlertThresholds:
    error_ratio: float = 0.05
    latency_p95_s: float = 1.0
    crisis_latency_s: float = 0.5
    backup_max_age_h: int = 26
    backup_metrics: str | None = None
    """Who reports the base backups: ``pushgateway`` (the Docker database's backup
    loop and drill push there), ``cnpg`` (CloudNativePG's exporter), or ``None``
    (no backups: no backup alert, which would only ever page)."""
    jobs: Sequence[str] = field(default_factory=tuple)
    """Scrape jobs present; rules for absent services are left out."""
    app_replicas: int = 1
    """Replicas the stack runs: fewer answering fires ``LunaAppDown``."""
    slo_objective_percent: float = 99.9
    """The crisis path's availability and latency objective over 30 days."""
    runbook_base: str = RUNBOOK_BASE


def _number(value: float) -> str:
    return f"{value:.6g}"


class _Rules:
    def __init__(self, t: AlertThresholds) -> None:
        self.t = t
        self.alerts: list[dict[str, Any]] = []

    def add(self, name: str, expr: str, for_: str, severity: str, cause: str, summary: str) -> None:
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if for_ != "0m":
            rule["for"] = for_
        rule["labels"] = {"severity": severity, "cause": cause}
        rule["annotations"] = {
            "summary": summary,
            "runbook_url": f"{self.t.runbook_base}/alerts/{cause}.md#{name.lower()}",
        }
        self.alerts.append(rule)


PLUGIN_METRIC = "barman_cloud_cloudnative_pg_io_"
"""The Barman Cloud plugin's metrics, served by each instance's exporter.

plugin-barman-cloud internal/cnpgi/instance/metrics.go: ``buildFqName`` prefixes
``last_available_backup_timestamp``, ``last_failed_backup_timestamp`` and
``first_recoverability_point`` with the plugin's name (``barman-cloud.cloudnative-pg.io``,
internal/cnpgi/metadata/constants.go) with ``.`` and ``-`` turned into ``_``;
CloudNativePG exports them under that name (internal/cnpi/plugin/client/metrics.go,
``prometheus.NewDesc(element.FqName, ...)``). Each is 0 until the ObjectStore's
status knows the server, and they replace the in-tree ``cnpg_collector_*`` ones."""


def _cnpg_backups(rules: _Rules, t: AlertThresholds) -> None:
    """Base backups on Kubernetes, from the Barman Cloud plugin's metrics.

    Every instance reads the same ObjectStore status, hence ``max``. The names
    are the Docker rules' (same runbook, same meaning).
    """
    metric = f'{PLUGIN_METRIC}last_available_backup_timestamp{{job="cnpg"}}'
    last = f"max by (job) ({metric})"
    _backup_age(
        rules,
        t,
        too_old=f"(time() - {last} > {t.backup_max_age_h * 3600}) and {last} > 0",
        missing=f"{last} == 0 or absent({metric})",
    )
    failed = f'max by (job) ({PLUGIN_METRIC}last_failed_backup_timestamp{{job="cnpg"}})'
    rules.add(
        "LunaBackupFailed",
        f"{failed} > {last}",
        "5m",
        "critical",
        "backups",
        "The newest base backup attempt failed after the last good one",
    )


def _drill_failed(rules: _Rules) -> None:
    rules.add(
        "LunaRestoreDrillFailed",
        "luna_restore_drill_success == 0",
        "5m",
        "critical",
        "backups",
        "The last restore drill failed: the newest backup did not restore and check clean",
    )


def _backup_age(rules: _Rules, t: AlertThresholds, *, too_old: str, missing: str) -> None:
    """The two base-backup alerts, whichever platform reports the backup's time."""
    rules.add(
        "LunaBackupTooOld",
        too_old,
        "5m",
        "critical",
        "backups",
        f"The last successful database backup is older than {t.backup_max_age_h}h",
    )
    rules.add(
        "LunaBackupMissing",
        missing,
        f"{t.backup_max_age_h}h",
        "critical",
        "backups",
        "No database backup has ever reported success",
    )


def _wal_archiving(rules: _Rules, failed_count: str) -> None:
    rules.add(
        "LunaWalArchivingFailing",
        f"increase({failed_count}[10m]) > 0",
        "5m",
        "critical",
        "backups",
        "PostgreSQL cannot archive WAL to the object store: the recovery point grows",
    )


def _slo_records(t: AlertThresholds) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [
        {
            # 1 while either probe fails: users reach the crisis path through both.
            "record": "luna:crisis_probe_errors:bool",
            "expr": f"1 - min without (instance, job) (probe_success{{{_PROBES}}})",
        },
        {
            "record": "luna:crisis_probe_slow:bool",
            "expr": "max without (instance, job) "
            f"(probe_duration_seconds{{{_PROBES}}} > bool {_number(t.crisis_latency_s)})",
        },
    ]
    windows = sorted({w for b in _BURNS for w in b[3:5]}, key=_seconds)
    for sli in ("errors", "slow"):
        records += [
            {
                "record": f"luna:crisis_probe_{sli}:ratio_avg{w}",
                "expr": f"avg_over_time(luna:crisis_probe_{sli}:bool[{w}])",
            }
            for w in windows
        ]
    return records


def _seconds(window: str) -> int:
    return int(window[:-1]) * {"m": 60, "h": 3600, "d": 86400}[window[-1]]


def _slo_alerts(rules: _Rules) -> None:
    budget = 1 - rules.t.slo_objective_percent / 100
    objective = _number(rules.t.slo_objective_percent)
    for sli, (series, verb) in _SLIS.items():
        cause = f"crisis-{sli.lower()}"
        for suffix, severity in (("BudgetBurn", "critical"), ("BudgetTicket", "warning")):
            parts = [
                f"(luna:crisis_probe_{series}:ratio_avg{long} > {_number(factor * budget)}"
                f" and luna:crisis_probe_{series}:ratio_avg{short} > {_number(factor * budget)})"
                for s, _, factor, long, short, _ in _BURNS
                if s == suffix
            ]
            for_ = next(b[5] for b in _BURNS if b[0] == suffix)
            rules.add(
                f"LunaCrisis{sli}{suffix}",
                "\nor\n".join(parts),
                for_,
                severity,
                cause,
                f"The crisis path {verb} {{{{ $value | humanizePercentage }}}} of probes,"
                f" burning its {objective}% error budget too fast",
            )


def alert_rules(t: AlertThresholds) -> str:
    """Alert rules for the services present (``t.jobs``)."""
    rules = _Rules(t)
    jobs = set(t.jobs)
    if "alertmanager" in jobs:
        # Always firing: the heartbeat receiver raises the alarm when it stops.
        rules.add("Watchdog", "vector(1)", "0m", "none", "alerting", "Alerting pipeline heartbeat")
        rules.add(
            "LunaAlertNotificationsFailing",
            "sum by (integration) (increase("
            'alertmanager_notifications_failed_total{job="alertmanager"}[10m])) > 0',
            "5m",
            "critical",
            "alerting",
            "Alertmanager fails to deliver notifications through {{ $labels.integration }}",
        )
    if "app" in jobs:
        n = t.app_replicas
        # Counted, not ``up == 0``: on Kubernetes a dead replica leaves the headless
        # Service (and so discovery) instead of reporting 0; with none left, vector(0).
        rules.add(
            "LunaAppDown",
            f'(count(up{{job="app"}} == 1) or vector(0)) < {n}',
            "2m",
            "critical",
            "app",
            f"Only {{{{ $value }}}} of {n} Luna app replicas answer",
        )
        rules.add(
            "LunaHighErrorRate",
            'sum(rate(http_requests_total{job="app",status=~"5.."}[5m]))'
            ' / sum(rate(http_requests_total{job="app"}[5m]))'
            f" > {t.error_ratio}",
            "5m",
            "warning",
            "app",
            "More than {{ $value | humanizePercentage }} of requests fail",
        )
        rules.add(
            "LunaHighLatencyP95",
            "histogram_quantile(0.95, sum by (le) ("
            'rate(http_request_duration_seconds_bucket{job="app"}[5m])))'
            f" > {t.latency_p95_s}",
            "10m",
            "warning",
            "app",
            "p95 latency is {{ $value }}s",
        )
    if PROBE_JOB in jobs:
        rules.add(
            "LunaCrisisEndpointDown",
            f'probe_success{{job="{PROBE_JOB}"}} == 0',
            "1m",
            "critical",
            "crisis-availability",
            "The crisis-intervention endpoint does not answer",
        )
        # A warning now: the latency budget burn below is what pages.
        rules.add(
            "LunaCrisisLatencyHigh",
            f'probe_duration_seconds{{job="{PROBE_JOB}"}} > {t.crisis_latency_s}',
            "2m",
            "warning",
            "crisis-latency",
            "The crisis-intervention endpoint takes {{ $value }}s",
        )
        rules.add(
            "LunaCrisisProbeFailing",
            f"up{{{_PROBES}}} == 0",
            "5m",
            "critical",
            "crisis-availability",
            "The blackbox exporter cannot probe {{ $labels.instance }}:"
            " the crisis path is unwatched",
        )
        _slo_alerts(rules)
    if EDGE_JOB in jobs:
        rules.add(
            "LunaCrisisEdgeDown",
            f'probe_success{{job="{EDGE_JOB}"}} == 0',
            "1m",
            "critical",
            "edge",
            "Users cannot reach {{ $labels.instance }} through the public edge",
        )
        for name, days, severity, for_ in (
            ("LunaEdgeCertExpiringSoon", 14, "warning", "10m"),
            ("LunaEdgeCertExpiring", 3, "critical", "10m"),
        ):
            rules.add(
                name,
                f'probe_ssl_earliest_cert_expiry{{job="{EDGE_JOB}"}} - time() < {days * 86400}',
                for_,
                severity,
                "edge-certificate",
                "The public certificate of {{ $labels.instance }}"
                f" expires in under {days} days",
            )
    if "postgres" in jobs:
        rules.add(
            "LunaDatabaseDown",
            'pg_up{job="postgres"} == 0',
            "1m",
            "critical",
            "database",
            "PostgreSQL is down",
        )
    if "redis" in jobs:
        rules.add(
            "LunaCacheDown", 'redis_up{job="redis"} == 0', "2m", "warning", "cache", "Redis is down"
        )
    if "nginx" in jobs:
        rules.add(
            "LunaProxyDown", 'nginx_up{job="nginx"} == 0', "1m", "critical", "edge", "Nginx is down"
        )
    if "pushgateway" in jobs and t.backup_metrics == "pushgateway":
        backup = "luna_backup_last_success_timestamp_seconds"
        _backup_age(
            rules,
            t,
            too_old=f"time() - {backup} > {t.backup_max_age_h * 3600}",
            missing=f"absent({backup})",
        )
        _drill_failed(rules)
    if t.backup_metrics == "cnpg" and "cnpg" in jobs:
        _wal_archiving(rules, "cnpg_pg_stat_archiver_failed_count")
        _cnpg_backups(rules, t)
        if "pushgateway" in jobs:
            # The drill CronJob pushes its result (components/platforms/kubernetes/drill.py).
            _drill_failed(rules)
    elif t.backup_metrics and "postgres" in jobs:
        # postgres_exporter's pg_stat_archiver_failed_count: the legacy default
        # metric map of the pinned 0.15.0 (cmd/postgres_exporter/postgres_exporter.go,
        # "pg_stat_archiver"), collector/pg_stat_archiver.go from 0.20 on. Stays 0
        # on a server that does not archive.
        _wal_archiving(rules, 'pg_stat_archiver_failed_count{job="postgres"}')
        # The age of the newest archived segment: failed_count moves only when an
        # attempt ends, and a hung store may hold one for minutes. The legacy
        # metric map's pg_stat_archiver query adds last_archive_age
        # (prometheus-community/postgres_exporter cmd/postgres_exporter/queries.go).
        # After a crash (a `docker kill`, the host's power) PostgreSQL resets its
        # statistics: last_archived_time is NULL until a segment is archived again,
        # which the exporter reports as NaN (dbToFloat64, cmd/postgres_exporter/
        # util.go), and NaN > 150 is never true. So a store that dies then would
        # page only through LunaWalArchivingFailing's 5 minutes. Since the restart:
        # nothing archived (the age is NaN, so not equal to itself) and an attempt failed.
        age = 'pg_stat_archiver_last_archive_age{job="postgres"}'
        never = f'(pg_stat_archiver_failed_count{{job="postgres"}} > 0 unless {age} == {age})'
        rules.add(
            "LunaWalArchiveStale",
            f"{never} or {age} > {WAL_ARCHIVE_MAX_AGE_S}",
            "1m",
            "critical",
            "backups",
            "No WAL segment reached the object store for minutes: the recovery point grows",
        )
    groups: list[dict[str, Any]] = [{"name": "luna", "rules": rules.alerts}]
    if PROBE_JOB in jobs:
        groups.insert(0, {"name": "luna-crisis-slo-records", "rules": _slo_records(t)})
    doc = {"groups": groups}
    return "# Generated by components/configs/rules.py\n" + yaml.safe_dump(doc, sort_keys=False)

"""Build ``promtool test rules`` unit tests from a rendered alert-rules file.

For every alert in the file: one group with series that should fire it (and
the labels and summary the alert must carry), one with healthy series and
``exp_alerts: []``. Thresholds and ``for`` durations are read from the
rendered rules, so a changed threshold keeps these cases honest. An alert
with no case here fails the test (see ``KNOWN``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["KNOWN", "SLOW_EVAL", "AlertCase", "build_tests", "latency_budget", "rules_by_name"]

KNOWN = (
    "Watchdog",
    "LunaAlertNotificationsFailing",
    "LunaAppDown",
    "LunaHighErrorRate",
    "LunaHighLatencyP95",
    "LunaCrisisEndpointDown",
    "LunaCrisisLatencyHigh",
    "LunaDatabaseDown",
    "LunaCacheDown",
    "LunaProxyDown",
    "LunaBackupTooOld",
    "LunaBackupMissing",
    "LunaRestoreDrillFailed",
    "LunaWalArchivingFailing",
    "LunaWalArchiveStale",
    "LunaCrisisProbeFailing",
    "LunaCrisisEdgeDown",
    "LunaEdgeCertExpiringSoon",
    "LunaEdgeCertExpiring",
    "LunaCrisisAvailabilityBudgetBurn",
    "LunaCrisisAvailabilityBudgetTicket",
    "LunaCrisisLatencyBudgetBurn",
    "LunaCrisisLatencyBudgetTicket",
)
# Days-long windows or hours-long ``for``: evaluated every 5 minutes, not every 15 s.
SLOW_EVAL = (
    "LunaCrisisAvailabilityBudgetTicket",
    "LunaCrisisLatencyBudgetTicket",
    "LunaBackupTooOld",
    "LunaBackupMissing",
)

CRISIS_TARGET = "http://app:3000/api/crisis/health"
EDGE_TARGET = "https://luna-app.com/api/crisis/health"


@dataclass(frozen=True)
class AlertCase:
    """Series that fire (or do not fire) one alert, and what a firing alert carries."""

    series: list[tuple[str, str]]
    eval_min: int
    labels: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    """The alert's ``$value`` when firing (chosen to be exact)."""
    interval: str = "1m"
    """Spacing of the input samples (``15s``: the production scrape interval)."""
    fires: bool = False
    """For the healthy case of an alert that never stops firing (Watchdog)."""


def rules_by_name(rules_yaml: str) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(rules_yaml)
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def threshold(rule: dict[str, Any], op: str = ">") -> float:
    match = re.search(rf"{op}\s*([0-9.e+-]+)\s*$", rule["expr"].strip())
    assert match, f"{rule['alert']}: no '{op} threshold' at the end of {rule['expr']!r}"
    return float(match.group(1))


def minutes(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, f"unsupported duration {duration!r}"
    n, unit = int(match.group(1)), match.group(2)
    return {"s": max(1, n // 60), "m": n, "h": n * 60}[unit]


def _go_float(value: float) -> str:
    # Go's %v for float64: shortest representation, no trailing ".0".
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def render_template(template: str, labels: dict[str, str], value: float | None) -> str:
    """Prometheus' alert templating, for the constructs Luna's summaries use."""

    def sub(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr.startswith("$labels."):
            return labels[expr.removeprefix("$labels.")]
        assert value is not None, f"template {template!r} needs $value"
        if expr == "$value":
            return _go_float(value)
        if expr == "$value | humanizePercentage":
            return f"{value * 100:.4g}%"
        raise AssertionError(f"template construct {expr!r} is not modelled here")

    return re.sub(r"\{\{(.*?)\}\}", sub, template)


def _counter(per_min: float, n: int) -> str:
    return f"0+{_go_float(per_min)}x{n}"


def _cases(rule: dict[str, Any], budget: float) -> tuple[AlertCase, AlertCase]:
    """(firing, healthy) for one alert."""
    name = rule["alert"]
    hold = minutes(rule.get("for", "0m"))
    at = hold + 10  # past the rate windows (5m) and the rule's ``for``
    n = at + 5
    if name == "Watchdog":
        # Always firing, healthy or not: the heartbeat receiver alarms when it stops.
        s = 'up{job="prometheus",instance="127.0.0.1:9090"}'
        return AlertCase([(s, f"1x{n}")], at), AlertCase([(s, f"1x{n}")], at, fires=True)
    if name == "LunaAlertNotificationsFailing":
        s = (
            'alertmanager_notifications_failed_total{job="alertmanager",'
            'instance="alertmanager:9093",integration="slack"}'
        )
        return (
            AlertCase([(s, _counter(1, n))], at, {"integration": "slack"}),
            # Failures long ago (the counter is high) but none in the window: quiet.
            AlertCase([(s, f"7x{n}")], at),
        )
    if name == "LunaAppDown":
        replicas = int(threshold(rule, "<"))
        # One replica reports 0 (Docker's static targets), one has vanished from
        # discovery (a Kubernetes pod that left the headless Service), the rest answer.
        down = [('up{job="app",instance="app-0:3000"}', f"0x{n}")]
        rest = [(f'up{{job="app",instance="app-{i}:3000"}}', f"1x{n}") for i in range(2, replicas)]
        healthy = [(f'up{{job="app",instance="app-{i}:3000"}}', f"1x{n}") for i in range(replicas)]
        return (
            AlertCase(down + rest, at, {}, value=len(rest)),
            AlertCase(healthy, at),
        )
    if name == "LunaCrisisProbeFailing":
        s = f'up{{job="crisis-probe",instance="{CRISIS_TARGET}"}}'
        labels = {"job": "crisis-probe", "instance": CRISIS_TARGET}
        return AlertCase([(s, f"0x{n}")], at, labels), AlertCase([(s, f"1x{n}")], at)
    if name == "LunaCrisisEdgeDown":
        s = f'probe_success{{job="crisis-edge",instance="{EDGE_TARGET}"}}'
        labels = {"job": "crisis-edge", "instance": EDGE_TARGET}
        return AlertCase([(s, f"0x{n}")], at, labels), AlertCase([(s, f"1x{n}")], at)
    if name in ("LunaEdgeCertExpiringSoon", "LunaEdgeCertExpiring"):
        days = threshold(rule, "<") / 86400
        s = f'probe_ssl_earliest_cert_expiry{{job="crisis-edge",instance="{EDGE_TARGET}"}}'
        labels = {"job": "crisis-edge", "instance": EDGE_TARGET}
        # Expiry timestamps (time() starts at 0): a day inside, and a day outside, the limit.
        return (
            AlertCase([(s, f"{_go_float((days - 1) * 86400)}x{n}")], at, labels),
            AlertCase([(s, f"{_go_float((days + 1) * 86400)}x{n}")], at),
        )
    if name.startswith("LunaCrisis") and "Budget" in name:
        return _burn_cases(name, rule, budget)
    if name == "LunaHighErrorRate":
        t = threshold(rule)
        assert 0 < t < 0.5, f"{name}: threshold {t} outside the modelled range"

        def requests(ok: float, failed: float) -> list[tuple[str, str]]:
            return [
                (
                    'http_requests_total{job="app",instance="app-0:3000",status="200"}',
                    _counter(ok, n),
                ),
                (
                    'http_requests_total{job="app",instance="app-0:3000",status="500"}',
                    _counter(failed, n),
                ),
            ]

        # Firing: half the requests fail (ratio exactly 0.5); healthy: half the threshold.
        return (
            AlertCase(requests(60, 60), at, {}, value=0.5),
            AlertCase(requests(1000 * (1 - t / 2), 1000 * t / 2), at),
        )
    if name == "LunaHighLatencyP95":
        t = threshold(rule)
        metric = "http_request_duration_seconds_bucket"

        def buckets(fast: int, slow: int) -> list[tuple[str, str]]:
            # Buckets at t/2 and 2t; ``slow`` requests take longer than 2t.
            return [
                (f'{metric}{{job="app",le="{_go_float(t / 2)}"}}', _counter(fast, n)),
                (f'{metric}{{job="app",le="{_go_float(t * 2)}"}}', _counter(fast, n)),
                (f'{metric}{{job="app",le="+Inf"}}', _counter(fast + slow, n)),
            ]

        # Firing: every request is slower than 2t, so p95 is the top finite bound, 2t.
        return (
            AlertCase(buckets(0, 30), at, {}, value=t * 2),
            AlertCase(buckets(30, 0), at),
        )
    if name == "LunaCrisisEndpointDown":
        s = f'probe_success{{job="crisis-probe",instance="{CRISIS_TARGET}"}}'
        labels = {"job": "crisis-probe", "instance": CRISIS_TARGET}
        return AlertCase([(s, f"0x{n}")], at, labels), AlertCase([(s, f"1x{n}")], at)
    if name == "LunaCrisisLatencyHigh":
        t = threshold(rule)
        s = f'probe_duration_seconds{{job="crisis-probe",instance="{CRISIS_TARGET}"}}'
        labels = {"job": "crisis-probe", "instance": CRISIS_TARGET}
        return (
            AlertCase([(s, f"{_go_float(t * 2)}x{n}")], at, labels, value=t * 2),
            AlertCase([(s, f"{_go_float(t / 2)}x{n}")], at),
        )
    down_metrics = {
        "LunaDatabaseDown": ("pg_up", "postgres", "postgres-exporter:9187"),
        "LunaCacheDown": ("redis_up", "redis", "redis-exporter:9121"),
        "LunaProxyDown": ("nginx_up", "nginx", "nginx-exporter:9113"),
    }
    if name in down_metrics:
        metric, job, instance = down_metrics[name]
        s = f'{metric}{{job="{job}",instance="{instance}"}}'
        labels = {"job": job, "instance": instance}
        return AlertCase([(s, f"0x{n}")], at, labels), AlertCase([(s, f"1x{n}")], at)
    if name in ("LunaBackupTooOld", "LunaBackupMissing") and "cnpg_collector" in rule["expr"]:
        return _cnpg_backup_cases(name, rule, hold)
    backup = 'luna_backup_last_success_timestamp_seconds{job="luna-backup"}'
    if name == "LunaBackupTooOld":
        t = threshold(rule)
        at = int(t // 60) + hold + 5
        n = at + 5
        return (
            # The last success was at t=0 and nothing since.
            AlertCase([(backup, f"0x{n}")], at, {"job": "luna-backup"}),
            # A success pushed a minute before every sample.
            AlertCase([(backup, f"-60+60x{n}")], at),
        )
    if name == "LunaBackupMissing":
        at = hold + 5
        n = at + 5
        return (
            AlertCase([('up{job="pushgateway"}', f"1x{n}")], at),
            AlertCase([(backup, f"-60+60x{n}")], at),
        )
    if name == "LunaRestoreDrillFailed":
        s = 'luna_restore_drill_success{job="luna-restore-drill"}'
        at = hold + 5
        n = at + 5
        return (
            AlertCase([(s, f"0x{n}")], at, {"job": "luna-restore-drill"}),
            AlertCase([(s, f"1x{n}")], at),
        )
    if name == "LunaWalArchivingFailing":
        metric, job, instance = (
            ("cnpg_pg_stat_archiver_failed_count", "cnpg", "10.0.0.7:9187")
            if "cnpg_" in rule["expr"]
            else ("pg_stat_archiver_failed_count", "postgres", "postgres-exporter:9187")
        )
        labels = {"job": job, "instance": instance}
        s = f'{metric}{{job="{job}",instance="{instance}"}}'
        at = hold + 15
        n = at + 5
        return (
            # One more failed attempt every minute.
            AlertCase([(s, f"0+1x{n}")], at, labels),
            # Old failures, none new.
            AlertCase([(s, f"5x{n}")], at),
        )
    if name == "LunaWalArchiveStale":
        limit = threshold(rule)
        labels = {"job": "postgres", "instance": "postgres-exporter:9187"}
        s = 'pg_stat_archiver_last_archive_age{job="postgres",instance="postgres-exporter:9187"}'
        # The store dies at t=0: the age grows 60 s a minute from a working 60 s.
        crosses = int((limit - 60) // 60) + 1
        at = crosses + hold + 1
        n = at + 5
        return (
            AlertCase([(s, f"60+60x{n}")], at, labels),
            # A working archive: a segment every minute, the age never past 100 s.
            AlertCase([(s, f"{' '.join(['40', '100'] * n)}")], at),
        )
    raise AssertionError(f"alert {name} has no unit-test case in tests/real/alert_cases.py")


def _cnpg_backup_cases(name: str, rule: dict[str, Any], hold: int) -> tuple[AlertCase, AlertCase]:
    """CloudNativePG's backup age: the primary exports the newest backup, standbys 0."""
    metric = "cnpg_collector_last_available_backup_timestamp"
    primary = f'{metric}{{job="cnpg",instance="10.0.0.7:9187"}}'
    standby = f'{metric}{{job="cnpg",instance="10.0.0.8:9187"}}'
    if name == "LunaBackupTooOld":
        match = re.search(r"> (\d+)\) and", rule["expr"])
        assert match, f"LunaBackupTooOld: no age threshold in {rule['expr']!r}"
        at = int(match.group(1)) // 60 + hold + 5
        n = at + 5
        return (
            # One backup at t=60 s and none since.
            AlertCase([(primary, f"60x{n}"), (standby, f"0x{n}")], at, {"job": "cnpg"}),
            # A backup a minute before every sample.
            AlertCase([(primary, f"-60+60x{n}"), (standby, f"0x{n}")], at),
        )
    at = hold + 5
    n = at + 5
    return (
        # A new cluster whose first base backup never completed.
        AlertCase([(primary, f"0x{n}"), (standby, f"0x{n}")], at, {"job": "cnpg"}),
        AlertCase([(primary, f"-60+60x{n}"), (standby, f"0x{n}")], at),
    )


def _more_cases(rule: dict[str, Any]) -> list[tuple[str, AlertCase]]:
    """Cases beyond the firing/healthy pair, for branches of an expression that pair misses."""
    if "cnpg_collector" not in rule["expr"]:
        return []
    hold = minutes(rule.get("for", "0m"))
    at = hold + 5
    n = at + 5
    if rule["alert"] == "LunaBackupMissing":
        # The collector's metric gone altogether (the scrape blocked, every instance down).
        return [("absent", AlertCase([('up{job="cnpg",instance="10.0.0.7:9187"}', f"0x{n}")],
                                     at, {"job": "cnpg"}, fires=True))]  # fmt: skip
    # Never backed up is LunaBackupMissing's page, not a second one from this alert.
    metric = 'cnpg_collector_last_available_backup_timestamp{job="cnpg",instance="10.0.0.7:9187"}'
    match = re.search(r"> (\d+)\) and", rule["expr"])
    assert match, rule["expr"]
    at = int(match.group(1)) // 60 + hold + 5
    return [("never-backed-up", AlertCase([(metric, f"0x{at + 5}")], at))]


def _burn_cases(name: str, rule: dict[str, Any], budget: float) -> tuple[AlertCase, AlertCase]:
    """Burn-rate alerts: a sustained outage fires; a blip does not.

    The blip (one bad 15 s probe after a healthy hour) makes both short windows
    (5 m: 5 %, 30 m: 0.8 %) burn above their factors (1.44 % and 0.6 % for
    99.9 %); only the long windows (0.4 %) keep it quiet, which is what the
    multiwindow rule is for. A ticket shows the other half: after an outage has
    ended, the short window closes it while the 3-day window still remembers.
    """
    latency = "Latency" in name
    ticket = name.endswith("Ticket")
    metric = "probe_duration_seconds" if latency else "probe_success"
    bad = _go_float(budget * 2) if latency else "0"
    good = _go_float(budget / 2) if latency else "1"
    series = [
        f'{metric}{{job="crisis-probe",instance="{CRISIS_TARGET}"}}',
        f'{metric}{{job="crisis-edge",instance="{EDGE_TARGET}"}}',
    ]
    hold = minutes(rule.get("for", "0m"))
    interval, per_min = ("5m", 0.2) if ticket else ("15s", 4)
    # Firing: bad from the start (every window at 100 %, so $value is exactly 1).
    at = hold + 10
    n = int((at + 5) * per_min)
    firing = AlertCase([(s, f"{bad}x{n}") for s in series], at, {}, value=1.0, interval=interval)
    if ticket:
        # A 30-minute outage, then 7 healthy hours: the 3 d window still remembers
        # it (6.7 %), the 6 h window has recovered (0 %), so the ticket is closed.
        healthy = AlertCase(
            [(s, f"{bad}x5 {good}x84") for s in series], 7 * 60 + 30, interval=interval
        )
        return firing, healthy
    history = 60 * 4
    # Evaluated after the rule's ``for``: a true condition would be firing by then.
    after = (hold + 5) * 4
    blipped = f"{good}x{history - 1} {bad} {good}x{after}"
    healthy = AlertCase(
        [(series[0], blipped), (series[1], f"{good}x{history + after + 1}")],
        60 + hold + 3,
        interval=interval,
    )
    return firing, healthy


def latency_budget(rules_yaml: str) -> float:
    """The crisis latency budget, read from the SLO recording rule (``> bool X``)."""
    doc = yaml.safe_load(rules_yaml)
    exprs = [r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r]
    found = [m for e in exprs for m in re.findall(r"> bool ([0-9.e+-]+)\)", e)]
    assert len(found) == 1, f"expected one latency budget in the recording rules, found {found}"
    return float(found[0])


def build_tests(
    rules_file: str,
    rules_yaml: str,
    *,
    evaluation_interval: str = "1m",
    alerts: Sequence[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The promtool test document and the group names, ``<alert>:firing|healthy``.

    ``alerts`` selects the alerts to test (default: all); ``evaluation_interval``
    is the rule evaluation interval promtool uses (production: 15 s).
    """
    groups: list[dict[str, Any]] = []
    names: list[str] = []
    slo = "luna:crisis_probe_slow:bool" in rules_yaml
    budget = latency_budget(rules_yaml) if slo else 0.0
    for name, rule in rules_by_name(rules_yaml).items():
        if alerts is not None and name not in alerts:
            continue
        firing, healthy = _cases(rule, budget)
        labels = {**rule.get("labels", {}), **firing.labels}
        annotations = {
            k: render_template(v, labels, firing.value)
            for k, v in (rule.get("annotations") or {}).items()
        }
        alert = [{"exp_labels": labels, "exp_annotations": annotations}]
        cases = [
            ("firing", firing, alert),
            ("healthy", healthy, alert if healthy.fires else []),
            *((kind, case, alert if case.fires else []) for kind, case in _more_cases(rule)),
        ]
        for kind, case, expected in cases:
            group_name = f"{name}:{kind}"
            names.append(group_name)
            groups.append(
                {
                    "name": group_name,
                    "interval": case.interval,
                    "input_series": [{"series": s, "values": v} for s, v in case.series],
                    "alert_rule_test": [
                        {
                            "eval_time": f"{case.eval_min}m",
                            "alertname": name,
                            "exp_alerts": expected,
                        }
                    ],
                }
            )
    doc = {"rule_files": [rules_file], "evaluation_interval": evaluation_interval, "tests": groups}
    return doc, names

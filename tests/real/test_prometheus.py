"""promtool on the rendered prometheus.yml and alert rules, with alert unit tests.

The rendered files are written to a temp dir at their container paths, so
``rule_files: [rules/luna-alerts.yml]`` (relative to prometheus.yml) resolves
exactly as it does in the container.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.real.alert_cases import (
    KNOWN,
    PLUGIN,
    SLOW_EVAL,
    build_tests,
    render_template,
    rules_by_name,
)
from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.support import RenderedStack
from tests.support.tools import need

pytestmark = pytest.mark.slow

CONFIG = "/etc/prometheus/prometheus.yml"
RULES = "/etc/prometheus/rules/luna-alerts.yml"
# Every stack, so a stack without some service still gets a valid config.
ALL = [("dev", "docker"), *FULL_STACK_PARAMS]

# The alerts the issue requires for the full stacks.
REQUIRED = {
    "LunaAppDown",
    "LunaHighErrorRate",
    "LunaHighLatencyP95",
    "LunaCrisisEndpointDown",
    "LunaCrisisLatencyHigh",
    "LunaDatabaseDown",
    "LunaCacheDown",
    "LunaBackupTooOld",
    "Watchdog",
    "LunaAlertNotificationsFailing",
    "LunaCrisisEdgeDown",
    "LunaEdgeCertExpiringSoon",
    "LunaEdgeCertExpiring",
    "LunaCrisisAvailabilityBudgetBurn",
    "LunaCrisisAvailabilityBudgetTicket",
    "LunaCrisisLatencyBudgetBurn",
    "LunaCrisisLatencyBudgetTicket",
}


def _tree(stack: RenderedStack, tmp: Path) -> tuple[Path, Path] | None:
    paths = [k for k in stack.files if k.endswith(CONFIG)]
    if not paths:
        return None
    root = tmp / "prometheus"
    config = root / CONFIG.lstrip("/")
    rules = root / RULES.lstrip("/")
    rules.parent.mkdir(parents=True)
    config.write_text(stack.file("prometheus", CONFIG))
    rules.write_text(stack.file("prometheus", RULES))
    return config, rules


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


@pytest.mark.parametrize("stack_platform", ALL, ids=stack_id)
def test_promtool_checks_config_and_rules(
    stack_platform: tuple[str, str], stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> None:
    promtool = need("promtool")
    stack = stacks(*stack_platform)
    tree = _tree(stack, tmp_path)
    if tree is None:
        # Dev runs no monitoring: nothing to check, and that must stay true.
        assert stack.setting("monitoring") == "false", f"{stack.stack}: monitoring without files"
        return
    config, rules = tree
    n_rules = sum(len(g["rules"]) for g in yaml.safe_load(rules.read_text())["groups"])
    checked = _run([promtool, "check", "config", str(config)])
    assert checked.returncode == 0, f"{stack.stack}: {CONFIG}:\n{checked.stdout}{checked.stderr}"
    out = checked.stdout + checked.stderr
    assert f"SUCCESS: {n_rules} rules found" in out, f"{stack.stack}: rules not loaded:\n{out}"
    checked = _run([promtool, "check", "rules", str(rules)])
    assert checked.returncode == 0, f"{stack.stack}: {RULES}:\n{checked.stdout}{checked.stderr}"


@pytest.mark.parametrize("stack_platform", FULL_STACK_PARAMS, ids=stack_id)
def test_every_alert_fires_on_bad_series_and_stays_quiet_on_healthy(
    stack_platform: tuple[str, str], stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> None:
    promtool = need("promtool")
    stack = stacks(*stack_platform)
    tree = _tree(stack, tmp_path)
    assert tree is not None, f"{stack.stack}: no prometheus.yml rendered"
    _, rules = tree
    alerts = set(rules_by_name(rules.read_text()))
    assert alerts >= REQUIRED, f"{stack.stack}: {RULES} lacks {sorted(REQUIRED - alerts)}"
    assert alerts <= set(KNOWN), f"{stack.stack}: no unit-test case for {alerts - set(KNOWN)}"

    text = rules.read_text()
    interval = yaml.safe_load(stack.file("prometheus", CONFIG))["global"]["evaluation_interval"]
    assert interval == "15s", f"{stack.stack}: evaluation_interval {interval}; update the cases"
    groups = _promtool_test(promtool, rules, interval, [a for a in alerts if a not in SLOW_EVAL])
    # Days-long windows and hours-long ``for``: evaluated every 5 minutes to stay
    # fast; their cases do not depend on 15 s resolution.
    groups += _promtool_test(promtool, rules, "5m", [a for a in alerts if a in SLOW_EVAL])
    expected = {f"{a}:{k}" for a in rules_by_name(text) for k in ("firing", "healthy")}
    # Every alert has its pair; some have more cases (alert_cases._more_cases).
    assert expected <= set(groups), f"{stack.stack}: no case for {sorted(expected - set(groups))}"


@pytest.mark.parametrize("stack_platform", FULL_STACK_PARAMS, ids=stack_id)
def test_a_stale_backup_pages_at_the_documented_age(
    stack_platform: tuple[str, str], stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> None:
    """LunaBackupTooOld fires once the last backup is older than twice the backup
    interval plus two hours (docs/runbooks/alerts/backups.md), not later; and not
    before. The age comes from the stack's setting, not from the rule under test."""
    promtool = need("promtool")
    stack = stacks(*stack_platform)
    tree = _tree(stack, tmp_path)
    assert tree is not None, f"{stack.stack}: no prometheus.yml rendered"
    _, rules = tree
    rule = rules_by_name(rules.read_text())["LunaBackupTooOld"]
    max_age_min = (int(stack.setting("backupIntervalHours")) * 2 + 2) * 60
    if PLUGIN in rule["expr"]:
        # Every CloudNativePG instance reports the ObjectStore's time; 0 means "never".
        metric = f"{PLUGIN}last_available_backup_timestamp"
        series = [f'{metric}{{job="cnpg",instance="10.0.0.{i}:9187"}}' for i in (7, 8)]
        labels = {"job": "cnpg"}
    else:
        series = ['luna_backup_last_success_timestamp_seconds{job="luna-backup"}']
        labels = {"job": "luna-backup"}
    # One backup at t=5 min, none since; samples every 5 minutes.
    n = (max_age_min + 60) // 5
    expected = {**rule.get("labels", {}), **labels}
    alert = {
        "exp_labels": expected,
        "exp_annotations": {
            k: render_template(v, expected, None) for k, v in rule["annotations"].items()
        },
    }
    # Quiet 15 minutes before the age; paging within 15 minutes after it (the rule's ``for``).
    checks = [(max_age_min + 5 - 15, []), (max_age_min + 5 + 15, [alert])]
    inputs = [{"series": s, "values": f"300x{n}"} for s in series]
    cases = [(f"backup age {at} min", inputs, f"{at}m", exp) for at, exp in checks]
    doc = _alert_doc(rules, "LunaBackupTooOld", "5m", cases)
    rc, out = _run_tests(promtool, rules, doc, "backup-age.test.yml")
    assert rc == 0 and "SUCCESS" in out, (
        f"{stack.stack}: LunaBackupTooOld does not page at {max_age_min // 60} h:\n{out}"
    )


DOCKER_FULL = [sp for sp in FULL_STACK_PARAMS if sp[1] == "docker"]


@pytest.mark.parametrize("stack_platform", DOCKER_FULL, ids=stack_id)
def test_a_store_dead_after_a_crash_pages_at_the_first_failed_archive(
    stack_platform: tuple[str, str], stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> None:
    """After a crash PostgreSQL resets pg_stat_archiver: last_archived_time is NULL
    (measured on PostgreSQL 15: archived_count 0 after kill -9 and restart) and the
    exporter's last_archive_age NaN, which no `> 150` matches. LunaWalArchiveStale
    must still fire within its ``for`` of the first failed attempt; a restarted
    server with nothing to archive (no failure) must stay quiet."""
    promtool = need("promtool")
    stack = stacks(*stack_platform)
    tree = _tree(stack, tmp_path)
    assert tree is not None, f"{stack.stack}: no prometheus.yml rendered"
    _, rules = tree
    rule = rules_by_name(rules.read_text())["LunaWalArchiveStale"]
    labels = {"job": "postgres", "instance": "postgres-exporter:9187"}
    where = '{job="postgres",instance="postgres-exporter:9187"}'
    expected = {**rule.get("labels", {}), **labels}
    alert = {"exp_labels": expected, "exp_annotations": rule["annotations"]}
    # Minute 0 the server is back from the crash; the first attempt fails at minute 1.
    cases = [("a failed attempt", "0 1 1 1 1 2 2 2", [alert]), ("idle", "0x7", [])]
    age = {"series": f"pg_stat_archiver_last_archive_age{where}", "values": " ".join(["NaN"] * 8)}
    doc = _alert_doc(rules, "LunaWalArchiveStale", "1m", [
        (f"after a crash: {what}",
         [age, {"series": f"pg_stat_archiver_failed_count{where}", "values": failed}], "3m", exp)
        for what, failed, exp in cases
    ])  # fmt: skip
    rc, out = _run_tests(promtool, rules, doc, "archive-after-crash.test.yml")
    assert rc == 0 and "SUCCESS" in out, f"{stack.stack}: LunaWalArchiveStale after a crash:\n{out}"


def _promtool_test(promtool: str, rules: Path, interval: str, alerts: list[str]) -> list[str]:
    doc, groups = build_tests(
        rules.name, rules.read_text(), evaluation_interval=interval, alerts=alerts
    )
    rc, out = _run_tests(promtool, rules, doc, f"luna-alerts-{interval}.test.yml")
    assert rc == 0 and "SUCCESS" in out, f"promtool test rules ({interval}):\n{out}"
    return groups


def _alert_doc(
    rules: Path, alert: str, interval: str, cases: list[tuple[str, list[Any], str, list[Any]]]
) -> dict[str, Any]:
    """A promtool test document for one alert: each case (name, input series, eval
    time, the alerts expected then) is one test, sampled and evaluated every ``interval``."""
    return {
        "rule_files": [rules.name],
        "evaluation_interval": interval,
        "tests": [
            {
                "name": name,
                "interval": interval,
                "input_series": series,
                "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": exp}],
            }
            for name, series, at, exp in cases
        ],
    }


def _run_tests(promtool: str, rules: Path, doc: dict[str, Any], name: str) -> tuple[int, str]:
    """``promtool test rules`` on ``doc`` (written beside the rules as ``name``)."""
    tests = rules.parent / name
    tests.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = _run([promtool, "test", "rules", tests.name], cwd=rules.parent)
    return result.returncode, result.stdout + result.stderr


def _loosen(rules: Path, pattern: str, scale: float, what: str) -> None:
    """Multiply the threshold ``pattern``'s second group matches by ``scale``, in place."""
    text = rules.read_text()
    loosened = re.sub(pattern, lambda m: m.group(1) + str(float(m.group(2)) * scale), text)
    assert loosened != text, f"{what} not found in the rules"
    rules.write_text(loosened)


def test_alert_unit_tests_can_fail(
    stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> None:
    """The same cases against rules with a loosened threshold must fail: the tests bite."""
    promtool = need("promtool")
    stack = stacks("staging", "docker")
    tree = _tree(stack, tmp_path)
    assert tree is not None
    _, rules = tree
    text = rules.read_text()
    doc, _ = build_tests(rules.name, text, alerts=["LunaCrisisLatencyHigh"])
    # A crisis latency budget 100x larger would let the slow crisis path pass.
    _loosen(rules, r"(probe_duration_seconds\{job=\"crisis-probe\"\} > )([0-9.]+)", 100,
            "staging: the crisis latency rule")  # fmt: skip
    rc, out = _run_tests(promtool, rules, doc, "luna-alerts.test.yml")
    assert rc != 0 and "LunaCrisisLatencyHigh:firing" in out, out


def test_burn_rate_cases_can_fail(
    stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> None:
    """Without its long window, the page fires on a 30 s blip: the healthy case must catch it."""
    promtool = need("promtool")
    stack = stacks("prod", "kubernetes")
    tree = _tree(stack, tmp_path)
    assert tree is not None
    _, rules = tree
    text = rules.read_text()
    name = "LunaCrisisAvailabilityBudgetBurn"
    doc, _ = build_tests(rules.name, text, evaluation_interval="15s", alerts=[name])
    # Compare the 1 h window against a threshold 100x lower: a blip now "burns".
    _loosen(rules, r"(luna:crisis_probe_errors:ratio_avg1h > )([0-9.e-]+)", 1 / 100,
            "prod: the 1 h burn window")  # fmt: skip
    rc, out = _run_tests(promtool, rules, doc, "burn.test.yml")
    assert rc != 0 and f"{name}:healthy" in out, out

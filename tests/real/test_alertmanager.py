"""amtool and Alertmanager (prometheus-alertmanager 0.25) on the rendered alertmanager.yml.

Debian ships 0.25; the stacks pin 0.27 (``prom/alertmanager:v0.27.0``). What these
tests rely on is the same in both: routing (``dispatch/route.go``) and inhibition
(``inhibit/inhibit.go``: a target is muted when a source matches and every label in
``equal`` is equal) did not change between the two (prometheus/alertmanager
CHANGELOG.md, 0.26.0 and 0.27.0). What did change, the removal of API v1 in 0.27,
is asserted from the CHANGELOG in tests/test_alerting.py.

The render masks the file (it holds the receivers' keys), so the tests read it
from the resource inputs, where the stack's secrets are the render's
placeholders (``placeholder-<key>``, ``https://placeholder.invalid/<key>``).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from infra.render import on_platform, render
from tests.conftest import rendered
from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.support import Daemon, free_port, wait_for_port
from tests.support.alerting import alertmanager_yml, rules_yml
from tests.support.tools import need

pytestmark = pytest.mark.slow

CRISIS = {
    "alertname": "LunaCrisisEndpointDown",
    "severity": "critical",
    "cause": "crisis-availability",
    "job": "crisis-probe",
}
WARNING = {"alertname": "LunaCrisisLatencyHigh", "severity": "warning", "cause": "crisis-latency"}


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need("amtool"), *args], capture_output=True, text=True, timeout=30, check=False
    )


def _routes(config: Path, labels: dict[str, str]) -> str:
    """The receivers ``amtool config routes test`` picks for an alert with ``labels``."""
    matchers = [f"{k}={v}" for k, v in labels.items()]
    result = _amtool("config", "routes", "test", f"--config.file={config}", *matchers)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def _check(config: Path, what: str) -> None:
    result = _amtool("check-config", str(config))
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "SUCCESS" in out, f"{what}: amtool check-config:\n{out}"


@pytest.mark.parametrize("stack_platform", FULL_STACK_PARAMS, ids=stack_id)
def test_rendered_config_passes_amtool_and_routes_as_intended(
    stack_platform: tuple[str, str], tmp_path: Path
) -> None:
    stack, platform = stack_platform
    text = alertmanager_yml(rendered(stack, platform))
    config = tmp_path / "alertmanager.yml"
    config.write_text(text)
    _check(config, f"{stack}/{platform}")
    labels = {"stack": stack}
    assert _routes(config, {**CRISIS, **labels}) == "pager", f"{stack}: the crisis alert"
    assert _routes(config, {**WARNING, **labels}) == "chat", f"{stack}: the warning"
    watchdog = _routes(config, {"alertname": "Watchdog", "severity": "none", **labels})
    assert watchdog == ("heartbeat" if stack == "prod" else "watchdog-unmonitored"), watchdog
    failing = {"alertname": "LunaAlertNotificationsFailing", "severity": "critical"}
    assert _routes(config, {**failing, **labels}) == "everyone"
    # An alert nobody classified still reaches a person.
    assert _routes(config, {"alertname": "Unclassified", **labels}) == "pager"
    receivers = {r["name"]: r for r in yaml.safe_load(text)["receivers"]}
    # Prod pages PagerDuty; staging, with only a chat webhook, pages the chat channel.
    expected = "pagerduty_configs" if stack == "prod" else "slack_configs"
    assert expected in receivers["pager"], f"{stack}: pager receiver {receivers['pager']}"
    assert "slack_configs" in receivers["chat"] or stack == "prod", receivers["chat"]


# Outages that must wake someone (docs/runbooks/alerts/README.md: a critical pages):
# the crisis path down or blind, the service down, the data's safety net broken.
MUST_PAGE = (
    "LunaCrisisEndpointDown",
    "LunaCrisisEdgeDown",
    "LunaCrisisProbeFailing",
    "LunaCrisisAvailabilityBudgetBurn",
    "LunaCrisisLatencyBudgetBurn",
    "LunaAppDown",
    "LunaDatabaseDown",
    "LunaProxyDown",
    "LunaBackupTooOld",
    "LunaBackupMissing",
    "LunaBackupFailed",
    "LunaRestoreDrillFailed",
    "LunaWalArchivingFailing",
    "LunaEdgeCertExpiring",
)


@pytest.mark.parametrize("stack_platform", FULL_STACK_PARAMS, ids=stack_id)
def test_outages_that_must_wake_someone_reach_the_pager(
    stack_platform: tuple[str, str], tmp_path: Path
) -> None:
    """Each such alert, with the labels its rendered rule gives it, routed by amtool."""
    stack, platform = stack_platform
    r = rendered(stack, platform)
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager_yml(r))
    groups = rules_yml(r)["groups"]
    rules = {rule["alert"]: rule for g in groups for rule in g["rules"] if "alert" in rule}
    present = [name for name in MUST_PAGE if name in rules]
    assert {"LunaCrisisEndpointDown", "LunaDatabaseDown", "LunaBackupTooOld"} <= set(present), (
        f"{stack}/{platform}: rules lack a must-page alert: {sorted(rules)}"
    )
    wrong = {}
    for name in present:
        labels = {"alertname": name, "stack": stack, **rules[name].get("labels", {})}
        if (receiver := _routes(config, labels)) != "pager":
            wrong[name] = (receiver, labels.get("severity"))
    assert not wrong, f"{stack}/{platform}: outages that do not page: {wrong}"


def test_every_receiver_kind_passes_amtool(tmp_path: Path) -> None:
    r = render(
        "staging",
        overrides=[
            ("platform", "kubernetes"),
            ("smtpSmarthost", "smtp.example.com:587"),
            ("smtpFrom", "alerts@luna-app.com"),
            ("alertEmailTo", "oncall@luna-app.com"),
            ("smtpUsername", "alerts"),
        ],
        secrets=[
            ("opsgenieApiKey", "og-key-0123456789abcdef"),
            ("chatWebhookUrl", "https://hooks.slack.com/services/T0/B0/x"),
            ("alertWebhookUrl", "https://incidents.example.com/hook"),
            ("heartbeatUrl", "https://hc-ping.com/abc"),
            ("smtpPassword", "smtp-password"),
        ],
    )
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager_yml(r))
    _check(config, "staging with every receiver")
    # The generic webhook sees every critical and warning alert, then routing goes on.
    assert _routes(config, {**CRISIS, "stack": "staging"}) == "webhook,pager"
    assert _routes(config, {**WARNING, "stack": "staging"}) == "webhook,chat"
    receivers = {x["name"]: x for x in yaml.safe_load(config.read_text())["receivers"]}
    assert set(receivers["pager"]) == {"name", "opsgenie_configs"}, receivers["pager"]
    assert set(receivers["chat"]) == {"name", "slack_configs", "email_configs"}, receivers["chat"]


def test_amtool_rejects_a_broken_route(tmp_path: Path) -> None:
    """The check bites: a route to a receiver that does not exist fails."""
    text = alertmanager_yml(rendered("prod", "kubernetes"))
    broken = text.replace("receiver: chat\n", "receiver: nobody\n", 1)
    assert broken != text
    config = tmp_path / "alertmanager.yml"
    config.write_text(broken)
    result = _amtool("check-config", str(config))
    assert result.returncode != 0, result.stdout
    assert "nobody" in result.stdout + result.stderr


@pytest.mark.parametrize("platform", ["docker", "kubernetes"])
def test_dev_with_monitoring_switched_on_passes_amtool(platform: str, tmp_path: Path) -> None:
    """Dev runs no monitoring by default; switched on, its receivers may be empty."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        alertmanager_yml(render("dev", overrides=[*on_platform(platform), ("monitoring", "true")]))
    )
    _check(config, f"dev/{platform}")
    assert _routes(config, {**CRISIS, "stack": "dev"}) == "pager"


def _post_alerts(port: int, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": a} for a in alerts]).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/alerts",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http://127.0.0.1
        assert response.status == 200, response.status


def _inhibited(port: int) -> dict[str, bool]:
    """alertname/cause -> muted by an inhibit rule (the API computes it on each read)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=10) as resp:
        alerts = json.loads(resp.read())
    return {
        f"{a['labels']['alertname']}/{a['labels'].get('cause')}": bool(a["status"]["inhibitedBy"])
        for a in alerts
    }


def test_a_critical_inhibits_warnings_of_its_own_cause_only(tmp_path: Path) -> None:
    """A long-running critical must not silence a warning of another cause (a certificate
    about to expire) by matching on ``stack`` alone: the real Alertmanager decides."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager_yml(rendered("prod", "kubernetes")))
    port = free_port()
    daemon = Daemon(
        [need("prometheus-alertmanager"), f"--config.file={config}",
         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        log=tmp_path / "alertmanager.log",
    )  # fmt: skip
    stack = {"stack": "prod"}
    same_cause = {"alertname": "LunaCrisisLatencyHigh", "severity": "warning",
                  "cause": "crisis-availability"}  # fmt: skip
    other_cause = {"alertname": "LunaCertificateExpiring", "severity": "warning",
                   "cause": "certificate-expiry"}  # fmt: skip
    try:
        wait_for_port(port, proc=daemon.proc, what="alertmanager", log=daemon.log, timeout=30)
        _post_alerts(port, [{**CRISIS, **stack}, {**same_cause, **stack}, {**other_cause, **stack}])
        deadline = time.monotonic() + 20
        while not (state := _inhibited(port)).get("LunaCrisisLatencyHigh/crisis-availability"):
            assert time.monotonic() < deadline, f"same-cause warning never inhibited: {state}"
            time.sleep(0.2)
    finally:
        daemon.stop()
    assert state["LunaCrisisEndpointDown/crisis-availability"] is False, state
    assert state["LunaCertificateExpiring/certificate-expiry"] is False, (
        f"a critical of cause crisis-availability silences a warning of another cause: {state}"
    )

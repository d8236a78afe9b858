"""amtool (prometheus-alertmanager 0.25) on the rendered alertmanager.yml of every stack.

The render masks the file (it holds the receivers' keys), so the tests read it
from the resource inputs, where the stack's secrets are the render's
placeholders (``placeholder-<key>``, ``https://placeholder.invalid/<key>``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from infra.render import on_platform, render
from tests.conftest import rendered
from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.support.alerting import alertmanager_yml
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
            ("opsgenieApiKey", "og-key"),
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

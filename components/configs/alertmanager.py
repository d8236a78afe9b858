"""alertmanager.yml: who is told about which alert, and how often.

Routing (compared with kube-prometheus-stack, whose defaults are group_wait
30s, group_interval 5m, repeat_interval 12h and a root receiver named ``null``
that swallows everything not matched):

- ``severity=critical`` (crisis path, data at risk) pages after 10 s, so a
  crisis outage reaches a person within two minutes of its start; a page that
  is still firing is repeated every hour, because an unacknowledged page for
  a mental-health crisis line must not go quiet for half a day.
- ``severity=warning`` goes to chat (and e-mail) with the stock 30 s / 5 m, and
  repeats every 12 h: tickets, not wake-ups.
- ``alertname=Watchdog`` goes to the external heartbeat every minute; the
  heartbeat service raises the alarm when it stops (a dead-man's switch).
- ``LunaAlertNotificationsFailing`` goes to every channel at once, since the
  channel that fails may be the one it would have used.
- The generic webhook (``alertWebhookUrl``, an incident tool) gets every
  critical and warning alert with the timings of the channel that alert goes to.
- There is no ``null`` receiver: the root route itself pages (prod) or posts
  to chat, so an alert that matches no sub-route still reaches a person.

A critical alert inhibits the warnings with the same ``stack`` and ``cause``
labels (one cause, one notification).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import yaml

__all__ = [
    "CONFIG_PATH",
    "PAGERDUTY_URL",
    "Email",
    "Receivers",
    "alertmanager_config",
]

CONFIG_PATH = "/etc/alertmanager/alertmanager.yml"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
OPSGENIE_URL = "https://api.opsgenie.com/"

ChatKind = Literal["slack", "teams"]

_TIMINGS: dict[str, dict[str, str]] = {
    "critical": {"group_wait": "10s", "group_interval": "1m", "repeat_interval": "1h"},
    "warning": {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "12h"},
}
"""Per severity: how soon the first notification of a group goes, how soon a change
to it, and how often it is repeated while it fires (the module docstring's why)."""


Password = TypeVar("Password")


@dataclass(frozen=True)
class Email(Generic[Password]):
    """An SMTP receiver: ``Email[str]`` here; the component's args hold the password as a
    secret Output (``components.alerting.EmailArgs``) until it resolves."""

    smarthost: str
    """``host:port`` of the SMTP relay (STARTTLS required)."""
    sender: str
    to: str
    username: str | None = None
    password: Password | None = None


@dataclass(frozen=True)
class Receivers:
    """Where notifications go. Values are plain text here: the caller keeps them secret."""

    pagerduty_routing_key: str | None = None
    opsgenie_api_key: str | None = None
    chat_kind: ChatKind = "slack"
    chat_webhook_url: str | None = None
    email: Email[str] | None = None
    webhook_url: str | None = None
    """A generic webhook that receives every critical and warning alert."""
    heartbeat_url: str | None = None
    """The dead-man's switch: receives the always-firing Watchdog every minute."""
    allow_unrouted: bool = False
    """Dev only: with no pager and no chat, alerts stay in Alertmanager's own UI."""

    @property
    def can_page(self) -> bool:
        return bool(self.pagerduty_routing_key or self.opsgenie_api_key)


def _pager_configs(r: Receivers, *, urgent: bool = True) -> dict[str, Any]:
    configs: dict[str, Any] = {}
    if r.pagerduty_routing_key:
        configs["pagerduty_configs"] = [
            {
                "routing_key": r.pagerduty_routing_key,
                # PagerDuty maps event severity to urgency: warnings do not wake anyone.
                "severity": "critical" if urgent else "warning",
                "send_resolved": True,
            }
        ]
    if r.opsgenie_api_key:
        configs["opsgenie_configs"] = [
            {
                "api_key": r.opsgenie_api_key,
                "priority": "P1" if urgent else "P3",
                "send_resolved": True,
            }
        ]
    return configs


def _chat_configs(r: Receivers) -> dict[str, Any]:
    configs: dict[str, Any] = {}
    if r.chat_webhook_url and r.chat_kind == "slack":
        configs["slack_configs"] = [
            {
                "api_url": r.chat_webhook_url,
                "send_resolved": True,
                "title": '{{ template "slack.default.title" . }}',
            }
        ]
    elif r.chat_webhook_url:
        # msteams_configs: Alertmanager >= 0.26 (the deployed image is 0.27).
        configs["msteams_configs"] = [{"webhook_url": r.chat_webhook_url, "send_resolved": True}]
    if r.email:
        configs["email_configs"] = [{"to": r.email.to, "send_resolved": True}]
    return configs


def alertmanager_config(r: Receivers) -> str:
    """The whole alertmanager.yml; it contains secrets, so ship it as a secret file.

    The routing tree is the same in every stack; what differs is what the
    ``pager`` and ``chat`` receivers hold. Without a pager (staging), pages go
    to chat; without chat, warnings go to the pager at low urgency.
    """
    chat = _chat_configs(r)
    pager = _pager_configs(r) if r.can_page else chat
    warnings = chat or _pager_configs(r, urgent=False)
    if not (pager and warnings) and not r.allow_unrouted:
        raise ValueError("alertmanager: no receiver can page or post to chat")
    receivers: list[dict[str, Any]] = [
        {"name": "pager", **pager},
        {"name": "chat", **warnings},
        {"name": "everyone", **_pager_configs(r), **chat},
    ]
    if r.heartbeat_url:
        receivers.append(
            {
                "name": "heartbeat",
                "webhook_configs": [{"url": r.heartbeat_url, "send_resolved": False}],
            }
        )
    else:
        # Outside prod the heartbeat is optional; this receiver is named for what it is.
        receivers.append({"name": "watchdog-unmonitored"})
    if r.webhook_url:
        receivers.append(
            {"name": "webhook", "webhook_configs": [{"url": r.webhook_url, "send_resolved": True}]}
        )

    routes: list[dict[str, Any]] = [
        {
            "receiver": "heartbeat" if r.heartbeat_url else "watchdog-unmonitored",
            "matchers": ['alertname="Watchdog"'],
            "group_wait": "0s",
            "group_interval": "1m",
            # A repeat is due at the first flush after repeat_interval; the last
            # send was a moment after its flush, so 1m would slip to every 2 minutes.
            "repeat_interval": "50s",
        },
    ]
    if r.webhook_url:
        # The incident tool gets each alert with the timings of the channel that alert
        # goes to: inheriting the root's 5m group_interval, a crisis that came back
        # within 5 minutes of an earlier one reached it minutes after the pager.
        routes += [
            {
                "receiver": "webhook",
                "matchers": [f'severity="{severity}"'],
                "continue": True,
                **_TIMINGS[severity],
            }
            for severity in ("critical", "warning")
        ]
    routes += [
        {
            "receiver": "everyone",
            "matchers": ['alertname="LunaAlertNotificationsFailing"'],
            "group_wait": "10s",
            "repeat_interval": "1h",
        },
        {"receiver": "pager", "matchers": ['severity="critical"'], **_TIMINGS["critical"]},
        {"receiver": "chat", "matchers": ['severity="warning"'], **_TIMINGS["warning"]},
    ]
    glob: dict[str, Any] = {"resolve_timeout": "5m"}
    if r.pagerduty_routing_key:
        glob["pagerduty_url"] = PAGERDUTY_URL
    if r.opsgenie_api_key:
        glob["opsgenie_api_url"] = OPSGENIE_URL
    if r.email:
        glob.update(
            {
                "smtp_smarthost": r.email.smarthost,
                "smtp_from": r.email.sender,
                "smtp_require_tls": True,
            }
        )
        if r.email.username:
            glob["smtp_auth_username"] = r.email.username
        if r.email.password:
            glob["smtp_auth_password"] = r.email.password
    doc = {
        "global": glob,
        "route": {
            # Unmatched alerts (no or an unknown severity) page: nothing routes to nowhere.
            "receiver": "pager",
            "group_by": ["alertname", "stack", "cause"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["stack", "cause"],
            },
            {
                # The public URL fails because the app's crisis endpoint does: one page.
                "source_matchers": ['alertname="LunaCrisisEndpointDown"'],
                "target_matchers": ['alertname="LunaCrisisEdgeDown"'],
                "equal": ["stack"],
            },
        ],
        "receivers": receivers,
    }
    return "# Generated by components/configs/alertmanager.py\n" + yaml.dump(
        doc, Dumper=_NoAliases, sort_keys=False
    )


class _NoAliases(yaml.SafeDumper):
    """Write shared receiver configs out in full: an operator reads them, not a parser."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

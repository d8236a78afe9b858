"""Alerting settings: Alertmanager's receivers and the crisis SLO.

Part of the settings (``infra/settings.py`` calls :func:`read_alerting` and
:func:`check_alerting`), kept apart by concern. Secret values stay Outputs;
URLs are checked from their raw text before anything is created, and an error
never shows them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from infra.config_error import ConfigError
from infra.secret_checks import https_url
from infra.settings_types import AlertingSettings, Settings

if TYPE_CHECKING:
    from infra.config_reader import Reader

__all__ = [
    "ALERT_SECRET_KEYS",
    "AlertingSettings",
    "check_alerting",
    "https_url",
    "missing_receivers",
    "placeholder_secret",
    "read_alerting",
    "required_secret_groups",
]

# Alertmanager's receivers (docs/configuration.md, "Alerting").
PAGER_KEYS: Final = ("pagerdutyRoutingKey", "opsgenieApiKey")
URL_SECRET_KEYS: Final = ("chatWebhookUrl", "alertWebhookUrl", "heartbeatUrl")
ALERT_SECRET_KEYS: Final = (*PAGER_KEYS, *URL_SECRET_KEYS, "smtpPassword")


def read_alerting(r: Reader) -> AlertingSettings:
    email = "an e-mail address such as oncall@luna-app.com"
    return AlertingSettings(
        pagerduty_routing_key=r.secret("pagerdutyRoutingKey"),
        opsgenie_api_key=r.secret("opsgenieApiKey"),
        chat_kind=r.choice("chatKind", ("slack", "teams")),  # type: ignore[arg-type]
        chat_webhook_url=r.secret_url("chatWebhookUrl"),
        webhook_url=r.secret_url("alertWebhookUrl"),
        heartbeat_url=r.secret_url("heartbeatUrl"),
        smtp_smarthost=r.optional(
            "smtpSmarthost",
            "host:port of the SMTP relay, e.g. smtp.example.com:587",
            lambda v: bool(re.fullmatch(r"[A-Za-z0-9.-]+:\d{1,5}", v)),
        ),
        smtp_from=r.optional("smtpFrom", email, _email),
        email_to=r.optional("alertEmailTo", email, _email),
        smtp_username=r.raw("smtpUsername", "empty, or the SMTP login") or None,
        smtp_password=r.secret("smtpPassword"),
        slo_objective_percent=r.number("crisisSloObjective", 90, 99.99),
        runbook_base_url=r.checked(
            "runbookBaseUrl",
            "an https:// URL of the docs/runbooks folder, without a trailing slash",
            lambda v: https_url(v) and not v.endswith("/"),
        ),
        receiver_ports=_url_ports(URL_SECRET_KEYS),
    )


def _url_ports(keys: tuple[str, ...]) -> tuple[int, ...]:
    """The ports the webhook URLs name (443 when none): Kubernetes' egress opens
    exactly these (secret_url has already checked each is an https URL)."""
    from urllib.parse import urlsplit

    from pulumi.runtime import config as runtime_config

    ports = set()
    for key in keys:
        text = runtime_config.get_config(f"luna:{key}")
        if text:
            ports.add(urlsplit(text).port or 443)
    return tuple(sorted(ports))


def _email(value: str) -> bool:
    return bool(re.fullmatch(r"[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", value))


def required_secret_groups(stack: str) -> tuple[tuple[str, ...], ...]:
    """Secret keys of which a monitored stack needs at least one per group.

    Prod pages a person and has a dead-man's switch; staging may page a chat channel.
    """
    if stack == "prod":
        return (PAGER_KEYS, ("heartbeatUrl",))
    if stack == "staging":
        return (("chatWebhookUrl", *PAGER_KEYS),)
    return ()


def placeholder_secret(key: str) -> str:
    """What the offline render uses for a secret it cannot decrypt."""
    if key in URL_SECRET_KEYS:
        return f"https://placeholder.invalid/{key}"
    return f"placeholder-{key}"


def missing_receivers(s: Settings) -> list[tuple[str, ...]]:
    """The groups of receiver secrets of which a monitored stack has none set."""
    if not s.monitoring:
        return []
    a = s.alerting
    return [
        group
        for group in required_secret_groups(s.stack)
        if not any(getattr(a, _ALERT_FIELDS[k]) is not None for k in group)
    ]


def check_alerting(s: Settings) -> None:
    a = s.alerting
    if s.stack == "prod" and not s.monitoring:
        raise ConfigError("monitoring", "false", "true in prod: every alert must reach a person")
    if not s.monitoring:
        return
    for group in required_secret_groups(s.stack):
        present = [k for k in group if getattr(a, _ALERT_FIELDS[k]) is not None]
        if not present:
            names = " or ".join(f"luna:{k}" for k in group)
            what = {
                "pagerdutyRoutingKey": "a paging receiver",
                "chatWebhookUrl": "a receiver that reaches a person",
                "heartbeatUrl": "a dead-man's switch",
            }[group[0]]
            raise ConfigError(
                group[0], None, f"{s.stack} needs {what}: pulumi config set --secret {names} …"
            )
    if a.pagerduty_routing_key is not None and a.opsgenie_api_key is not None:
        raise ConfigError("opsgenieApiKey", "[hidden]", "set one pager: PagerDuty or Opsgenie")
    email = {"smtpSmarthost": a.smtp_smarthost, "smtpFrom": a.smtp_from, "alertEmailTo": a.email_to}
    if any(email.values()) and not all(email.values()):
        missing = next(k for k, v in email.items() if not v)
        raise ConfigError(missing, None, "smtpSmarthost, smtpFrom and alertEmailTo go together")
    if (a.smtp_username is None) != (a.smtp_password is None):
        raise ConfigError(
            "smtpPassword" if a.smtp_password is None else "smtpUsername",
            None,
            "smtpUsername and smtpPassword are set together",
        )


_ALERT_FIELDS: Final = {
    "pagerdutyRoutingKey": "pagerduty_routing_key",
    "opsgenieApiKey": "opsgenie_api_key",
    "chatWebhookUrl": "chat_webhook_url",
    "heartbeatUrl": "heartbeat_url",
}

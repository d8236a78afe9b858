"""Alertmanager for Monitoring: its receivers, its configuration and its service.

The receivers' keys and URLs are secret config; they reach alertmanager.yml,
built by :func:`components.configs.alertmanager.alertmanager_config`, as secret
Outputs only. More than one replica forms a gossip cluster through the
platform's per-replica DNS name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.configs import alertmanager
from components.platforms import Deployment, Platform
from components.spec import ConfigFile, HealthCheck, Port, Resources, ServiceSpec

__all__ = ["AlertReceivers", "EmailArgs", "deploy_alertmanager"]

_ALERTMANAGER = "alertmanager"


EmailArgs = alertmanager.Email[pulumi.Input[str]]
"""The SMTP receiver, its password a secret Output (Alertmanager's config takes it resolved)."""


@dataclass(frozen=True)
class AlertReceivers:
    """Alertmanager's receivers; every credential and URL stays a secret Output."""

    pagerduty_routing_key: pulumi.Input[str] | None = None
    opsgenie_api_key: pulumi.Input[str] | None = None
    chat_kind: alertmanager.ChatKind = "slack"
    chat_webhook_url: pulumi.Input[str] | None = None
    email: EmailArgs | None = None
    webhook_url: pulumi.Input[str] | None = None
    heartbeat_url: pulumi.Input[str] | None = None
    webhook_ports: tuple[int, ...] = ()
    """TCP ports of the chat, webhook and heartbeat URLs (their egress is opened)."""
    allow_unrouted: bool = False


def deploy_alertmanager(
    name: str,
    platform: Platform,
    *,
    image: str,
    receivers: AlertReceivers,
    replicas: int,
    parent: pulumi.Resource,
) -> tuple[Deployment, pulumi.Output[str]]:
    """Alertmanager, never published: reach its UI through a tunnel or port-forward.

    Returns its deployment and its alertmanager.yml (secret: it holds the receivers' keys).
    """
    r = receivers
    secrets: dict[str, pulumi.Input[str]] = {
        key: value
        for key, value in {
            "pagerduty_routing_key": r.pagerduty_routing_key,
            "opsgenie_api_key": r.opsgenie_api_key,
            "chat_webhook_url": r.chat_webhook_url,
            "webhook_url": r.webhook_url,
            "heartbeat_url": r.heartbeat_url,
            "smtp_password": r.email.password if r.email else None,
        }.items()
        if value is not None
    }

    def render(values: dict[str, Any]) -> str:
        email = r.email
        return alertmanager.alertmanager_config(
            alertmanager.Receivers(
                pagerduty_routing_key=values.get("pagerduty_routing_key"),
                opsgenie_api_key=values.get("opsgenie_api_key"),
                chat_kind=r.chat_kind,
                chat_webhook_url=values.get("chat_webhook_url"),
                email=alertmanager.Email(
                    smarthost=email.smarthost,
                    sender=email.sender,
                    to=email.to,
                    username=email.username,
                    password=values.get("smtp_password"),
                )
                if email
                else None,
                webhook_url=values.get("webhook_url"),
                heartbeat_url=values.get("heartbeat_url"),
                allow_unrouted=r.allow_unrouted,
            )
        )

    config: pulumi.Output[str] = pulumi.Output.secret(
        pulumi.Output.all(**secrets).apply(
            lambda values: render(values if isinstance(values, dict) else {})
        )
    )
    # The platform's headless Service for a replicated service (one A record per
    # ready replica); checked against what the platform made, below.
    peers = f"{_ALERTMANAGER}-pods"
    am_args = [
        f"--config.file={alertmanager.CONFIG_PATH}",
        "--storage.path=/alertmanager",
        "--web.listen-address=:9093",
    ]
    ports = [Port("http", 9093)]
    if replicas > 1:
        # An unresolvable peer is kept and retried every 10 s (cluster.go,
        # setInitialFailed/reconnect), so replicas that start before either is
        # ready still find each other once the Service lists them.
        am_args += [
            "--cluster.listen-address=0.0.0.0:9094",
            f"--cluster.peer={peers}:9094",
            "--cluster.reconnect-interval=10s",
        ]
        # memberlist gossips over both TCP and UDP on one port.
        ports += [Port("cluster", 9094), Port("cluster-udp", 9094, protocol="udp")]
    else:
        am_args.append("--cluster.listen-address=")
    deployment = platform.deploy(
        f"{name}-alertmanager",
        ServiceSpec(
            name=_ALERTMANAGER,
            component="monitoring",
            image=image,
            replicas=replicas,
            resources=Resources(memory_mb=128, cpus=0.25),
            args=tuple(am_args),
            ports=tuple(ports),
            files=(ConfigFile(alertmanager.CONFIG_PATH, config, secret=True),),
            # Silences and the notification log; a restarted replica regains
            # them from its peer through gossip.
            writable_paths=("/alertmanager",),
            health=HealthCheck.http(9093, "/-/ready"),
            user="65534:65534",
            connects_to=(_ALERTMANAGER,) if replicas > 1 else (),
            # Pagers, chat, e-mail and the heartbeat are outside the stack.
            internet_egress=True,
            internet_ports=_receiver_ports(receivers),
        ),
        parent=parent,
    )
    if replicas > 1 and tuple(deployment.dns_names) != (peers,):
        raise ValueError(
            f"alertmanager peers {peers!r} do not match the platform's {deployment.dns_names}"
        )
    return deployment, config


def _receiver_ports(r: AlertReceivers) -> tuple[int, ...]:
    """HTTPS for the pagers; the chat, webhook and heartbeat URLs' ports; the SMTP relay's."""
    ports = set(r.webhook_ports)
    if r.pagerduty_routing_key is not None or r.opsgenie_api_key is not None:
        ports.add(443)  # their APIs' fixed https:// URLs (alertmanager defaults)
    if r.email is not None:
        ports.add(int(r.email.smarthost.rsplit(":", 1)[1]))
    # No receiver at all (dev): 443 as before, never an empty list (all ports).
    return tuple(sorted(ports or {443}))

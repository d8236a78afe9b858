#!/usr/bin/env python3
"""Page a person through the stack's own receivers when the pipeline fails.

GitHub tells only whoever triggered a run; the stack's pager and chat receivers
(the same secrets Alertmanager uses, docs/configuration.md "Alerting") reach the
on-call person. Every receiver the store holds for the stack is tried:

- ``pagerdutyRoutingKey``: PagerDuty Events API v2 (``POST /v2/enqueue``,
  ``event_action: trigger``, severity ``critical``);
- ``opsgenieApiKey``: Opsgenie Alert API (``POST /v2/alerts``, ``GenieKey``, P1);
- ``chatWebhookUrl``: a Slack or Teams incoming webhook (``luna:chatKind``);
- ``alertWebhookUrl``: the generic webhook, with the JSON event below.

    notify.py --stack prod --event deploy-failed --summary "..." [--run-url URL]

Exit 0 when at least one receiver accepted the event (2xx), 1 when none did or
none is configured (the step fails, so GitHub's own notice still goes out).
Secret values (keys, webhook URLs) never appear in the output.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from lib.cli import tool_parser

__all__ = ["EVENTS", "Delivery", "main", "messages", "send_all"]

EVENTS = ("deploy-failed", "rollback", "rollback-failed", "drift", "post-deploy-check-failed")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
OPSGENIE_URL = "https://api.opsgenie.com/v2/alerts"
RECEIVER_KEYS = ("pagerdutyRoutingKey", "opsgenieApiKey", "chatWebhookUrl", "alertWebhookUrl")
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Delivery:
    receiver: str
    url: str
    body: dict[str, object]
    headers: dict[str, str]


def messages(
    receivers: dict[str, str],
    *,
    stack: str,
    event: str,
    summary: str,
    run_url: str,
    chat_kind: str,
    endpoints: dict[str, str] | None = None,
) -> list[Delivery]:
    """What to POST where: a pure function of the receivers the store holds."""
    urls = {"pagerduty": PAGERDUTY_URL, "opsgenie": OPSGENIE_URL, **(endpoints or {})}
    title = f"[luna {stack}] {event}: {summary}"
    json_type = {"Content-Type": "application/json"}
    out: list[Delivery] = []
    if key := receivers.get("pagerdutyRoutingKey"):
        body: dict[str, object] = {
            "routing_key": key,
            "event_action": "trigger",
            "dedup_key": f"luna-pipeline-{stack}-{event}",
            "payload": {
                "summary": title[:1024],
                "source": "luna pipeline",
                "severity": "critical",
                "custom_details": {"stack": stack, "event": event, "run": run_url},
            },
            "links": [{"href": run_url, "text": "pipeline run"}] if run_url else [],
        }
        out.append(Delivery("pagerduty", urls["pagerduty"], body, json_type))
    if key := receivers.get("opsgenieApiKey"):
        body = {
            "message": title[:130],
            "alias": f"luna-pipeline-{stack}-{event}",
            "description": f"{summary}\n{run_url}",
            "priority": "P1",
            "tags": ["luna", stack, event],
        }
        out.append(
            Delivery(
                "opsgenie",
                urls["opsgenie"],
                body,
                {**json_type, "Authorization": f"GenieKey {key}"},
            )
        )
    if url := receivers.get("chatWebhookUrl"):
        text = f"{title}\n{run_url}".strip()
        body = {"text": text} if chat_kind == "slack" else {"title": title, "text": text}
        out.append(Delivery(f"chat ({chat_kind})", url, body, json_type))
    if url := receivers.get("alertWebhookUrl"):
        body = {
            "source": "luna-pipeline",
            "stack": stack,
            "event": event,
            "summary": summary,
            "run_url": run_url,
        }
        out.append(Delivery("webhook", url, body, json_type))
    return out


def post(d: Delivery, timeout: float = 15) -> str | None:
    """None when the receiver answered 2xx, else why not (never the URL: it is secret)."""
    data = json.dumps(d.body).encode()
    req = urllib.request.Request(d.url, data=data, headers=d.headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        return f"unreachable ({type(err).__name__})"


def send_all(deliveries: Sequence[Delivery], send: Callable[[Delivery], str | None] = post) -> int:
    if not deliveries:
        print("notify: no receiver configured for this stack; nobody was paged", file=sys.stderr)
        return 1
    delivered = 0
    for d in deliveries:
        problem = send(d)
        print(f"notify: {d.receiver}: {'delivered' if problem is None else problem}")
        delivered += problem is None
    return 0 if delivered else 1


def chat_kind(stack: str, root: Path = REPO) -> str:
    """``luna:chatKind`` from Pulumi.<stack>.yaml (plain config), else Pulumi.yaml's default."""
    stack_file = root / f"Pulumi.{stack}.yaml"
    config = yaml.safe_load(stack_file.read_text()) if stack_file.is_file() else None
    kind = ((config or {}).get("config") or {}).get("luna:chatKind")
    return str(kind) if kind in ("slack", "teams") else "slack"


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser("notify", __doc__)
    parser.add_argument("--stack", required=True, choices=("dev", "staging", "prod"))
    parser.add_argument("--event", required=True, choices=EVENTS)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--run-url", default="")
    parser.add_argument("--pagerduty-url", default=PAGERDUTY_URL, help=argparse.SUPPRESS)
    parser.add_argument("--opsgenie-url", default=OPSGENIE_URL, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from stack_secrets import SecretStore, store_id

    store = SecretStore()
    receivers = {k: v for k in RECEIVER_KEYS if (v := store.get(store_id(args.stack, k)))}
    deliveries = messages(
        receivers,
        stack=args.stack,
        event=args.event,
        summary=args.summary,
        run_url=args.run_url,
        chat_kind=chat_kind(args.stack),
        endpoints={"pagerduty": args.pagerduty_url, "opsgenie": args.opsgenie_url},
    )
    return send_all(deliveries)


if __name__ == "__main__":
    sys.exit(main())

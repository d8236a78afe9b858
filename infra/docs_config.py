"""Generate the docs' reference tables from the code they describe.

    .venv/bin/python -m infra.docs_config           # exit 1 and name the stale tables
    .venv/bin/python -m infra.docs_config --write   # rewrite them in place

Each table sits in a Markdown file between ``<!-- generated:NAME begin … -->``
and ``<!-- generated:NAME end -->``; text outside the markers is left alone.

- ``settings`` (docs/configuration.md): every key ``infra/settings.py`` reads, with
  the type, default and description from ``Pulumi.yaml`` and the allowed values
  recorded while settings validates the defaults: the very text its errors print.
- ``secrets`` (docs/configuration.md): which stack requires which secret
  (``required_secrets``), and what happens when one is absent (``SECRET_DOCS``).
- ``overrides`` (docs/environments.md): every value a ``Pulumi.<stack>.yaml`` sets.
- ``sizing`` (docs/environments.md): summed limits of each stack's render, per
  platform (``infra/sizing.py``).
- ``diagram-docker``, ``diagram-kubernetes`` (docs/platforms.md): prod's render
  drawn as Mermaid (``infra/diagrams.py``).

Adding a key: read it in ``infra/settings.py``, declare it with a default and a
description in ``Pulumi.yaml`` (a secret: add a line to ``SECRET_DOCS``), then
run ``--write``. tests/test_docs_config.py fails until the docs match.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from infra.settings import (
    NAMESPACE,
    SECRET_KEYS,
    STACKS,
    KeySpec,
    describe_keys,
    required_secret_groups,
    required_secrets,
)

if TYPE_CHECKING:
    from infra.render import Rendered

__all__ = ["PLATFORMS", "SECRET_DOCS", "blocks", "describe", "main", "stale", "write"]

REPO = Path(__file__).resolve().parent.parent
PLATFORMS = ("docker", "kubernetes")
DOCS = {
    "settings": "docs/configuration.md",
    "secrets": "docs/configuration.md",
    "overrides": "docs/environments.md",
    "environments": "docs/environments.md",
    "sizing": "docs/environments.md",
    "first-deploy-secrets": "docs/first-deploy.md",
    "diagram-overview": "README.md",
    "diagram-docker": "docs/platforms.md",
    "diagram-kubernetes": "docs/platforms.md",
}
# The stack whose render the platform diagrams show.
DIAGRAM_STACK = "prod"
COMMAND = "python -m infra.docs_config --write"

# What each secret does when it is not set. Required-ness comes from settings.
SECRET_DOCS: dict[str, str] = {
    "registryPassword": "no registry credentials: images must be public "
    "(set it with registryServer and registryUsername)",
    "openaiApiKey": "the app runs without its AI features",
    "dbPassword": "generated (`random.RandomPassword`, 32 chars)",
    "redisPassword": "generated",
    "grafanaPassword": "generated (Grafana admin)",
    "elasticPassword": "generated (Elasticsearch `elastic` superuser)",
    "jwtSecret": "generated (64 chars)",
    "tlsCert": "a self-signed ECDSA pair from pulumi-tls; set with `tlsKey`",
    "tlsKey": "see `tlsCert`",
    "kubeconfig": "the provider's default kubeconfig (Kubernetes stacks)",
    "pagerdutyRoutingKey": (
        "PagerDuty Events v2 routing key: `severity=critical` alerts page through it"
    ),
    "opsgenieApiKey": (
        "Opsgenie API key (priority P1), instead of PagerDuty; setting both is refused"
    ),
    "chatWebhookUrl": (
        "Slack or Teams incoming-webhook URL (`chatKind`), `https://` only: warnings go "
        "there; in a stack without a pager, pages too"
    ),
    "heartbeatUrl": (
        "`https://` URL of an external dead-man's switch (Healthchecks.io, Dead Man's "
        "Snitch, PagerDuty/Opsgenie heartbeat): the always-firing `Watchdog` alert is "
        "POSTed there every minute, and the service alarms when it stops"
    ),
    "alertWebhookUrl": (
        "`https://` URL of a generic webhook (Alertmanager's webhook JSON) that receives "
        "every critical and warning alert, e.g. an incident tool"
    ),
    "smtpPassword": ("SMTP password for alert e-mail"),
    "backupAccessKeyId": (
        "object-store access key for WAL and base backups; without backups "
        "(`backups: false`, dev only) nothing is archived"
    ),
    "backupSecretAccessKey": "see `backupAccessKeyId`",
    "backupEncryptionKey": (
        "pgBackRest's client-side AES-256 cipher pass (Docker); keep a copy outside "
        "the stack: no backup can be restored without it"
    ),
}
# Pulumi.yaml's `type` for each kind of validation.
YAML_TYPES = {"integer": "integer", "boolean": "boolean"}

RenderFn = Callable[[str, str], "Rendered"]


def project_config(root: Path = REPO) -> dict[str, dict[str, Any]]:
    """Pulumi.yaml's ``config`` declarations, by short key."""
    project = yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}
    return {k.split(":", 1)[1]: v for k, v in (project.get("config") or {}).items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(root: Path = REPO) -> list[KeySpec]:
    """How settings validates each key, found by validating Pulumi.yaml's defaults."""
    declared = project_config(root)
    return describe_keys({f"{NAMESPACE}:{k}": _text(v.get("default")) for k, v in declared.items()})


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(value: Any) -> str:
    text = _text(value)
    return f"`{text}`" if text else "(empty)"


def settings_table(root: Path = REPO) -> str:
    declared = project_config(root)
    specs = {s.key: s for s in describe(root) if s.kind != "secret"}
    # Pulumi.yaml's order groups keys by service; keys it lacks follow (a test fails on them).
    order = [k for k in declared if k in specs] + [k for k in specs if k not in declared]
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for key in order:
        decl = declared.get(key, {})
        rows.append(
            f"| `{key}` | {decl.get('type', '?')} | {_code(decl.get('default', ''))} | "
            f"{_cell(specs[key].allowed)} | {_cell(str(decl.get('description', '')))} |"
        )
    return "\n".join(rows)


def _requirement(key: str, stack: str) -> str | None:
    """How ``stack`` needs ``key``: alone, as one of a group, or not at all."""
    if key in required_secrets(stack):
        return stack
    for group in required_secret_groups(stack):
        if key in group and len(group) > 1:
            others = " or ".join(f"`{k}`" for k in group if k != key)
            return f"{stack} (or {others})"
        if key in group:
            return stack
    return None


def secrets_table() -> str:
    rows = ["| key | required in | when absent |", "|---|---|---|"]
    for key in SECRET_KEYS:
        needed = [r for s in STACKS if (r := _requirement(key, s))]
        absent = SECRET_DOCS.get(key, "")
        if needed:
            absent = f"refused where required; elsewhere {absent}"
        rows.append(f"| `{key}` | {', '.join(needed) or 'no stack'} | {absent} |")
    return "\n".join(rows)


def first_deploy_table() -> str:
    """Every secret a stack refuses to deploy without, per stack, with its command."""
    rows = [
        "| stack | secret | set it with | the pipeline injects it from |",
        "|---|---|---|---|",
    ]
    for stack in STACKS:
        for key in required_secrets(stack):
            rows.append(
                f"| {stack} | `{key}` | `{_set_command(key, stack)}` | {_store(stack, (key,))} |"
            )
        for group in required_secret_groups(stack):
            keys = " or ".join(f"`{k}`" for k in group)
            what = f"one of {keys}" if len(group) > 1 else keys
            rows.append(
                f"| {stack} | {what} | `{_set_command(group[0], stack)}` | {_store(stack, group)} |"
            )
    return "\n".join(rows)


def _store(stack: str, keys: Sequence[str]) -> str:
    # The pipeline's secret store (scripts/stack_secrets.py, docs/pipeline.md "Secrets").
    return " or ".join(f"`luna/{stack}/{k}`" for k in keys)


def _set_command(key: str, stack: str) -> str:
    # A PEM file goes in on stdin: a multi-line value, and never in the shell's history.
    source = {"tlsCert": " < fullchain.pem", "tlsKey": " < privkey.pem"}.get(key, "")
    return f"pulumi config set --secret luna:{key} --stack {stack}{source}"


def overrides_table(root: Path = REPO) -> str:
    from infra.render import stack_config_file

    declared = project_config(root)
    per_stack = {
        s: {
            k.split(":", 1)[1]: v
            for k, v in (
                (yaml.safe_load(stack_config_file(s, root).read_text()) or {}).get("config") or {}
            ).items()
        }
        for s in STACKS
    }
    keys = [k for k in declared if any(k in per_stack[s] for s in STACKS)]
    keys += sorted({k for s in STACKS for k in per_stack[s]} - set(declared))
    rows = [
        "| key | default (Pulumi.yaml) | " + " | ".join(STACKS) + " |",
        "|---|---|" + "---|" * len(STACKS),
    ]
    for key in keys:
        cells = [_code(per_stack[s][key]) if key in per_stack[s] else "" for s in STACKS]
        default = _code(declared[key].get("default", "")) if key in declared else "(none)"
        rows.append(f"| `{key}` | {default} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


_PURPOSE = {
    "dev": ("a developer's laptop", "`./scripts/deploy-dev`", "passphrase"),
    "staging": ("integration, QA, pre-production", "pipeline, push to `develop`", "KMS / Vault"),
    "prod": (
        "live users",
        "pipeline, push to `main`, after staging, with approval",
        "KMS / Vault (separate key)",
    ),
}


def environments_table() -> str:
    """The stacks side by side, every figure read from Pulumi.yaml and the stack files."""
    from infra.render import load_stack_config

    cfg = {s: load_stack_config(s, placeholders=False)[0] for s in STACKS}

    def v(stack: str, key: str) -> str:
        return cfg[stack].get(f"{NAMESPACE}:{key}", "")

    def on(stack: str, key: str, text: str) -> str:
        return text if v(stack, key) == "true" else "off (switchable)"

    def replicas(stack: str) -> str:
        ceiling = f" (HPA up to {v(stack, 'appMaxReplicas')} on Kubernetes)"
        return v(stack, "appReplicas") + (ceiling if v(stack, "appReplicas") != "1" else "")

    def backups(stack: str) -> str:
        if v(stack, "backups") != "true" or v(stack, "database") != "postgres":
            return "none"
        return (
            f"WAL continuously; a base backup every {v(stack, 'backupIntervalHours')} h; "
            f"kept {v(stack, 'backupRetentionDays')} days"
        )

    rows: dict[str, Callable[[str], str]] = {
        "purpose": lambda s: _PURPOSE[s][0],
        "platform": lambda s: v(s, "platform"),
        "URL": lambda s: v(s, "appUrl"),
        "app replicas": replicas,
        "database": lambda s: "SQLite on a volume" if v(s, "database") == "sqlite"
        else f"PostgreSQL, {v(s, 'postgresMemoryMb')} MiB",
        "backups": backups,
        "Redis": lambda s: on(s, "cache", f"{v(s, 'redisMaxMemoryMb')} MiB"),
        "nginx TLS edge": lambda s: f"ports {v(s, 'httpPort')}/{v(s, 'httpsPort')}"
        if v(s, "proxy") == "true" else "off (the app answers on localhost:3000)",
        "Prometheus + Grafana": lambda s: on(
            s, "monitoring", f"{v(s, 'prometheusRetentionDays')} days of metrics"
        ),
        "Elasticsearch + Logstash + Kibana": lambda s: on(
            s, "logging", f"{v(s, 'logRetentionDays')} days of logs, "
            f"{v(s, 'auditRetentionDays')} days of audit"
        ),
        "data protection": lambda s: "`protect` + `retain_on_delete` on data"
        if v(s, "protectData") == "true" else "none",
        "secrets provider": lambda s: _PURPOSE[s][2],
        "deployed by": lambda s: _PURPOSE[s][1],
    }  # fmt: skip
    lines = ["| | " + " | ".join(STACKS) + " |", "|---|" + "---|" * len(STACKS)]
    for label, cell in rows.items():
        lines.append(f"| {label} | " + " | ".join(_cell(cell(s)) for s in STACKS) + " |")
    return "\n".join(lines)


def _default_render(stack: str, platform: str) -> Rendered:
    from infra.render import on_platform, render

    return render(stack, overrides=on_platform(platform))


def sizing_table(render_fn: RenderFn | None = None) -> str:
    from infra.sizing import sizing

    fn = render_fn or _default_render
    rows = [
        "| stack | platform | running containers / pods | memory limits | CPU limits "
        "| storage requested | on top |",
        "|---|---|---|---|---|---|---|",
    ]
    for stack in STACKS:
        for platform in PLATFORMS:
            size = sizing(fn(stack, platform))
            extra = []
            if size.per_node_memory_mb:
                extra.append(
                    f"per node: {size.per_node_memory_mb:.0f} MiB, {size.per_node_cpus:g} CPU"
                )
            if size.app_ceiling_extra_memory_mb:
                extra.append(
                    f"app at HPA ceiling: +{size.app_ceiling_extra_memory_mb / 1024:.1f} GiB, "
                    f"+{size.app_ceiling_extra_cpus:g} CPU"
                )
            storage = (
                f"{size.storage_gb:.0f} GiB (PVCs)"
                if platform == "kubernetes"
                else "volumes, unsized"
            )
            rows.append(
                f"| {stack} | {platform} | {size.workloads} | {size.memory_mb / 1024:.2f} GiB | "
                f"{size.cpus:g} | {storage} | {'; '.join(extra) or '-'} |"
            )
    return "\n".join(rows)


def diagram(platform: str, render_fn: RenderFn | None = None) -> str:
    from infra.diagrams import mermaid

    rendered = (render_fn or _default_render)(DIAGRAM_STACK, platform)
    return f"```mermaid\n{mermaid(rendered, platform, DIAGRAM_STACK)}\n```"


def overview_diagram(render_fn: RenderFn | None = None) -> str:
    from infra.diagrams import overview

    rendered = (render_fn or _default_render)(DIAGRAM_STACK, "docker")
    return f"```mermaid\n{overview(rendered, DIAGRAM_STACK)}\n```"


def blocks(render_fn: RenderFn | None = None, root: Path = REPO) -> dict[str, str]:
    """Every generated table and diagram, by block name."""
    return {
        "settings": settings_table(root),
        "secrets": secrets_table(),
        "first-deploy-secrets": first_deploy_table(),
        "overrides": overrides_table(root),
        "environments": environments_table(),
        "sizing": sizing_table(render_fn),
        **{f"diagram-{p}": diagram(p, render_fn) for p in PLATFORMS},
        "diagram-overview": overview_diagram(render_fn),
    }


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated:{name} begin[^>]*-->\n)(.*?)(<!-- generated:{name} end -->)", re.S
    )


def _replace(text: str, name: str, body: str) -> str:
    pattern = _pattern(name)
    if not pattern.search(text):
        raise LookupError(f"no <!-- generated:{name} begin/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text, count=1)


def stale(generated: dict[str, str], root: Path = REPO) -> list[str]:
    """Names of blocks whose text in the docs differs from ``generated``."""
    found = []
    for name, body in generated.items():
        text = (root / DOCS[name]).read_text()
        match = _pattern(name).search(text)
        if not match or match.group(2) != body + "\n":
            found.append(f"{name} ({DOCS[name]})")
    return found


def write(generated: dict[str, str], root: Path = REPO) -> None:
    for name, body in generated.items():
        path = root / DOCS[name]
        path.write_text(_replace(path.read_text(), name, body))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.docs_config", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the generated tables")
    args = parser.parse_args(argv)
    generated = blocks()
    if args.write:
        write(generated)
        print(f"wrote {', '.join(generated)}")
        return 0
    outdated = stale(generated)
    if outdated:
        print(f"stale: {', '.join(outdated)}; run {COMMAND}", file=sys.stderr)
        return 1
    print("docs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

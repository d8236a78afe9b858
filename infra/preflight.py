"""Preflight: check, before ``pulumi up``, everything a stack needs, and report it all at once.

    python -m infra.preflight --stack staging --values config.json [--ca-bundle ca.pem]
        [--kubeconfig FILE] [--config KEY=VALUE]... [--secret KEY=VALUE]...

``--values`` is ``pulumi config --json --show-secrets --stack <s>`` (what
scripts/preflight writes to a private temporary file): every value the stack
holds, secrets decrypted. Without it only the committed files are read, and
their ``secure:`` values count as missing, because nothing here can decrypt them.

Checks: every required secret; the settings as ``pulumi up`` validates them; the
edge's TLS pair (matches, covers the host, 14 days left, chain in order); the
pager key's format; the object store (reachable with the backup keys, versioning
on); and the platform: the Docker host's engine, or on Kubernetes the
CloudNativePG and plugin CRDs, the operator version, the storage class (Retain
in prod), the node count and metrics-server.

Prints a Markdown table. Exit 0 when every check passed, 1 when one failed,
2 on bad arguments (one line, no traceback).
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import pulumi

from infra.config_error import NAMESPACE, ConfigError
from infra.preflight_checks import (
    Check,
    docker_host,
    missing_secrets,
    object_store,
    pager_key,
    tls_pair,
)
from infra.preflight_kube import KubeApi, KubeconfigError, kube_checks
from infra.render import UsageError, load_stack_config
from infra.settings import (
    STACKS,
    Settings,
    load_settings,
    placeholder_secret,
    required_secret_groups,
    required_secrets,
)

__all__ = ["main", "preflight", "stack_values"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"preflight: error: {message}\n")


def stack_values(
    stack: str, values_json: Mapping[str, object] | None, pairs: Sequence[tuple[str, str]]
) -> tuple[dict[str, str], set[str]]:
    """The stack's keys (short names) and which are secret: defaults, the stack file,
    then ``pulumi config --json`` values, then the command line's."""
    config, secret_full = load_stack_config(stack, placeholders=False)
    values = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(NAMESPACE + ":")}
    secrets = {k.split(":", 1)[1] for k in secret_full}
    # A `secure:` value this machine cannot decrypt is not known to be set.
    for key in secrets:
        if values.get(key) == placeholder_secret(key):
            del values[key]
    for full, entry in (values_json or {}).items():
        if not full.startswith(NAMESPACE + ":") or not isinstance(entry, dict):
            continue
        key = full.split(":", 1)[1]
        value = entry.get("value")
        values[key] = value if isinstance(value, str) else json.dumps(value)
        if entry.get("secret"):
            secrets.add(key)
    for key, value in pairs:
        values[key] = value
    return values, secrets


def _required(
    stack: str, values: Mapping[str, str]
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    groups = [] if values.get("monitoring") == "false" else list(required_secret_groups(stack))
    return required_secrets(stack), groups


def _settings(stack: str, values: Mapping[str, str], secrets: set[str]) -> Settings | ConfigError:
    """Validate as ``pulumi up`` would, with placeholders where a secret is missing
    (its own row already says so), so every other problem shows in this run too."""
    required, groups = _required(stack, values)
    filled = dict(values)
    for key in [*required, *(g[0] for g in groups if not any(values.get(k) for k in g))]:
        filled.setdefault(key, placeholder_secret(key))
    config = {f"{NAMESPACE}:{k}": v for k, v in filled.items()}
    placeholders = {*required, *(k for g in groups for k in g)}
    secret_keys = [f"{NAMESPACE}:{k}" for k in secrets | placeholders if k in filled]

    def run() -> Settings | ConfigError:
        pulumi.runtime.set_all_config(config, secret_keys)
        try:
            return load_settings(stack)
        except ConfigError as err:
            return err

    # Pulumi keeps config in context variables: a copied context leaves the caller's alone.
    return contextvars.copy_context().run(run)


def preflight(
    stack: str,
    values: Mapping[str, str],
    secrets: set[str],
    *,
    ca_bundle: str | None = None,
    kubeconfig: str | None = None,
) -> list[Check]:
    required, groups = _required(stack, values)
    rows = missing_secrets(required, groups, values)
    settings = _settings(stack, values, secrets)
    if isinstance(settings, ConfigError):
        return [*rows, Check("settings", "FAIL", str(settings))]
    rows.append(Check("settings", "ok", f"{stack} on {settings.platform} validates"))
    rows += pager_key(values)
    if values.get("tlsCert") and values.get("tlsKey"):
        rows += tls_pair(values["tlsCert"], values["tlsKey"], settings.server_name)
    rows += _object_store(settings, values, ca_bundle)
    rows += _platform(settings, values, kubeconfig)
    return rows


def _object_store(s: Settings, values: Mapping[str, str], ca_bundle: str | None) -> list[Check]:
    b = s.backup_target
    keys = (values.get("backupAccessKeyId"), values.get("backupSecretAccessKey"))
    if b is None or not s.backups or not all(keys):
        return [Check("object store", "skip", "no backups configured, or their keys are missing")]
    return object_store(
        endpoint=b.endpoint, region=b.region, bucket=b.bucket, access_key=keys[0] or "",
        secret_key=keys[1] or "", path_style=b.uri_style == "path", ca_bundle=ca_bundle,
    )  # fmt: skip


def _platform(s: Settings, values: Mapping[str, str], kubeconfig: str | None) -> list[Check]:
    if s.platform == "docker":
        return docker_host(s.docker_host)
    text = values.get("kubeconfig") or kubeconfig
    if not text:
        return [Check("kubernetes api", "FAIL", "no kubeconfig: luna:kubeconfig or --kubeconfig")]
    try:
        api = KubeApi.from_kubeconfig(text, s.kube_context)
    except (KubeconfigError, OSError, ValueError) as err:
        return [Check("kubernetes api", "FAIL", f"kubeconfig: {err}")]
    return kube_checks(api, stack=s.stack, storage_class=s.storage_class)


def _table(rows: Sequence[Check]) -> str:
    lines = ["| check | status | detail |", "|---|---|---|"]
    for r in rows:
        cells = (c.replace("|", "\\|").replace("\n", " ") for c in (r.name, r.status, r.detail))
        lines.append("| " + " | ".join(cells) + " |")
    failed = sum(r.failed for r in rows)
    verdict = "all checks passed" if not failed else f"{failed} of {len(rows)} checks failed"
    return "\n".join([f"preflight: {verdict}", "", *lines])


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text.split('=')[0]!r}")
    return key.removeprefix(f"{NAMESPACE}:"), value


def _read_json(path: Path) -> dict[str, object]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(
            f"--values {path}: not a `pulumi config --json` file ({type(err).__name__})"
        ) from None
    if not isinstance(loaded, dict):
        raise UsageError(f"--values {path}: expected a JSON object of luna:<key> entries")
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m infra.preflight", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", required=True, choices=STACKS)
    parser.add_argument("--values", type=Path, help="`pulumi config --json --show-secrets` output")
    parser.add_argument("--config", action="append", type=_pair, default=[], metavar="KEY=VALUE")
    parser.add_argument("--secret", action="append", type=_pair, default=[], metavar="KEY=VALUE")
    parser.add_argument("--ca-bundle", help="CA certificates for the object store's endpoint")
    parser.add_argument("--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG") or None)
    args = parser.parse_args(argv)
    try:
        loaded = _read_json(args.values) if args.values else None
        values, secrets = stack_values(args.stack, loaded, [*args.config, *args.secret])
        secrets |= {k for k, _ in args.secret}
        kube = args.kubeconfig.read_text() if args.kubeconfig else None
    except (UsageError, OSError) as err:
        print(f"preflight: error: {err}", file=sys.stderr)
        return 2
    rows = preflight(args.stack, values, secrets, ca_bundle=args.ca_bundle, kubeconfig=kube)
    print(_table(rows))
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

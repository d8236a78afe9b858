#!/usr/bin/env python3
"""Hand a stack's secrets from the secret store to Pulumi, before every preview and up.

The keys come from the code, never from a list kept here: what the settings
refuse to deploy without (``infra.settings.required_secrets``), every member of
the receiver groups of which the stack needs one (``required_secret_groups``),
and every other secret key the program reads (``SECRET_KEYS``), passed on when
the store holds it (otherwise the program generates it or goes without).

    stack_secrets.py keys --stack prod     # the keys, one a line: KEY required|group|optional
    stack_secrets.py apply --stack prod    # store -> pulumi config set --secret (stdin)

The store is AWS Secrets Manager, one secret per key named ``luna/<stack>/<key>``
(docs/pipeline.md, "Secrets"), reached with the job's OIDC role. ``apply`` masks
every value in the log (``::add-mask::``), pipes it to ``pulumi config set
--secret`` on stdin (never argv), and prints only key names. Exit 1 names the
first required key (or group) the store lacks; exit 2 on bad usage.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lib.cli import tool_parser

__all__ = ["MissingSecretError", "Need", "SecretStore", "apply", "main", "needed", "store_id"]

Kind = Literal["required", "group", "optional"]
Fetch = Callable[[str], str | None]


class MissingSecretError(Exception):
    """A secret the stack requires is not in the store (the message names it, never a value)."""


@dataclass(frozen=True)
class Need:
    key: str
    kind: Kind
    group: tuple[str, ...] = ()


def needed(stack: str) -> list[Need]:
    """Every secret key of ``stack``, from the settings code (infra/settings.py)."""
    from infra.settings import SECRET_KEYS, required_secret_groups, required_secrets

    out: dict[str, Need] = {k: Need(k, "required") for k in required_secrets(stack)}
    for group in required_secret_groups(stack):
        for key in group:
            out.setdefault(key, Need(key, "group", group))
    for key in SECRET_KEYS:
        out.setdefault(key, Need(key, "optional"))
    return list(out.values())


def store_id(stack: str, key: str) -> str:
    return f"luna/{stack}/{key}"


class SecretStore:
    """AWS Secrets Manager through boto3 (endpoint: AWS_ENDPOINT_URL_SECRETS_MANAGER)."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            import boto3  # type: ignore[import-untyped]  # requirements.lock

            client = boto3.client("secretsmanager")
        self._client = client

    def get(self, secret_id: str) -> str | None:
        try:
            found = self._client.get_secret_value(SecretId=secret_id)
        except self._client.exceptions.ResourceNotFoundException:
            return None
        value = found.get("SecretString")
        return value if isinstance(value, str) else None


def _mask(value: str) -> None:
    # GitHub masks per line, so a PEM block is masked line by line.
    for line in value.splitlines() or [value]:
        if line.strip():
            print(f"::add-mask::{line}")


def apply(stack: str, fetch: Fetch, set_secret: Callable[[str, str], None]) -> list[str]:
    """Set every secret the store holds; return the keys set. Raises MissingSecretError
    when a required key or a whole group is missing, before anything is set."""
    found: dict[str, str] = {}
    needs = needed(stack)
    for need in needs:
        value = fetch(store_id(stack, need.key))
        if value is None:
            if need.kind == "required":
                raise MissingSecretError(
                    f"stack_secrets: {stack} requires luna:{need.key}; the store has no "
                    f"{store_id(stack, need.key)}"
                )
            continue
        _mask(value)
        found[need.key] = value
    for group in {n.group for n in needs if n.kind == "group"}:
        if not any(k in found for k in group):
            names = " or ".join(store_id(stack, k) for k in group)
            raise MissingSecretError(
                f"stack_secrets: {stack} needs one of {names}; the store has none"
            )
    for key, value in found.items():
        set_secret(key, value)
    return list(found)


def _pulumi_set(stack: str) -> Callable[[str, str], None]:
    def run(key: str, value: str) -> None:
        # stdin, not argv: a process list never shows the value.
        subprocess.run(
            ["pulumi", "config", "set", "--secret", f"luna:{key}", "--stack", stack],
            input=value,
            text=True,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser("stack_secrets", __doc__)
    parser.add_argument("command", choices=("keys", "apply"))
    parser.add_argument("--stack", required=True, choices=("dev", "staging", "prod"))
    args = parser.parse_args(argv)
    if args.command == "keys":
        for need in needed(args.stack):
            print(f"{need.key} {need.kind}")
        return 0
    store = SecretStore()
    try:
        keys = apply(args.stack, store.get, _pulumi_set(args.stack))
    except MissingSecretError as missing:
        print(missing, file=sys.stderr)
        return 1
    print(f"{args.stack}: set {len(keys)} secrets from the store: {', '.join(sorted(keys))}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as f:
            f.write(f"Secrets for `{args.stack}` from the store: {', '.join(sorted(keys))}\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

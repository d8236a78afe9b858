"""Every command in the docs runs in a test, or its block says why it cannot run here.

The ledger (tests/support/doc_ledger.py) reads the commands and names, for each,
the test that runs it; a command no test runs must sit in a block marked
``<!-- not-run: why -->``. This module holds the ledger to that, and runs two kinds
itself: the commands this machine runs as they are (the render, the docs
generator, the smoke check's image mode, the render cost script; in a copy of the
repository, exit 0), and the ``pulumi`` commands, against the CLI stand-in.
Count: ``.venv/bin/python -m tests.support.doc_ledger``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.doc_ledger import Command, ledger, verdict
from tests.support.doc_ledger import doc_commands as ledger_commands
from tests.support.tools import REPO, copy_checkout


def doc_commands() -> list[tuple[str, str]]:
    """(doc, command) for every command the ledger reads."""
    return [(c.doc, c.text) for c in ledger_commands()]


def _runner(c: Command) -> str | None:
    found = verdict(c)
    return found[0] if found else None


def _strip_comment(cmd: str) -> str:
    return " ".join(shlex.split(cmd, comments=True)) if "#" in cmd else cmd


def test_every_doc_command_runs_in_a_test_or_its_block_says_why_not() -> None:
    rows = ledger()
    unaccounted = [f"{c.doc}: {c.text}" for c, v in rows if v is None]
    vague = [f"{c.doc}: {c.marker}" for c, v in rows if c.marker and len(c.marker) < 40]
    by_block: dict[str, list[str | None]] = {}
    for c, _ in rows:
        if c.block is not None and c.marker:
            by_block.setdefault(c.block, []).append(_runner(c))
    stale = [b.strip()[:80] for b, kinds in by_block.items() if "marked" not in kinds]
    venvless = [f"{c.doc}: {c.text}" for c, _ in rows if re.match(r"python3? -m infra", c.text)]
    stackless = [
        f"{c.doc}: {c.text}"
        for c, _ in rows
        if re.match(r"pulumi config set ", c.text) and "--stack" not in c.text
    ]
    assert not venvless, f"use .venv/bin/python (a plain python lacks the SDK): {venvless}"
    assert not stackless, f"name the stack (else it lands on the selected one): {stackless}"
    assert not unaccounted, (
        "run these in a test (a runner in tests/support/doc_ledger.py), or mark their block "
        f"<!-- not-run: why -->: {unaccounted}"
    )
    assert not vague, f"a not-run marker names what is missing and what covers it: {vague}"
    assert not stale, f"every command of these marked blocks runs: drop the marker: {stale}"


def test_the_ledger_counts_at_least_85_percent_run() -> None:
    rows = ledger()
    ran = [c for c, v in rows if v is not None and v[0] != "marked"]
    assert len(rows) >= 140, f"expected the docs' ~150 commands, found {len(rows)}"
    assert len(ran) / len(rows) >= 0.85, f"{len(ran)} of {len(rows)} run"


@pytest.mark.slow
def test_doc_commands_that_can_run_here_succeed(tmp_path: Path) -> None:
    copy = copy_checkout(tmp_path / "repo")
    (copy / ".venv").symlink_to(REPO / ".venv")
    generated = ("docs/configuration.md", "docs/environments.md", "docs/platforms.md")
    before = {doc: (copy / doc).read_text() for doc in generated}
    runnable = [(c.doc, c.text) for c in ledger_commands() if _runner(c) == "here"]
    assert len(runnable) >= 5, f"expected the render, docs and smoke commands: {runnable}"
    seen = set()
    for name, cmd in runnable:
        cmd = _strip_comment(cmd)
        if cmd in seen:
            continue
        seen.add(cmd)
        proc = subprocess.run(
            ["bash", "-c", cmd], cwd=copy, capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"{name}: `{cmd}` exited {proc.returncode}\n{proc.stderr}"
        print(f"\nran ({name}): {cmd}\n{proc.stdout.strip()[-400:]}")
    for doc in generated:
        assert (copy / doc).read_text() == before[doc], f"{doc} was stale: --write changed it"


# What a documented command names that a reader types in: the stand-in gets a value.
# (pattern, value): the first template in the README and configuration.md's examples.
_PLACEHOLDERS = (
    (r"<stack>", "staging"),
    (r"luna:<service> true", "luna:cache true"),
    (
        r"--secret luna:<key> (<value>|…)",
        "--secret luna:chatWebhookUrl https://hooks.example.org/T0",
    ),
    (r"luna:<key> <value>", "luna:appReplicas 3"),
    # The digest the pipeline pinned (the runbook's image bump).
    (r"@sha256:<digest>", "@sha256:" + "0123456789abcdef" * 4),
)
_TEMPLATE = re.compile(r"<[a-z][a-z -]*>|…")
_STUB = """#!/usr/bin/env bash
exec "$LUNA_PYTHON" -m tests.support.pulumi_cli "$@"
"""


def _pulumi_statements() -> tuple[list[tuple[str, str]], list[str]]:
    """The docs' pulumi commands as a shell runs them, and the templates among them."""
    runs, templates = [], []
    for c in ledger_commands():
        if _runner(c) != "pulumi":
            continue
        name, cmd = c.doc, c.text
        for old, new in _PLACEHOLDERS:
            cmd = re.sub(old, new, cmd)
        if _TEMPLATE.search(cmd):
            templates.append(f"{name}: {cmd}")
        else:
            runs.append((name, _strip_comment(cmd)))
    return runs, templates


@pytest.mark.slow  # a process per command
def test_pulumi_commands_parse_against_the_cli_stand_in(tmp_path: Path) -> None:
    from tests.support.pulumi_cli import _keys

    secret, known = _keys()
    runs, templates = _pulumi_statements()
    assert not templates, f"give these placeholders a value in _PLACEHOLDERS: {templates}"
    assert len(runs) >= 60, f"expected the docs' pulumi commands, found {len(runs)}"
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(_STUB)
    (bin_dir / "pulumi").chmod(0o755)
    for f in ("fullchain.pem", "privkey.pem", "key.pem", "home/.kube/staging.yaml"):
        (tmp_path / f).write_text("stand-in file for a redirect\n")
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
        "LUNA_PYTHON": sys.executable, "PYTHONPATH": str(REPO),
        "LUNA_DEV_CONFIG": str(tmp_path / "dev.yaml"), "new": "Zq8vN3kR7wP2xL9mT4yB6cH1",
        "LUNA_KEYS": json.dumps({"secret": sorted(secret), "known": sorted(known)}),
    }  # fmt: skip
    failed = []
    for name, cmd in runs:
        proc = subprocess.run(
            ["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if proc.returncode != 0:
            failed.append(f"{name}: `{cmd}`: {proc.stderr.strip()[-300:]}")
    assert not failed, "documented pulumi commands the CLI would refuse:\n" + "\n".join(failed)
    print(f"\n{len(runs)} pulumi commands parsed")


def test_the_cli_stand_in_refuses_what_the_cli_would(tmp_path: Path) -> None:
    from tests.support.pulumi_cli import check

    assert check(["up", "--stack", "staging"]) is None
    assert check(["up", "--stak", "staging"]) is not None, "an unknown flag"
    assert check(["upp", "--stack", "staging"]) is not None, "an unknown command"
    assert check(["up", "--stack", "qa"]) is not None, "an unknown stack"
    assert check(["config", "set", "luna:cahce", "true", "--stack", "dev"]) is not None
    assert check(["config", "set", "luna:dbPassword", "x", "--stack", "dev"]) is not None, (
        "a secret set without --secret"
    )
    assert check(["config", "set", "luna:appReplicas", "0", "--stack", "prod"]) is not None, (
        "a value the settings refuse"
    )
    assert check(["stack", "rm", "dev", "--yes", "--preserve-config"]) is None


# A Docker container named by hand: real names end in a digest that changes when the
# container is replaced, so the runbooks take them from the stack outputs (`workloads`,
# `database_container`). Only the throwaway container a runbook creates itself is named.
_TYPED_NAME = re.compile(
    r"docker (?:logs|exec|inspect|restart|stop|start|cp|ps|kill|rm)\b[^`\n]*?"
    r"\bluna-(?:<stack>|dev|staging|prod)-(?!pitr\b)[a-z]"
)


def test_runbooks_take_container_names_from_the_stack_outputs() -> None:
    from tests.support.doc_ledger import DOCS

    typed = []
    for path in DOCS:
        text = path.read_text().replace("\\\n", " ")
        typed += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in _TYPED_NAME.finditer(text)]
    assert not typed, f"name containers from `pulumi stack output workloads`: {typed}"
    assert _TYPED_NAME.search("`docker logs luna-<stack>-cache`"), "the check can fail"
    assert not _TYPED_NAME.search("docker rm luna-<stack>-pitr"), "the runbook's own container"

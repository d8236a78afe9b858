"""Every command in the docs that can run here is run; every other one says why not.

Commands come from the ```bash blocks of README.md and docs/**/*.md, and from
inline code that starts with a Python invocation. A command this machine can
run (the render, the docs generator, the smoke check's image mode, the render
cost script) runs in a copy of the repository, with this checkout's .venv, and
must exit 0. Others are matched by ``CANNOT_RUN_HERE`` with the reason; an
unknown command fails the test, so a new one is either run or explained.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tools import REPO, copy_checkout

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

# The first word of a command this machine cannot run, and why.
CANNOT_RUN_HERE = {
    "pulumi": "no Pulumi CLI here: test_pulumi_commands_parse_against_the_cli_stand_in runs "
    "each against tests/support/pulumi_cli.py (commands, flags, stacks, keys, values)",
    "./scripts/deploy-dev": "needs the Pulumi CLI (tests/test_dev_shell.py runs it with a stub)",
    "./scripts/destroy-dev": "needs the Pulumi CLI (tests/test_dev_shell.py runs it with a stub)",
    "eval": "the README's dev sequence (tests/test_dev_shell.py)",
    "./scripts/test": "the test command itself",
    "./scripts/preflight": "reads the stack's secrets through the Pulumi CLI; "
    "tests/test_preflight.py and tests/real/test_preflight_real.py run infra.preflight",
    "./scripts/rehearse": "the rehearsal; tests/rehearsal/test_rehearsal.py runs its scenarios",
    ".venv/bin/mutmut": "a mutation sample: about 20 minutes of two cores, run by hand in a "
    "scratch copy (docs/testing.md); the bug catalogue (tests/mutants) runs in the suite",
    "kubectl": "no Kubernetes API server here",
    "helm": "no Kubernetes API server here",
    "curl": "a deployed Elasticsearch; tests/real/test_es_snapshots.py runs the setup "
    "script's own calls against a recording HTTPS server",
    "docker": "no Docker engine or registry for the tests",
    "gh": "the GitHub API",
    "aws": "a cloud account",
    "gcloud": "a cloud account",
    "az": "a cloud account",
    "git": "changes the repository",
    "apt-get": "installs system packages (./scripts/test installs what the tests need)",
    "./scripts/install-lighthouse": "run by ./scripts/test before the audit tests",
    "cp": "copies a file from a deployed backend",
    "ls": "lists a deployed backend's folder",
    "jq": "reads a checkpoint fetched from a deployed backend",
    "pg_restore": "a deployed database; tests/real/test_postgres.py restores a real dump",
    "set": "part of the restore script run inside the database container",
    "echo": "part of the restore script run inside the database container",
    "dump=": "part of the restore script run inside the database container",
    "new=": "a rotation against a deployed database (docs/runbooks/rotation.md)",
    "printf": "feeds psql in a deployed database container (docs/runbooks/rotation.md), or "
    "writes the body of the curl that follows (docs/runbooks/backup-restore.md)",
}
# Commands that reach a deployed site.
NEEDS_A_SITE = re.compile(r"scripts/smoke_check\.py (check|perf) |scripts/audit_site\.py --url ")
RUNS_HERE = re.compile(r"^(\.venv/bin/python |python3 scripts/smoke_check\.py image )")


def _statements(block: str) -> Iterator[str]:
    """Whole commands: continuation lines, pipelines and open quotes joined."""
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        yield pending
        pending = ""
    if pending:
        yield pending


def doc_commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        name = str(path.relative_to(REPO))
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
            found += [(name, cmd) for cmd in _statements(block)]
        outside = re.sub(r"```.*?```", "", text, flags=re.S)
        for cmd in re.findall(
            r"`((?:\.venv/bin/)?python3? [^`]+|pulumi config set [^`]*luna:[^`]+)`", outside
        ):
            found.append((name, cmd))
    # A pipeline continues on the next line with `|`: join it to its command.
    joined: list[tuple[str, str]] = []
    for name, cmd in found:
        if cmd.startswith("|") and joined:
            joined[-1] = (joined[-1][0], f"{joined[-1][1]} {cmd}")
        else:
            joined.append((name, cmd))
    return joined


def _strip_comment(cmd: str) -> str:
    return " ".join(shlex.split(cmd, comments=True)) if "#" in cmd else cmd


def _why_not(cmd: str) -> str | None:
    if RUNS_HERE.match(cmd) and not NEEDS_A_SITE.search(cmd):
        return None
    if NEEDS_A_SITE.search(cmd):
        return "reaches a deployed site; tests/pipeline/test_smoke_check.py runs it locally"
    first = cmd.split()[0]
    first = next((p for p in ("dump=", "new=") if first.startswith(p)), first)
    return CANNOT_RUN_HERE.get(first)


def test_every_doc_command_is_run_here_or_says_why_not() -> None:
    unknown, venvless, stackless = [], [], []
    for name, cmd in doc_commands():
        if re.match(r"python3? -m infra", cmd):
            venvless.append(f"{name}: {cmd}")
        elif _why_not(cmd) is None and not RUNS_HERE.match(cmd):
            unknown.append(f"{name}: {cmd}")
        if re.match(r"pulumi config set ", cmd) and "--stack" not in cmd:
            stackless.append(f"{name}: {cmd}")
    assert not venvless, f"use .venv/bin/python (a plain python lacks the SDK): {venvless}"
    assert not stackless, f"name the stack (else it lands on the selected one): {stackless}"
    assert not unknown, f"run these here, or say why not in CANNOT_RUN_HERE: {unknown}"


@pytest.mark.slow
def test_doc_commands_that_can_run_here_succeed(tmp_path: Path) -> None:
    copy = copy_checkout(tmp_path / "repo")
    (copy / ".venv").symlink_to(REPO / ".venv")
    generated = ("docs/configuration.md", "docs/environments.md", "docs/platforms.md")
    before = {doc: (copy / doc).read_text() for doc in generated}
    runnable = [(n, c) for n, c in doc_commands() if _why_not(c) is None]
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
_PLACEHOLDERS = {"<stack>": "staging"}
_TEMPLATE = re.compile(r"<[a-z][a-z -]*>|…")
_STUB = """#!/usr/bin/env bash
exec "$LUNA_PYTHON" -m tests.support.pulumi_cli "$@"
"""


def _pulumi_statements() -> tuple[list[tuple[str, str]], list[str]]:
    """The docs' pulumi commands as a shell runs them, and the templates among them."""
    runs, templates = [], []
    for name, cmd in doc_commands():
        if not cmd.startswith("pulumi ") or re.search(r"\|\s*(?!pulumi)\w", cmd):
            continue  # a pipe into another program: that program cannot run here
        for old, new in _PLACEHOLDERS.items():
            cmd = cmd.replace(old, new)
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
    print(f"\n{len(runs)} pulumi commands parsed; {len(templates)} templates: {templates}")


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

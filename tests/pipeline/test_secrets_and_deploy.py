"""Secrets reach every preview and up, the preflight runs before every up, and
deploy.sh waits for (never cancels) another run's update of the same stack.

The secret store is moto's Secrets Manager (in-process); ``pulumi`` and the
preflight module are recorders on PATH, because the CLI cannot run here
(../shared/FACTS.md). What runs for real: scripts/stack_secrets.py and
.github/scripts/deploy.sh, as the jobs run them.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stack_secrets

from infra.settings import required_secret_groups, required_secrets
from tests.support.tools import REPO, copy_checkout
from tests.support.workflows import WORKFLOWS, load_workflow

SCRIPTS = REPO / ".github" / "scripts"
STACKS = ("staging", "prod")


def code_required(stack: str) -> tuple[set[str], tuple[tuple[str, ...], ...]]:
    """What the settings code refuses to deploy without: keys, and groups of which one."""
    return set(required_secrets(stack)), required_secret_groups(stack)


# ------------------------------------------------------------ secret store
@pytest.fixture
def store() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        import boto3  # type: ignore[import-untyped]

        yield boto3.client("secretsmanager", region_name="eu-central-1")


def _fill(client: Any, stack: str, keys: set[str]) -> dict[str, str]:
    values = {k: f"value-of-{k}-{'x' * 24}" for k in keys}
    for key, value in values.items():
        client.create_secret(Name=stack_secrets.store_id(stack, key), SecretString=value)
    return values


@pytest.mark.parametrize("stack", STACKS)
def test_apply_sets_every_secret_the_code_requires(
    store: Any, stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, groups = code_required(stack)
    provided = keys | {group[0] for group in groups}
    values = _fill(store, stack, provided)
    set_: dict[str, str] = {}
    stack_secrets.apply(stack, stack_secrets.SecretStore(store).get, set_.__setitem__)
    assert set_ == values, f"{stack}: pulumi config got {sorted(set_)}, store has {sorted(values)}"
    out = capsys.readouterr().out
    for value in values.values():
        # Each value appears once, in its mask command, and nowhere else.
        assert out.count(value) == 1 and f"::add-mask::{value}" in out


@pytest.mark.parametrize("stack", STACKS)
def test_a_missing_required_secret_stops_before_pulumi(store: Any, stack: str) -> None:
    keys, groups = code_required(stack)
    assert keys, f"{stack} requires no secret: the test would prove nothing"
    missing = sorted(keys)[0]
    _fill(store, stack, (keys - {missing}) | {g[0] for g in groups})
    set_: dict[str, str] = {}
    with pytest.raises(stack_secrets.MissingSecretError) as stop:
        stack_secrets.apply(stack, stack_secrets.SecretStore(store).get, set_.__setitem__)
    assert f"luna:{missing}" in str(stop.value) and "value-of" not in str(stop.value)
    assert set_ == {}, "nothing may be set when a required secret is missing"


@pytest.mark.parametrize("stack", STACKS)
def test_a_missing_receiver_group_stops_before_pulumi(store: Any, stack: str) -> None:
    keys, groups = code_required(stack)
    assert groups, f"{stack} has no receiver group"
    _fill(store, stack, keys | {g[0] for g in groups[1:]})
    with pytest.raises(stack_secrets.MissingSecretError) as stop:
        stack_secrets.apply(stack, stack_secrets.SecretStore(store).get, lambda k, v: None)
    assert stack_secrets.store_id(stack, groups[0][0]) in str(stop.value)


@pytest.mark.parametrize("stack", STACKS)
def test_every_required_secret_is_provisioned_in_the_docs(stack: str) -> None:
    # The operator's list (docs/pipeline.md, "Secrets") names each store entry; a
    # secret the code starts requiring fails here until the docs (and so the
    # store) provide it.
    docs = (REPO / "docs" / "pipeline.md").read_text(encoding="utf-8")
    listed = set(re.findall(rf"`luna/{stack}/([A-Za-z]+)`", docs))
    keys, groups = code_required(stack)
    assert keys <= listed, f"{stack}: docs/pipeline.md lacks {sorted(keys - listed)}"
    for group in groups:
        assert set(group) <= listed, (
            f"{stack}: docs/pipeline.md lacks {sorted(set(group) - listed)}"
        )


def test_keys_come_from_the_code_not_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A secret the settings start requiring is fetched without touching the script.
    import infra.settings

    monkeypatch.setattr(infra.settings, "required_secrets", lambda stack: ("newKey",))
    needs = {n.key: n.kind for n in stack_secrets.needed("prod")}
    assert needs["newKey"] == "required"


# -------------------------------------------------- where secrets are applied
def _jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for name, j in load_workflow(path)["jobs"].items():
            yield path.name, name, j


PULUMI_ENTRY = re.compile(r"\.github/scripts/(deploy|preview)\.sh|pulumi (refresh|up|preview)")


def test_every_job_that_runs_pulumi_gets_the_role_and_the_secrets_first() -> None:
    seen = 0
    for wf, name, j in _jobs():
        steps = j.get("steps", [])
        runs = [str(s.get("run", "")) for s in steps]
        at = next((i for i, r in enumerate(runs) if PULUMI_ENTRY.search(r)), None)
        if at is None:
            continue
        seen += 1
        oidc = [
            i
            for i, s in enumerate(steps)
            if "aws-actions/configure-aws-credentials" in str(s.get("uses", ""))
        ]
        assert oidc and oidc[0] < at, f"{wf}: {name} runs pulumi before its OIDC role"
        assert j["permissions"].get("id-token") == "write", f"{wf}: {name}"
        if "pulumi refresh" in runs[at]:
            text = runs[at]
            assert text.index("stack_secrets.py apply") < text.index("pulumi refresh"), name
    assert seen >= 5, f"only {seen} jobs run pulumi"
    for script in ("deploy.sh", "preview.sh"):
        text = (SCRIPTS / script).read_text(encoding="utf-8")
        apply_at = text.index('stack_secrets.py apply --stack "$STACK"')
        pulumi_at = re.search(r"^\s*pulumi (up|preview) ", text, re.MULTILINE)
        assert pulumi_at and apply_at < pulumi_at.start(), f"{script}: secrets after pulumi"


# ------------------------------------------------------- deploy.sh, recorded
_FAKE_PULUMI = """#!/usr/bin/env bash
echo "pulumi $*" >> "$CALLS"
case "$1 $2" in
  "up --stack")
    n=$(cat "$CALLS.up" 2>/dev/null || echo 0); echo $((n + 1)) > "$CALLS.up"
    if [ "$n" -lt "${LOCKED_TIMES:-0}" ]; then
      echo "error: [409] Conflict: Another update is currently in progress."; exit 255
    fi ;;
  "stack output")
    url=https://x.invalid
    if [ "${3:-}" = --json ]; then echo "{\"app_url\": \"$url\"}"; else echo "$url"; fi ;;
  "config --json") echo '{}' ;;
esac
exit 0
"""
_FAKE_PYTHON = """#!/usr/bin/env bash
case "$1 ${2:-}" in
  "-m infra.preflight") echo "preflight $*" >> "$CALLS"; exit "${PREFLIGHT_RC:-0}" ;;
  "scripts/stack_secrets.py apply") echo "secrets $*" >> "$CALLS"; exit 0 ;;
esac
exec "$REAL_PYTHON" "$@"
"""


def _deploy(tmp_path: Path, **env: str) -> tuple[int, list[str], str]:
    """Run deploy.sh as a deploy job does, in a copy of the checkout, with recorders."""
    repo = copy_checkout(tmp_path / "repo")
    # The policy pack's venv, as an earlier step would have made it (deploy.sh skips
    # the install when its python exists).
    venv_python = repo / "policy" / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\n")
    venv_python.chmod(stat.S_IRWXU)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("pulumi", _FAKE_PULUMI), ("python", _FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    calls = tmp_path / "calls"
    base = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "REAL_PYTHON": sys.executable,
        "STACK": "staging",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "PULUMI_BACKEND_URL": "file://" + str(tmp_path),
        "LOCK_POLL_S": "0",
        "IMAGE": "ghcr.io/luna-app/luna-web:1.4.2@sha256:" + "a" * 64,
    }
    done = subprocess.run(
        ["bash", ".github/scripts/deploy.sh"],
        cwd=repo,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return (
        done.returncode,
        [line.split()[0] + " " + line.split()[1] for line in lines],
        (done.stdout + done.stderr),
    )


def test_deploy_orders_login_secrets_preflight_up(tmp_path: Path) -> None:
    rc, calls, log = _deploy(tmp_path)
    assert rc == 0, log
    order = [
        c
        for c in calls
        if c in ("pulumi login", "secrets scripts/stack_secrets.py", "preflight -m", "pulumi up")
    ]
    assert order == [
        "pulumi login",
        "secrets scripts/stack_secrets.py",
        "preflight -m",
        "pulumi up",
    ]


def test_a_failed_preflight_stops_the_up(tmp_path: Path) -> None:
    rc, calls, log = _deploy(tmp_path, PREFLIGHT_RC="1")
    assert rc == 1, log
    assert "pulumi up" not in calls, "pulumi up ran after a failed preflight"
    assert "preflight failed for staging" in log


def test_a_locked_stack_is_waited_for_not_cancelled(tmp_path: Path) -> None:
    # develop's and main's staging deploys have separate concurrency groups, so one
    # may find the stack locked by the other: deploy.sh waits for the lock.
    rc, calls, log = _deploy(tmp_path, LOCKED_TIMES="2")
    assert rc == 0, log
    assert calls.count("pulumi up") == 3, calls
    assert "pulumi cancel" not in calls


def test_a_lock_that_outlasts_the_wait_fails(tmp_path: Path) -> None:
    rc, calls, _ = _deploy(tmp_path, LOCKED_TIMES="99", LOCK_WAIT_S="0")
    assert rc != 0 and calls.count("pulumi up") == 1


def test_the_unrecorded_prod_image_is_refused(tmp_path: Path) -> None:
    # Pulumi.prod.yaml's all-zero digest: nothing recorded yet, so nothing deployed.
    rc, calls, log = _deploy(tmp_path, STACK="prod", IMAGE="")
    assert rc == 1 and "no image recorded for prod" in log, log
    assert "pulumi up" not in calls


def test_every_up_in_the_workflows_goes_through_deploy_sh() -> None:
    for wf, name, j in _jobs():
        for step in j.get("steps", []):
            text = str(step.get("run", ""))
            assert not re.search(r"\bpulumi up\b", text), f"{wf}: {name} runs pulumi up itself"
            if "pulumi/actions" in str(step.get("uses", "")):
                assert "command" not in (step.get("with") or {}), f"{wf}: {name}: {step}"

"""The README's dev commands, run by bash against a stub ``pulumi`` that records
its arguments and environment (the real CLI cannot run here).

The stub models what the real CLI writes, from its source (pulumi/pulumi):

- ``stack select --create`` / ``stack init`` with the passphrase provider saves the
  salt as ``encryptionsalt:`` into ``Pulumi.<stack>.yaml`` of the project it runs in
  (``--cwd``) (pkg/cmd/pulumi/stack/secrets.go, ``createSecretsManagerForNewStack``);
- ``config set`` writes ``Pulumi.<stack>.yaml``, or the file ``--config-file`` names,
  which ``up``/``destroy`` read too; ``stack rm`` deletes the project's
  ``Pulumi.<stack>.yaml`` unless ``--preserve-config`` (pkg/cmd/pulumi/stack/stack_rm.go);
- with neither ``PULUMI_CONFIG_PASSPHRASE`` nor ``..._FILE`` a non-interactive run
  fails (pkg/secrets/passphrase), and without a backend URL or login it fails too.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import REPO, copy_checkout, need

STUB_PULUMI = f"""#!{sys.executable}
import json, os, pathlib, sys
import yaml

args = sys.argv[1:]
cwd = pathlib.Path.cwd()
for flag in ("--cwd", "-C"):
    if flag in args:
        i = args.index(flag)
        cwd = cwd / args[i + 1]
        del args[i : i + 2]
config_file = None
if "--config-file" in args:
    i = args.index("--config-file")
    config_file = pathlib.Path(args[i + 1])
    del args[i : i + 2]
env = {{k: os.environ.get(k) for k in (
    "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")}}
if not (cwd / "Pulumi.yaml").is_file():
    print("error: no Pulumi.yaml project file found", file=sys.stderr)
    sys.exit(255)
own = config_file or cwd / "Pulumi.dev.yaml"
record = {{"argv": args, "cwd": str(cwd), "env": env, "config_file": str(own),
          "stack_file": own.read_text() if own.exists() else None}}
with open(os.environ["STUB_PULUMI_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")

def fail(message):
    print("error: " + message, file=sys.stderr)
    sys.exit(255)

url = env["PULUMI_BACKEND_URL"]
if not url:
    fail("PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions")
if env["PULUMI_CONFIG_PASSPHRASE"] is None:
    path = env["PULUMI_CONFIG_PASSPHRASE_FILE"]
    if not path or not pathlib.Path(path).is_file():
        fail("passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
             "PULUMI_CONFIG_PASSPHRASE_FILE environment variables")
state = pathlib.Path(url.removeprefix("file://")) / ".pulumi" / "stacks" / "luna" / "dev.json"

def stack_of():
    for flag in ("--stack", "-s"):
        if flag in args:
            return args[args.index(flag) + 1]
    return None

def load():
    return (yaml.safe_load(own.read_text()) or {{}}) if own.exists() else {{}}

if args[:2] == ["stack", "select"]:
    if "dev" not in args:
        fail("stub: only dev")
    if not state.exists():
        if "--create" not in args:
            fail("no stack named 'dev' found")
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({{"outputs": {{}}}}))
        doc = load()
        doc["encryptionsalt"] = "v1:stub-salt-for-this-passphrase"
        own.write_text(yaml.safe_dump(doc))
elif args[:2] == ["stack", "rm"]:
    state.unlink()
    if "--preserve-config" not in args:
        own.unlink(missing_ok=True)
else:
    if stack_of() != "dev":
        fail(f"stub: every command must name --stack dev, got {{args}}")
    if not state.exists():
        fail("no stack named 'dev' found")
    if args[0] == "up":
        state.write_text(json.dumps({{"outputs": {{"app_url": "http://localhost:3000"}}}}))
    elif args[:2] == ["config", "set"]:
        doc = load()
        doc.setdefault("config", {{}})[args[2]] = args[3]
        own.write_text(yaml.safe_dump(doc))
    elif args[:2] == ["stack", "output"]:
        print(json.dumps(json.loads(state.read_text())["outputs"]))
    elif args[0] == "destroy":
        state.write_text(json.dumps({{"outputs": {{}}}}))
"""

# `python -m pip` is recorded, never run (the tests must not touch a real venv).
FAKE_VENV_PYTHON = f"""#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$*" >> "$STUB_PIP_LOG"; exit 0; fi
exec {sys.executable} "$@"
"""


def _readme_dev_block() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- dev-commands[^>]*-->\s*```bash\n(.*?)```", readme, re.S)
    assert match, "README.md lacks the <!-- dev-commands --> block"
    return match.group(1)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Any]:
    """A committed copy of this checkout, a stub pulumi and docker, a fake .venv."""
    repo = copy_checkout(tmp_path / "repo")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=repo, check=True)
    _write(repo / ".venv" / "bin" / "python", FAKE_VENV_PYTHON)
    bin_dir = tmp_path / "bin"
    _write(bin_dir / "pulumi", STUB_PULUMI)
    _write(bin_dir / "docker", '#!/usr/bin/env bash\n[ "$1" = info ] && exit 0\nexit 1\n')
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "STUB_PULUMI_LOG": str(tmp_path / "pulumi.log"),
        "STUB_PIP_LOG": str(tmp_path / "pip.log"),
        "LANG": "C.UTF-8",
    }
    return {"repo": repo, "bin": bin_dir, "env": env, "tmp": tmp_path}


def _calls(box: dict[str, Any]) -> list[dict[str, Any]]:
    log = box["tmp"] / "pulumi.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_readme_dev_commands_reach_change_and_tear_down_dev(sandbox: dict[str, Any]) -> None:
    repo: Path = sandbox["repo"]
    block = _readme_dev_block()
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=repo, env=sandbox["env"], capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"README dev commands failed:\n{proc.stdout}\n{proc.stderr}"
    calls = _calls(sandbox)
    commands = [" ".join(c["argv"][:2]) for c in calls]
    assert commands == [
        "stack select",
        "up --stack",
        "stack output",
        "config set",
        "stack select",
        "up --stack",
        "destroy --stack",
        "stack rm",
    ], commands
    backend = f"file://{repo}/.pulumi-state"
    passphrase = Path(sandbox["env"]["HOME"]) / ".config" / "luna" / "dev-passphrase"
    for call in calls:
        where = " ".join(call["argv"])
        assert call["env"]["PULUMI_BACKEND_URL"] == backend, f"`pulumi {where}`: {call['env']}"
        assert call["env"]["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(passphrase), where
        assert "dev" in call["argv"], f"`pulumi {where}` does not name the dev stack"
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600, "the passphrase file is private"
    second_up = calls[5]
    assert second_up["stack_file"] and "luna:cache: 'true'" in second_up["stack_file"], (
        f"the second up does not see the changed setting:\n{second_up['stack_file']}"
    )
    assert "encryptionsalt" in second_up["stack_file"], "the salt lives in your copy"
    personal = repo / ".pulumi-state" / "project" / "Pulumi.dev.yaml"
    assert second_up["config_file"] == str(personal), second_up["config_file"]
    committed = (repo / "Pulumi.dev.yaml").read_text()
    assert "encryptionsalt" not in committed, "the committed Pulumi.dev.yaml got a salt"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert status == "", f"dev left the working tree dirty:\n{status}"
    assert not personal.exists(), "teardown removes your copy of the dev config"
    assert (repo / "Pulumi.dev.yaml").read_text() == committed, "teardown keeps the committed one"
    pips = (sandbox["tmp"] / "pip.log").read_text().splitlines()
    assert len(pips) == 1, f"pip must run once, then only when requirements change: {pips}"
    print(f"\n{len(calls)} pulumi calls, all on {backend}: {commands}")


def test_deploy_dev_says_what_docker_said(sandbox: dict[str, Any]) -> None:
    denied = (
        "permission denied while trying to connect to the Docker daemon socket at "
        'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.24/info": '
        "dial unix /var/run/docker.sock: connect: permission denied"
    )
    _write(
        sandbox["bin"] / "docker", f"#!/usr/bin/env bash\necho {json.dumps(denied)} >&2\nexit 1\n"
    )
    proc = subprocess.run(
        [str(sandbox["repo"] / "scripts" / "deploy-dev")],
        env=sandbox["env"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "connect: permission denied" in proc.stderr and "docker group" in proc.stderr, (
        proc.stderr
    )
    assert "no running Docker engine" not in proc.stderr
    assert not _calls(sandbox), "nothing may run after the Docker check failed"


def test_a_venv_with_an_unsupported_python_is_rebuilt_or_refused(sandbox: dict[str, Any]) -> None:
    repo: Path = sandbox["repo"]
    # A Python 3.9: fails the version check, reports 3.9 when asked.
    old = (
        "#!/usr/bin/env bash\n"
        'case "$2" in *exit*) exit 1;; *version_info*) echo 3.9; exit 0;; esac\n'
        "exit 1\n"
    )
    _write(repo / ".venv" / "bin" / "python", old)
    _write(sandbox["tmp"] / "old" / "python3", old)
    env = {**sandbox["env"], "PYTHON": str(sandbox["tmp"] / "old" / "python3")}
    proc = subprocess.run(
        ["bash", "-c", ". scripts/lib/venv.sh && ensure_venv requirements.txt"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert "has Python 3.9" in lines[0] and "rebuilding" in lines[0], lines
    assert not (repo / ".venv").exists(), "the wrong-Python .venv must go"
    assert proc.returncode == 2 and lines[-1].startswith("error:") and "3.9" in lines[-1], lines


def test_supported_pythons_agree_between_pyproject_venv_script_and_readme() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    low, high = re.search(r'requires-python = ">=([\d.]+),<([\d.]+)"', pyproject).groups()  # type: ignore[union-attr]
    script = (REPO / "scripts" / "lib" / "venv.sh").read_text()
    assert f"LUNA_PY_MIN={low}" in script and f"LUNA_PY_BELOW={high}" in script
    minor = int(high.split(".")[1]) - 1
    readme = (REPO / "README.md").read_text()
    assert f"Python {low} to 3.{minor}" in readme, "README must state the supported Pythons"
    assert os.access(REPO / "scripts" / "destroy-dev", os.X_OK)


def test_dev_scripts_pass_shellcheck() -> None:
    scripts = ["deploy-dev", "destroy-dev", "dev-env", "lib/venv.sh"]
    proc = subprocess.run(
        [need("shellcheck"), "-x", *scripts], cwd=REPO / "scripts",
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout

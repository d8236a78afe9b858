"""Reaching an `ssh://` Docker host from the workflows: key, pinned host key, strict checking.

pulumi-docker bridges kreuzwerker/terraform-provider-docker, whose
internal/provider/config.go hands an ``ssh://`` host to docker/cli's connhelper
(cli/connhelper/connhelper.go, v28.5.2 as go.mod pins it at v4.5.0). That runs
the runner's own OpenSSH client as
``ssh [-l USER] [-p PORT] -o ConnectTimeout=30 -T -- HOST docker system dial-stdio``
(cli/connhelper/ssh/ssh.go, Spec.args), so ~/.ssh/config is what configures it.

- Structure: every job that runs pulumi against a stack sets the key up from
  its environment's secrets first, gives those secrets to no other step, and
  removes the key in its always() step.
- The script, run for real: modes, the ~/.ssh/config block as the real ``ssh -G``
  evaluates it, refusals with one line, and cleanup.
- Slow: a real sshd on 127.0.0.1, reached with the exact arguments docker's
  connhelper uses: the pinned host is accepted, a changed or unpinned host key
  is refused, and known_hosts is never written to.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline.test_workflows import DRIFT, PIPELINE, Job
from tests.support.tools import REPO, need
from tests.support.workflows import load_workflow as load

SETUP = ".github/scripts/ssh-setup.sh"
SCRIPT = REPO / SETUP
SECRETS = {
    "DOCKER_HOST_SSH_KEY": "${{ secrets.DOCKER_HOST_SSH_KEY }}",
    "DOCKER_HOST_KNOWN_HOSTS": "${{ secrets.DOCKER_HOST_KNOWN_HOSTS }}",
}
# The jobs that run pulumi against a stack; the detector below must find exactly these.
RECOVER = "recover.yml"
STACK_JOBS = {
    (DRIFT, "drift"),
    (PIPELINE, "preview"),
    (PIPELINE, "preview-production"),
    (RECOVER, "recover"),
    (PIPELINE, "deploy-staging"),
    (PIPELINE, "deploy-production"),
}


# ------------------------------------------------------------------ structure
def talks_to_a_stack(step: dict[str, object]) -> bool:
    run = str(step.get("run", ""))
    uses = str(step.get("uses", ""))
    with_ = step.get("with")
    command = with_.get("command") if isinstance(with_, dict) else None
    return any(
        cmd in run
        for cmd in ("pulumi refresh", "pulumi up", "pulumi preview", "deploy.sh", "preview.sh")
    ) or (uses.startswith("pulumi/actions@") and command is not None)


def stack_jobs() -> Iterator[tuple[str, str, Job]]:
    for wf in (PIPELINE, DRIFT, RECOVER):
        for name, j in load(wf)["jobs"].items():
            if any(talks_to_a_stack(s) for s in j.get("steps", [])):
                yield wf, name, j


def test_the_detector_finds_every_job_that_reaches_a_stack() -> None:
    found = {(wf, name) for wf, name, _ in stack_jobs()}
    assert found == STACK_JOBS, f"jobs running pulumi against a stack: {sorted(found)}"


@pytest.mark.parametrize(("wf", "name"), sorted(STACK_JOBS), ids=lambda v: str(v))
def test_job_sets_up_the_docker_host_key_before_pulumi(wf: str, name: str) -> None:
    steps = load(wf)["jobs"][name]["steps"]
    setups = [i for i, s in enumerate(steps) if str(s.get("run", "")).strip() == SETUP]
    assert len(setups) == 1, f"{wf}: job {name} runs {SETUP} {len(setups)} times, not once"
    (at,) = setups
    assert steps[at].get("env") == SECRETS, (
        f"{wf}: job {name}: {SETUP} must get exactly {sorted(SECRETS)} from the environment's "
        f"secrets, got {steps[at].get('env')}"
    )
    first_pulumi = next(i for i, s in enumerate(steps) if talks_to_a_stack(s))
    assert at < first_pulumi, f"{wf}: job {name} runs pulumi before {SETUP}"
    for index, step in enumerate(steps):
        if index != at:
            assert "DOCKER_HOST_" not in str(step), (
                f"{wf}: job {name}, step {index} ({step.get('name')}) sees a Docker host secret; "
                f"only {SETUP} may"
            )
    cleanup = steps[-1]
    assert cleanup.get("if") == "${{ always() }}", f"{wf}: job {name}: last step is no cleanup"
    commands = str(cleanup.get("run", ""))
    assert 'rm -rf "$RUNNER_TEMP/kubeconfig" "$RUNNER_TEMP/docker-host-ssh"' in commands, (
        f"{wf}: job {name}: the always() step does not delete the key"
    )
    assert f"{SETUP} --remove" in commands, f"{wf}: job {name} leaves its ~/.ssh/config block"


def test_deploy_script_leaves_ssh_to_the_setup_script() -> None:
    text = (REPO / ".github" / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    for leftover in ("ssh-agent", "ssh-add", "known_hosts", "DOCKER_HOST_SSH_KEY"):
        assert leftover not in text, f"deploy.sh still handles SSH itself ({leftover})"


def test_setup_script_never_accepts_an_unknown_host_key() -> None:
    lines = SCRIPT.read_text(encoding="utf-8").splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert "StrictHostKeyChecking yes" in code
    for loose in ("accept-new", "StrictHostKeyChecking no", "StrictHostKeyChecking=no"):
        assert loose not in code, f"{SETUP} loosens host key checking: {loose}"
    assert os.access(SCRIPT, os.X_OK), f"{SETUP} must be executable"


# ------------------------------------------------------------ the script, run
def keypair(directory: Path, name: str, passphrase: str = "") -> tuple[str, str]:
    keygen = need("ssh-keygen")
    path = directory / name
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(path)],
        check=True,
    )
    return path.read_text(), (directory / f"{name}.pub").read_text()


def run_setup(tmp_path: Path, *args: str, **secrets: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "RUNNER_TEMP": str(tmp_path / "runner"),
        **secrets,
    }
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "runner").mkdir(exist_ok=True)
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False, timeout=30
    )


def effective(config: Path, *target: str) -> dict[str, str]:
    """What the real OpenSSH client makes of `config` for a connection (`ssh -G`)."""
    ssh = need("ssh")
    done = subprocess.run(
        [ssh, "-F", str(config), "-G", *target],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    pairs = (line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return {key: value for key, value in pairs}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_setup_writes_a_private_key_and_a_strict_config(tmp_path: Path) -> None:
    key, _ = keypair(tmp_path, "deploy")
    _, host_pub = keypair(tmp_path, "host")
    config = tmp_path / "home" / ".ssh" / "config"
    config.parent.mkdir(parents=True)
    # A looser user config that was already there must not win: ssh takes the first value.
    user_config = "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
    config.write_text(user_config)
    known = f"[docker.example.org]:2222 {host_pub}"

    done = run_setup(tmp_path, DOCKER_HOST_SSH_KEY=key, DOCKER_HOST_KNOWN_HOSTS=known)
    assert done.returncode == 0, done.stderr
    assert key.strip().splitlines()[1] not in done.stdout + done.stderr, "the key was printed"
    assert "SHA256:" in done.stdout, "the pinned host key's fingerprint is not shown"

    keys = tmp_path / "runner" / "docker-host-ssh"
    assert mode(keys) == 0o700 and mode(keys / "key") == 0o600, "the key is readable by others"
    assert mode(config) == 0o600
    assert (keys / "known_hosts").read_text().strip() == known.strip()

    seen = effective(config, "-p", "2222", "-l", "deploy", "docker.example.org")
    checked = ("stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile", "batchmode")
    print("\nssh -G: " + ", ".join(f"{k} {seen[k]}" for k in checked))
    assert seen["stricthostkeychecking"] == "true", seen["stricthostkeychecking"]
    assert seen["userknownhostsfile"] == str(keys / "known_hosts")
    assert seen["globalknownhostsfile"] == "/dev/null"
    assert seen["identityfile"] == str(keys / "key")
    assert seen["identitiesonly"] == "yes" and seen["batchmode"] == "yes"
    assert seen["updatehostkeys"] == "false"

    # A second run (a re-run job) keeps one block; --remove restores the user's file.
    assert (
        run_setup(tmp_path, DOCKER_HOST_SSH_KEY=key, DOCKER_HOST_KNOWN_HOSTS=known).returncode == 0
    )
    assert config.read_text().count("Host *") == 2, config.read_text()
    assert run_setup(tmp_path, "--remove").returncode == 0
    assert config.read_text() == user_config
    assert not keys.exists(), "--remove left the key behind"


@pytest.mark.parametrize("given", ["DOCKER_HOST_SSH_KEY", "DOCKER_HOST_KNOWN_HOSTS"])
def test_setup_refuses_half_the_credentials(tmp_path: Path, given: str) -> None:
    key, pub = keypair(tmp_path, "deploy")
    value = key if given == "DOCKER_HOST_SSH_KEY" else f"docker.example.org {pub}"
    done = run_setup(tmp_path, **{given: value})
    assert done.returncode == 1, f"only {given} set, yet the setup went on"
    (line,) = done.stderr.splitlines()
    assert line.startswith("::error::") and "DOCKER_HOST_KNOWN_HOSTS" in line, line
    assert not (tmp_path / "runner" / "docker-host-ssh" / "key").exists()


@pytest.mark.parametrize("bad", ["passphrase", "known_hosts"])
def test_setup_refuses_unusable_secrets(tmp_path: Path, bad: str) -> None:
    key, pub = keypair(
        tmp_path, "deploy", passphrase="typed-by-nobody" if bad == "passphrase" else ""
    )
    known = "not a known_hosts line" if bad == "known_hosts" else f"docker.example.org {pub}"
    done = run_setup(tmp_path, DOCKER_HOST_SSH_KEY=key, DOCKER_HOST_KNOWN_HOSTS=known)
    assert done.returncode == 1, f"a bad {bad} was accepted"
    (line,) = done.stderr.splitlines()
    assert line.startswith("::error::"), line
    assert not (tmp_path / "home" / ".ssh" / "config").exists(), "ssh was configured anyway"


def test_setup_without_secrets_does_nothing(tmp_path: Path) -> None:
    done = run_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "home" / ".ssh").exists()
    assert not (tmp_path / "runner" / "docker-host-ssh").exists()


# -------------------------------------------------------- a real sshd, slow
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def connhelper_ssh(config: Path, port: int) -> subprocess.CompletedProcess[str]:
    # docker/cli cli/connhelper/connhelper.go + ssh/ssh.go for ssh://root@127.0.0.1:PORT:
    # -l, -p, then its flags (-o ConnectTimeout=30, -T), then -- HOST and the remote command.
    # -F only because this test's ~/.ssh is a temp dir: OpenSSH finds ~ via getpwuid, not $HOME.
    ssh = need("ssh")
    return subprocess.run(
        [
            ssh,
            "-F",
            str(config),
            "-l",
            "root",
            "-p",
            str(port),
            "-o ConnectTimeout=30",
            "-T",
            "--",
            "127.0.0.1",
            "docker system dial-stdio",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_real_ssh_reaches_only_the_pinned_host(tmp_path: Path) -> None:
    sshd = need("sshd")
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("sshd needs root for privilege separation; CI runs as root")
        pytest.skip("sshd needs root for privilege separation")
    key, pub = keypair(tmp_path, "deploy")
    _, host_pub = keypair(tmp_path, "host")
    _, other_host_pub = keypair(tmp_path, "impostor")
    # The host side as docs/pipeline.md asks: the key may only run dial-stdio.
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(f'restrict,command="echo dial-stdio reached" {pub}')
    Path("/run/sshd").mkdir(exist_ok=True)
    port = free_port()
    conf = tmp_path / "sshd_config"
    conf.write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {tmp_path / 'host'}\n"
        f"AuthorizedKeysFile {authorized}\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n"
        f"PidFile {tmp_path / 'sshd.pid'}\n"
    )
    log = tmp_path / "sshd.log"
    with log.open("w") as log_file:
        server = subprocess.Popen([sshd, "-D", "-e", "-f", str(conf)], stderr=log_file)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, f"sshd exited: {log.read_text()}"
                assert time.monotonic() < deadline, "sshd did not listen within 10 s"
                time.sleep(0.05)
        config = tmp_path / "home" / ".ssh" / "config"
        known_file = tmp_path / "runner" / "docker-host-ssh" / "known_hosts"
        results: dict[str, str] = {}
        for case, known in [
            ("pinned", f"[127.0.0.1]:{port} {host_pub}"),
            ("changed host key", f"[127.0.0.1]:{port} {other_host_pub}"),
            ("unpinned host", f"[docker.example.org]:{port} {host_pub}"),
        ]:
            assert (
                run_setup(
                    tmp_path, DOCKER_HOST_SSH_KEY=key, DOCKER_HOST_KNOWN_HOSTS=known
                ).returncode
                == 0
            )
            before = known_file.read_text()
            done = connhelper_ssh(config, port)
            results[case] = f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[:90]}"
            assert known_file.read_text() == before, f"{case}: ssh wrote to the pinned known_hosts"
            if case == "pinned":
                assert done.returncode == 0 and done.stdout.strip() == "dial-stdio reached", (
                    f"the pinned host was not reached: {done.stderr}"
                )
            else:
                assert done.returncode == 255, f"{case}: ssh connected anyway: {done.stdout}"
                assert "Host key verification failed" in done.stderr, done.stderr
        print("\n" + "\n".join(f"{case}: {result}" for case, result in results.items()))
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp_path / "runner", ignore_errors=True)

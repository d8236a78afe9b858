"""One-shot jobs on Docker (the migration, Elasticsearch's bootstrap) as a command.

A ``docker_container`` with ``attach`` records a non-zero exit code and still
succeeds (resourceDockerContainerCreate, kreuzwerker/terraform-provider-docker
v4.5.0), so its failure could only travel in the inputs of its dependants, and
every input of a container forces its replacement. Instead the job is a
pulumi-command ``local.Command`` that runs the container with the Docker CLI
against the stack's Docker host and exits with the container's status: a failed
job fails its own resource, the engine starts none of its dependants, and what
was running keeps running.

The script is built by a pure function, so tests run it against a recording
``docker`` stand-in.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["JobRun", "job_script"]


@dataclass(frozen=True)
class JobRun:
    """Everything ``docker create`` needs, platform names already resolved."""

    container: str
    image: str
    networks: Sequence[str]
    command: Sequence[str]
    entrypoint: Sequence[str] | None
    env: Sequence[tuple[str, str]]
    """Plain environment, written into the script."""
    secret_env: Sequence[str]
    """Names passed through from the command's (secret) environment, never written."""
    files: Sequence[tuple[str, str]]
    """``(path in the container, environment variable holding the content)``."""
    mounts: Sequence[tuple[str, str, bool]]
    tmpfs: Sequence[str]
    user: str | None
    memory_mb: int
    cpus: str
    read_only: bool
    log_opts: Sequence[tuple[str, str]]
    log_driver: str


def job_script(run: JobRun) -> str:
    """A POSIX shell script that runs ``run`` once and exits with its status.

    The container is created, its files copied in, its networks attached, then
    started attached (``docker start -a`` exits with the container's status) and
    removed whatever happened. Secret values reach ``docker`` only through the
    environment, never its argument list.
    """
    # A job that talks to no service (the SQLite migration) gets no network at all.
    first = run.networks[0] if run.networks else "none"
    create = ["docker", "create", "--name", run.container, "--network", first]
    create += ["--init", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"]
    create += ["--memory", f"{run.memory_mb}m", "--memory-swap", f"{run.memory_mb}m"]
    create += ["--cpus", run.cpus, "--log-driver", run.log_driver]
    for key, value in run.log_opts:
        create += ["--log-opt", f"{key}={value}"]
    if run.read_only:
        create.append("--read-only")
    if run.user:
        create += ["--user", run.user]
    for path in run.tmpfs:
        create += ["--tmpfs", f"{path}:rw,noexec,nosuid,size=64m"]
    for source, target, read_only in run.mounts:
        flag = ",readonly" if read_only else ""
        create += ["--mount", f"type=volume,source={source},target={target}{flag}"]
    for key, value in run.env:
        create += ["--env", f"{key}={value}"]
    for key in run.secret_env:
        create += ["--env", key]
    if run.entrypoint:
        create += ["--entrypoint", run.entrypoint[0]]
    create.append(run.image)
    create += [*(run.entrypoint or ())[1:], *run.command]

    lines = [
        "set -eu",
        "umask 077",
        f"docker rm -f {shlex.quote(run.container)} >/dev/null 2>&1 || true",
        f"cid=$({shlex.join(create)})",
        "stage=$(mktemp -d)",
        'trap \'docker rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "$stage"\' EXIT',
    ]
    for path, variable in run.files:
        lines.append(f'mkdir -p "$stage"{shlex.quote(posixpath.dirname(path))}')
        lines.append(f'printf "%s" "${variable}" > "$stage"{shlex.quote(path)}')
    if run.files:
        # The files land in the container's root before it starts, readable by its user.
        lines.append('chmod -R a+rX "$stage"')
        lines.append('docker cp "$stage/." "$cid:/"')
    for network in run.networks[1:]:
        lines.append(f'docker network connect {shlex.quote(network)} "$cid"')
    lines.append('docker start --attach "$cid"')
    return "\n".join(lines) + "\n"

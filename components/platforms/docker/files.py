"""Configuration a running service re-reads in place, shipped in a volume (Docker).

Every input of a ``docker_container`` but its resources forces a replacement
(kreuzwerker/terraform-provider-docker v4.5.0 resource_docker_container.go,
``upload`` is ForceNew), and a container that publishes a host port is replaced
delete-first: a new nginx.conf or a renewed certificate shipped as ``uploads``
would refuse connections on 443 while nginx restarts. A service that can reload
(``ServiceSpec.reload``) gets those files from a volume instead:

1. a ``command:local:Command`` writes them into the volume through a helper
   container that is created, never started (``docker cp`` into its mount),
   before the service's container exists or while it runs;
2. the container mounts the volume read-only and never sees the content as an
   input, so a new file never replaces it;
3. another Command checks the new configuration inside the running container and
   applies it there (``nginx -t`` then ``nginx -s reload``: nginx starts new
   workers with it and lets the old ones finish their requests; nginx.org
   "Controlling nginx").

Scripts are built by pure functions; tests run them against a recording
``docker`` stand-in and on the real daemon.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LiveFiles", "reload_script", "write_script"]


@dataclass(frozen=True)
class LiveFiles:
    volume: str
    directory: str
    """Where the service sees the volume; every file lives below it."""
    image: str
    """The service's own image, for the helper container (never started)."""
    user: str | None
    files: Sequence[tuple[str, str]]
    """``(path in the service, environment variable holding the content)``."""
    helper: str = ""
    """Name of the helper container (``<volume>-writer`` when empty)."""


def write_script(live: LiveFiles) -> str:
    """Write every file into the volume at once (one ``docker cp`` of a staged tree)."""
    prefix = live.directory.rstrip("/") + "/"
    helper = live.helper or f"{live.volume}-writer"
    create = ["docker", "create", "--name", helper, "--network", "none", "--mount",
              f"type=volume,source={live.volume},target={live.directory}",
              "--entrypoint", "/bin/true", live.image]  # fmt: skip
    lines = [
        "set -eu",
        "umask 077",
        # Configuration only, so not a Pulumi volume (never protected, never kept):
        # the writer makes it, and removes it when the service goes.
        f"docker volume create --label com.luna.purpose=live-files {shlex.quote(live.volume)}"
        " >/dev/null",
        'stage=$(mktemp -d); helper=""',
        f"docker rm -f {shlex.quote(helper)} >/dev/null 2>&1 || true",
        'trap \'[ -z "$helper" ] || docker rm -f "$helper" >/dev/null; rm -rf "$stage"\' EXIT',
    ]
    for path, variable in live.files:
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not below {live.directory}")
        lines.append(f'mkdir -p "$stage"{shlex.quote(posixpath.dirname(path))}')
        lines.append(f'printf "%s" "${variable}" > "$stage"{shlex.quote(path)}')
    # Readable by the service's non-root user: the volume is mounted only into it.
    lines.append('chmod -R a+rX "$stage"')
    lines.append(f"helper=$({shlex.join(create)})")
    lines.append(f'docker cp "$stage"{shlex.quote(prefix)}. "$helper:{prefix}"')
    return "\n".join(lines) + "\n"


def reload_script(containers: Sequence[str], command: Sequence[str], check: Sequence[str]) -> str:
    """Check, then apply, the new files in every running container of the service."""
    lines = ["set -eu"]
    for c in containers:
        lines.append(f"docker exec {shlex.quote(c)} {shlex.join(check)}")
        lines.append(f"docker exec {shlex.quote(c)} {shlex.join(command)}")
    return "\n".join(lines) + "\n"

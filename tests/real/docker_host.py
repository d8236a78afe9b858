"""A real Docker daemon (Debian's docker.io) on a private socket, for the tests.

No registry is reachable, so its one image is imported from Debian's static
busybox. The daemon is configured like a host whose daemon.json sets default
log options, the case where Docker merges them into containers
(moby daemon/logs.go ``mergeAndVerifyLogConfig``). It has no iptables rules and,
unless asked for one, no default bridge, and uses the vfs storage driver, so it
starts on any kernel (overlay2 on request, where this kernel mounts overlayfs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.engine.facts import DaemonConfig
from tests.real.support import Daemon
from tests.support.tools import need

__all__ = ["DAEMON", "IMAGE", "DockerHost", "docker_host", "fastest_storage"]

IMAGE = "luna/busybox:test"
DAEMON = DaemonConfig("json-file", {"max-size": "50m", "max-file": "3", "cache-max-size": "7m"})
"""The daemon.json log options of the test daemon (and of the model's host)."""


@dataclass
class DockerHost:
    socket: str
    env: dict[str, str]

    def docker(self, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=120, **kw
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}")
        return proc


def _busybox_rootfs(folder: Path) -> Path:
    busybox = Path(need("busybox"))
    (folder / "bin").mkdir(parents=True)
    (folder / "tmp").mkdir()
    shutil.copy(busybox, folder / "bin" / "busybox")
    for applet in ("sh", "cat", "echo", "sleep", "true", "id", "wc", "ls"):
        (folder / "bin" / applet).symlink_to("busybox")
    tar = folder.parent / "rootfs.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add(folder, arcname=".")
    return tar


def _default_bridge(name: str) -> str:
    """A bridge device of our own for the daemon's default network.

    BuildKit runs each RUN on the default ("bridge") network, so a build fails on
    a daemon without one ("network bridge not found"). dockerd creates only a
    device named docker0, which other daemons on this host would share; any other
    name must exist already (libnetwork bridge setup_device.go), and the daemon
    elects a free subnet for it (daemon_unix.go initBridgeDriver).
    """
    ip = need("ip")
    subprocess.run([ip, "link", "del", name], capture_output=True, check=False)
    for args in (["link", "add", name, "type", "bridge"], ["link", "set", name, "up"]):
        subprocess.run([ip, *args], capture_output=True, text=True, check=True)
    return f"--bridge={name}"


def fastest_storage(root: Path) -> str:
    """overlay2 when an overlay mounts under ``root`` here, else vfs.

    vfs copies the whole file system for every layer and container, which is
    slow for a large image; overlay2 fails on some file systems (overlayfs
    itself, for one), so a test mount decides rather than a guess.
    """
    probe = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=root))
    dirs = [probe / d for d in ("lower", "upper", "work", "merged")]
    for d in dirs:
        d.mkdir()
    opts = f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}"
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(dirs[3])],
                             capture_output=True, check=False).returncode == 0  # fmt: skip
    if mounted:
        subprocess.run(["umount", str(dirs[3])], capture_output=True, check=False)
    shutil.rmtree(probe, ignore_errors=True)
    return "overlay2" if mounted else "vfs"


def docker_host(
    root: Path, *, bridge: bool = False, storage: str = "vfs", extra: Sequence[str] = ()
) -> Iterator[DockerHost]:
    """Start dockerd under ``root``, import the image, stop it afterwards.

    ``bridge``: give the daemon a default bridge network (on a device of its
    own, removed afterwards), as a real host has; needed by BuildKit builds.
    ``storage``: the storage driver (see :func:`fastest_storage`).
    ``extra``: more dockerd options (the rehearsal's ``--dns``).
    """
    dockerd = need("dockerd")
    need("docker")
    sock = root / "docker.sock"
    device = f"lunab{os.getpid() % 10_000_000}" if bridge else ""
    bridge_opt = _default_bridge(device) if bridge else "--bridge=none"
    opts = [f"--log-opt={k}={v}" for k, v in DAEMON.log_opts.items()]
    daemon = Daemon(
        [dockerd, f"--host=unix://{sock}", f"--data-root={root / 'data'}",
         f"--exec-root={root / 'exec'}", f"--pidfile={root / 'dockerd.pid'}",
         "--iptables=false", "--ip6tables=false", bridge_opt, f"--storage-driver={storage}",
         f"--log-driver={DAEMON.default_driver}", *opts, *extra],
        log=root / "dockerd.log",
    )  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    host = DockerHost(socket=str(sock), env=env)
    try:
        deadline = time.monotonic() + 60
        while host.docker("info", check=False).returncode != 0:
            if daemon.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not start:\n{daemon.output()[-3000:]}")
            time.sleep(0.3)
        tar = _busybox_rootfs(root / "rootfs")
        host.docker("import", str(tar), IMAGE)
        yield host
    finally:
        # A user-defined network is a bridge in the host's namespace, and it outlives
        # the daemon: remove them, or repeated runs exhaust Docker's address pools.
        host.docker("rm", "-f", *host.docker("ps", "-aq", check=False).stdout.split(), check=False)
        host.docker("network", "prune", "-f", check=False)
        daemon.stop()
        # Mounts under the data root (vfs has none, but netns files may remain).
        subprocess.run(["umount", "-R", str(root / "exec")], capture_output=True, check=False)
        if device:
            subprocess.run([need("ip"), "link", "del", device], capture_output=True, check=False)

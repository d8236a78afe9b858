"""One rehearsal: a private daemon, the world beside it, the images, the render, the applier.

Everything started here is stopped by the context manager, whatever happens
inside it (a failed scenario, an exception, SIGINT/SIGTERM turned into
KeyboardInterrupt by the command): containers, networks, the daemon, the
object store, the DNS and the hooks.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.real.docker_host import DockerHost, docker_host, fastest_storage
from tests.rehearsal.applier import Applier, tag_of
from tests.rehearsal.stack import Render, render_for
from tests.rehearsal.world import Receiver, World, side_address, trust_ca, world

__all__ = ["CACHE", "DaemonError", "Rehearsal", "rehearsal"]

CACHE = Path.home() / ".cache" / "luna-rehearsal"
"""Stand-in images between runs: outside the clone, so a fresh clone reuses them."""
# Images whose program talks TLS to the world beside the stack (pgBackRest to the
# object store, Alertmanager to the hooks): they trust the rehearsal's CA.
_TRUSTING = ("luna-postgres", "postgres", "alertmanager")


class DaemonError(Exception):
    """The private Docker daemon did not start (exit 2)."""


@dataclass
class Background:
    """A scenario's part running on a thread: its result, or the error it raised."""

    result: Any = None
    error: str = ""
    thread: threading.Thread | None = None

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


@dataclass
class Rehearsal:
    stack: str
    root: Path
    host: DockerHost
    world: World
    render: Render
    applier: Applier
    left_out: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    """Measurements shared between scenarios (the up time, the first backup...)."""
    store_released: list[Callable[[], None]] = field(default_factory=list)
    """What starts once no scenario needs the object store any more (the outage)."""
    background: dict[str, Background] = field(default_factory=dict)
    """Work a scenario started in the background (:meth:`in_background`) and a later
    one joins, by name: it lives and dies with this rehearsal (two rehearsals in one
    process never share it)."""

    def release_store(self) -> None:
        """The running scenario is done with the object store: start what waited for
        that (each hook once)."""
        while self.store_released:
            self.store_released.pop(0)()

    def in_background(self, name: str, work: Callable[[Rehearsal], Any]) -> Background:
        """Start ``work(self)`` on a thread, once per rehearsal under ``name``; its handle
        (:attr:`background`), which a later scenario joins for the result."""
        if name in self.background:
            return self.background[name]
        job = self.background[name] = Background()

        def run() -> None:
            try:
                job.result = work(self)
            except Exception as error:
                job.error = f"{type(error).__name__}: {error}"

        job.thread = threading.Thread(target=run, daemon=True)
        job.thread.start()
        return job

    def docker(self, *args: str, check: bool = True) -> str:
        return self.host.docker(*args, check=check).stdout

    def container(self, service: str) -> str:
        return self.applier.state.container(service)


def _images(host: DockerHost, tags: list[str]) -> list[str]:
    """The stand-ins under the pinned tags (tests/rehearsal/images.py); the left-out tags."""
    try:
        # Built by tests/rehearsal/images.py (its own branch): imported by name.
        images = importlib.import_module("tests.rehearsal.images")
    except ImportError as error:
        raise DaemonError(
            f"tests/rehearsal/images.py is missing ({error}): the stand-in images cannot be built"
        ) from None
    try:
        report = images.ensure_images(host, tags)  # its cache: $LUNA_REHEARSAL_CACHE or CACHE
    except (AssertionError, ValueError, OSError, subprocess.SubprocessError) as error:
        lines = [ln for ln in str(error).splitlines() if ln.strip()]
        causes = [ln for ln in lines if "ERROR" in ln or "E: " in ln] or lines[-1:] or [""]
        raise DaemonError(
            f"the images could not be made: {lines[0] if lines else error}"
            f" ({causes[-1].strip()[:200]})"
        ) from None
    return sorted(getattr(report, "left_out", ()))


@contextlib.contextmanager
def rehearsal(stack: str, *, keep: Path | None = None) -> Iterator[Rehearsal]:
    """Start everything for ``stack`` (nothing applied yet); stop it all afterwards.

    ``keep``: copy the daemon's and the world's logs there before cleaning up.
    """
    root = Path(tempfile.mkdtemp(prefix="luna-rehearsal-"))  # $TMPDIR, else /tmp
    try:
        with side_address() as (address, public), contextlib.ExitStack() as stack_:
            w = stack_.enter_context(world(root, address, public, buckets=()))
            (root / "docker").mkdir()
            daemon = contextlib.contextmanager(docker_host)(
                root / "docker", bridge=True, storage=fastest_storage(root),
                extra=[f"--dns={address}", f"--default-address-pool=base={_free_pool()},size=24"],
            )  # fmt: skip
            try:
                host = stack_.enter_context(daemon)
            except AssertionError as error:
                raise DaemonError(str(error).splitlines()[0]) from None
            r = render_for(stack, w, f"unix://{host.socket}")
            if r.bucket:
                w.s3.client().create_bucket(Bucket=r.bucket)
            # A reference pinned by digest (prod's) is made under its tag: no registry
            # here gives the digest, so the tag's image stands in for it (applier.py).
            tags = sorted({tag_of(ref) for ref in r.images()})
            left_tags = set(_images(host, tags))
            left_out = [ref for ref in r.images() if tag_of(ref) in left_tags]
            for tag in tags:
                if any(word in tag for word in _TRUSTING) and tag not in left_tags:
                    trust_ca(host, tag, w.ca.read_text())
                if "blackbox" in tag and tag not in left_tags:
                    # The edge probe checks the certificate as a browser does; here its
                    # issuer is the rehearsal's edge CA, not a public one.
                    trust_ca(host, tag, r.edge_ca)
            ids = {ref: host.docker("image", "inspect", "-f", "{{.Id}}", tag_of(ref)).stdout.strip()
                   for ref in r.images() if ref not in left_out}  # fmt: skip
            # Rendered again now that the images exist: RemoteImage reads back their IDs.
            r = render_for(stack, w, f"unix://{host.socket}", prior=r, image_ids=ids)
            applier = Applier(host, left_out_images=left_out, loopback=_free_loopback())
            w.publish(r.host, applier.loopback)
            yield Rehearsal(stack, root, host, w, r, applier, left_out)
            if keep:
                _keep_logs(host, applier, root, keep, w.receiver)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _free_pool() -> str:
    """A /16 for the daemon's networks that no route of this host overlaps.

    Each daemon picks its bridges' subnets from the same default pools and checks
    them only against the host's routes: a second rehearsal (or another daemon)
    running here would exhaust them ("could not find an available,
    non-overlapping IPv4 address pool"). 10.200/16-10.249/16, the first unused.
    """
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=False).stdout  # fmt: skip
    for n in range(200, 250):
        if f" 10.{n}." not in f" {routes}" and f"\n10.{n}." not in routes:
            return f"10.{n}.0.0/16"
    raise DaemonError("no free 10.200-249.0.0/16 address pool for the daemon's networks")


def _free_loopback() -> str:
    """A loopback address whose ports 80 and 443 are free (the edge is published there).

    Each process starts its search at its own address (from its pid): two
    rehearsals starting together would otherwise both find 127.0.0.1 free and the
    later one's edge would fail to bind it."""
    first = os.getpid() % 31
    for n in (1 + (first + i) % 31 for i in range(31)):
        ip = f"127.0.0.{n}"
        try:
            for port in (80, 443):
                with socket.socket() as probe:
                    probe.bind((ip, port))
        except OSError:
            continue
        return ip
    raise DaemonError("no loopback address 127.0.0.1-31 has ports 80 and 443 free")


def _keep_logs(host: DockerHost, applier: Applier, root: Path, keep: Path,
               receiver: Receiver) -> None:  # fmt: skip
    keep.mkdir(parents=True, exist_ok=True)
    # What reached the pager and chat, in order: the alerts scenario's evidence.
    (keep / "receiver.txt").write_text(
        "".join(f"{at:8.1f} s {path} {body}\n" for at, path, body in receiver.since(0))
    )
    for name in applier.state.containers():
        logs = host.docker("logs", "--timestamps", name, check=False)
        (keep / f"{name}.log").write_text(logs.stdout + logs.stderr)
    for log in (*root.glob("*.log"), *(root / "docker").glob("*.log")):
        shutil.copy(log, keep / log.name)
    (keep / "applied.txt").write_text(applier.describe() + "\n" + "\n".join(applier.state.notes))

"""Shared helpers for the real-program tests: rendered stacks, substitutions, daemons.

Every test here starts from what ``infra.render.render(stack)`` ships, adapts it
to this host with explicit, counted substitutions, and runs the real program.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from infra.mocks import unwrap
from infra.render import Rendered, load_stack_config, on_platform
from tests.conftest import rendered
from tests.support.tools import REPO, need

__all__ = [
    "Daemon",
    "RenderedStack",
    "free_port",
    "render_stack",
    "start_standin",
    "substitute",
    "wait_for_port",
]

DOCKER_CONTAINER = "docker:index/container:Container"
K8S_SERVICE = "kubernetes:core/v1:Service"


@dataclass
class RenderedStack:
    """One render of a stack (``Rendered.files()`` as shipped, secrets masked) plus its config."""

    stack: str
    platform: str
    rendered: Rendered
    config: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)

    def setting(self, key: str) -> str:
        return self.config[f"luna:{key}"]

    def file(self, service: str, path: str) -> str:
        """The shipped file at ``path``; ``service`` disambiguates when several ship it."""
        keys = [k for k in self.files if k.endswith(path)]
        if len(keys) > 1:
            keys = [k for k in keys if service in k.removesuffix(path)]
        assert len(keys) == 1, (
            f"{self.stack}/{self.platform}: expected one {path} for {service}, found {keys}"
        )
        return self.files[keys[0]]

    def records(self, type_: str) -> list[dict[str, Any]]:
        """Unwrapped inputs (secrets in clear) of every resource of ``type_``."""
        return [unwrap(r.inputs) for r in self.rendered.monitor.records.values() if r.type == type_]


def render_stack(stack: str, *, platform: str = "docker") -> RenderedStack:
    """The lead's cached render (tests/conftest.py), so a worker renders each stack once."""
    result = rendered(stack, platform)
    config, _ = load_stack_config(stack, overrides=on_platform(platform))
    return RenderedStack(
        stack=stack, platform=platform, rendered=result, config=config, files=result.files()
    )


def substitute(text: str, old: str, new: str, *, count: int = 1, what: str) -> str:
    """Replace ``old`` exactly ``count`` times, or fail naming the file at fault.

    A renamed directive then fails the test instead of silently testing a
    config that still points at container paths.
    """
    found = text.count(old)
    assert found == count, f"{what}: expected {count}x {old!r}, found {found}"
    return text.replace(old, new)


def substitute_re(text: str, pattern: str, new: str, *, count: int, what: str) -> str:
    result, n = re.subn(pattern, new, text, flags=re.MULTILINE)
    assert n == count, f"{what}: expected {count} matches of /{pattern}/, found {n}"
    return result


def free_ports(count: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """``count`` distinct ports free right now on 127.0.0.1.

    All sockets stay bound until every port is chosen: released one at a time,
    the kernel may hand out the same port twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, kind)) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free right now on 127.0.0.1 (bound to 0, then released)."""
    return free_ports(1, kind)[0]


def wait_for_port(
    port: int,
    *,
    proc: subprocess.Popen[bytes],
    what: str,
    log: Path | None = None,
    timeout: float = 10.0,
    host: str = "127.0.0.1",
) -> None:
    """Poll until host:port (loopback by default) accepts, failing early if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = log.read_text(errors="replace") if log and log.exists() else ""
            raise AssertionError(
                f"{what} exited with {proc.returncode} before listening:\n{detail}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} did not listen on {host}:{port} within {timeout}s")


class Daemon:
    """A started program, stopped (TERM, then KILL) by :meth:`stop`, output in ``log``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=user,
            start_new_session=True,
        )

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


DEMO_APP = REPO / "demo-app" / "server.js"


@dataclass
class StandIn:
    """An app replica: the demo app (demo-app/server.js, the one implementation of
    the app contract), which answers other pages with its id and the body bytes it got."""

    ident: str
    port: int
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def kill(self) -> None:
        """Die like a crashed replica: every socket, listening or kept alive, closes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


def start_standin(
    ident: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 10.0,
    env: Mapping[str, str] | None = None,
) -> StandIn:
    """The demo app on ``host:port`` (port 0: any), once it listens."""
    proc = subprocess.Popen(
        [need("node"), str(DEMO_APP)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env={
            **os.environ,
            "PORT": str(port),
            "HOSTNAME": host,
            "DEMO_INSTANCE": ident,
            "DEMO_ECHO_FORWARDING": "1",
            **(env or {}),
        },
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.strip().isdigit():
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        raise AssertionError(f"stand-in {ident} did not report its port: {line!r}")
    return StandIn(ident=ident, port=int(line), proc=proc, host=host)


@contextlib.contextmanager
def standins(
    idents: Sequence[str], *, hosts: Sequence[str] = (), port: int = 0
) -> Iterator[list[StandIn]]:
    """Stand-ins on 127.0.0.1 (any port), or one per host in ``hosts`` on ``port``."""
    started: list[StandIn] = []
    try:
        for i, ident in enumerate(idents):
            if hosts:
                started.append(start_standin(ident, host=hosts[i], port=port))
            else:
                started.append(start_standin(ident))
        yield started
    finally:
        for s in started:
            s.kill()

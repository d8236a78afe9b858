"""What the rotations scenario watches while an ``up`` runs: which caches answer,
who can log in to PostgreSQL, and whether a container was kept.

Everything is read from the daemon (its API, ``docker inspect``/``logs``) or by
logging in from the host, which holds an address on every network's bridge.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from tests.rehearsal.applier import CONTAINER
from tests.rehearsal.engine_api import EngineApi
from tests.rehearsal.scenarios.probe import address
from tests.rehearsal.session import Rehearsal

__all__ = [
    "CacheWatch",
    "HeldConnection",
    "app_env",
    "app_urns",
    "auth_failures",
    "identity",
    "login",
    "redis_ping",
]


def identity(r: Rehearsal, service: str) -> tuple[str, str]:
    """``(container ID, State.StartedAt)`` of ``service``'s container: a replacement
    changes the ID, a restart in place changes the start time."""
    out = r.docker("inspect", "-f", "{{.Id}} {{.State.StartedAt}}", r.container(service))
    cid, started = out.split()
    return cid, started


def app_urns(r: Rehearsal) -> set[str]:
    """URNs of the app replicas' containers in the applied state."""
    return {
        u
        for u, res in r.applier.state.resources.items()
        if res.type == CONTAINER
        and any(
            x["label"] == "com.luna.service" and x["value"] == "app"
            for x in res.inputs.get("labels") or []
        )
    }


def app_env(r: Rehearsal, key: str) -> dict[str, str]:
    """Running app container -> its ``key`` environment variable (DATABASE_URL...)."""
    out: dict[str, str] = {}
    for name, service in r.applier.state.containers().items():
        if service != "app":
            continue
        env = json.loads(r.docker("inspect", "-f", "{{json .Config.Env}}", name))
        out[name] = next((e.split("=", 1)[1] for e in env if e.startswith(f"{key}=")), "")
    return out


def _pg_env(r: Rehearsal, url: str) -> tuple[list[str], dict[str, str]]:
    """psql's conninfo and environment for a Prisma URL, at the server's address."""
    u = urlsplit(url)
    conninfo = (
        f"host={address(r, 'database')} port={u.port or 5432} "
        f"dbname={u.path.lstrip('/')} user={unquote(u.username or '')} "
        "sslmode=require connect_timeout=5 application_name=rehearsal-rotations"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": unquote(u.password or "")}
    return ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", conninfo], env


def login(r: Rehearsal, url: str) -> str:
    """A new login with ``url``'s credentials over TLS, as the app's pool opens one:
    ``""`` when it succeeds, else psql's error."""
    cmd, env = _pg_env(r, url)
    proc = subprocess.run(
        [*cmd, "-c", "SELECT 1"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return "" if proc.returncode == 0 and proc.stdout.strip() == "1" else proc.stderr.strip()


def auth_failures(r: Rehearsal, since: float, until: float) -> list[str]:
    """The server's log lines of failed logins between two wall-clock times."""
    proc = r.host.docker(
        "logs",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{until:.3f}",
        r.container("database"),
        check=False,
    )
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if "authentication failed" in ln]


def redis_ping(r: Rehearsal, url: str) -> str:
    """``PING`` on the cache with ``url``'s user and password (TLS, unverified: the
    check is the ACL): redis-cli's answer."""
    u = urlsplit(url)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REDISCLI_AUTH": unquote(u.password or ""),
    }
    proc = subprocess.run(
        [
            "redis-cli",
            "--tls",
            "--insecure",
            "-h",
            address(r, "cache"),
            "-p",
            str(u.port or 6379),
            "--user",
            unquote(u.username or "default"),
            "--no-auth-warning",
            "PING",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return (proc.stdout + proc.stderr).strip()


class HeldConnection:
    """One PostgreSQL session held open, as a replica's pooled connection is: it runs
    ``SELECT 1`` every second; :meth:`close` says how many of them answered."""

    def __init__(self, r: Rehearsal, url: str) -> None:
        cmd, env = _pg_env(r, url)
        self._proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.sent = 0
        self.broken = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        assert self._proc.stdin is not None
        while not self._stop.wait(1.0):
            try:
                self._proc.stdin.write("SELECT 1;\n")
                self._proc.stdin.flush()
                self.sent += 1
            except OSError as error:
                self.broken = f"{type(error).__name__} after {self.sent} queries"
                return

    def close(self) -> tuple[int, int, str]:
        """``(queries sent, answered, error)``."""
        self._stop.set()
        self._thread.join(5)
        try:
            out, err = self._proc.communicate("\\q\n", timeout=30)
        except (OSError, ValueError):
            out, err = self._proc.communicate(timeout=30)
        answered = sum(1 for ln in out.splitlines() if ln.strip() == "1")
        return self.sent, answered, (self.broken + " " + err.strip()).strip()


@dataclass
class CacheWatch:
    """Every ``every`` s: how many running containers carry the ``cache`` alias on
    a network (Docker's DNS answers with each of them, healthy or not)."""

    r: Rehearsal
    every: float = 0.2
    samples: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> CacheWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _count(self, api: EngineApi) -> int:
        labelled = json.dumps({"label": ["com.luna.service=cache"]})
        n = 0
        for c in api.request("GET", f"/containers/json?filters={quote(labelled)}") or []:
            info = api.request("GET", f"/containers/{c['Id']}/json")
            nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
            aliased = any("cache" in (net.get("Aliases") or []) for net in nets.values())
            n += int(bool(info["State"].get("Running")) and aliased)
        return n

    def _run(self) -> None:
        api = EngineApi(self.r.host.socket, timeout=10)
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self._count(api)))
            except (OSError, RuntimeError, KeyError) as error:  # a container gone mid-read
                self.errors.append(f"{type(error).__name__}: {error}"[:200])
            self._stop.wait(self.every)

    def between(self, start: float, end: float) -> tuple[int, float, int]:
        """``(most caches at once, longest time with none, samples)`` in the window."""
        window = [(t, n) for t, n in self.samples if start <= t <= end]
        most = max((n for _, n in window), default=0)
        gap, last_seen, none_since = 0.0, None, False
        for t, n in window:
            if n and none_since and last_seen is not None:
                gap = max(gap, t - last_seen)  # from the last sample with one to the next
            if n:
                last_seen, none_since = t, False
            else:
                none_since = True
        return most, gap, len(window)

"""Reading the running stack from the host: container addresses, HTTP, SQL, logs.

The host has an address on every network's bridge, so it reaches any container
directly at its network address (no port is published for it).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from components.configs import postgres as pg
from tests.rehearsal.session import Rehearsal
from tests.rehearsal.stack import Render, render_for

__all__ = [
    "WAL_KEY",
    "address",
    "archived_past",
    "archived_through",
    "get",
    "get_json",
    "poll",
    "psql",
    "wal_segments",
]

T = TypeVar("T")


def address(r: Rehearsal, service: str) -> str:
    name = r.container(service)
    nets = json.loads(r.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name))
    for net in nets.values():
        if net.get("IPAddress"):
            return str(net["IPAddress"])
    raise AssertionError(f"{name} has no network address")


def get(url: str, *, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http to a container
        return str(response.read().decode(errors="replace"))


def get_json(url: str) -> Any:
    return json.loads(get(url))


def poll(what: str, fn: Callable[[], T | None], *, timeout: float, every: float = 2.0) -> T:
    """``fn()`` until it returns something truthy; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as error:
            last = error
        time.sleep(every)
    raise AssertionError(
        f"{what}: not within {timeout:.0f} s" + (f" (last: {last})" if last else "")
    )


def psql(r: Rehearsal, sql: str, *, check: bool = True) -> str:
    """SQL as the ``postgres`` superuser over the server's own socket (docker exec)."""
    db = r.container("database")
    proc = r.host.docker("exec", db, "psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1",
                         "-h", "/var/run/postgresql", "-U", "postgres", "-d", pg.DATABASE,
                         "-c", sql, check=check)  # fmt: skip
    return proc.stdout.strip()


WAL_KEY = re.compile(r"/archive/.*/([0-9A-F]{24})-[0-9a-f]+")
"""An archived WAL segment's key in pgBackRest's repository: ``archive/<stanza>/
<version>/<first 16 of the name>/<segment>-<sha1>[.gz|.zst...]`` (pgbackrest
src/command/archive/push/file.c); group 1 is the segment's name."""


def wal_segments(keys: Iterable[str]) -> list[str]:
    """The keys of archived WAL segments, in the order they were written."""
    return sorted((k for k in keys if WAL_KEY.search(k)), key=lambda k: WAL_KEY.findall(k)[0])


ARCHIVED = re.compile(r"[0-9A-F]{24}(\.[0-9A-F]{8}\.backup)?")


def archived_past(last_archived: str, segment: str) -> bool:
    """Whether ``pg_stat_archiver.last_archived_wal`` = ``last_archived`` means
    ``segment`` is archived: a segment of its timeline at or after it. After a base
    backup the last file archived may be the backup's history file,
    ``<segment>.<offset>.backup``, archived after its segment: that segment counts
    (reading it as no segment held a caught-up archive "behind" until the next one)."""
    return bool(ARCHIVED.fullmatch(last_archived)) and (
        last_archived[:8] == segment[:8] and last_archived[:24] >= segment
    )


def archived_through(r: Rehearsal, segment: str, *, timeout: float) -> float | None:
    """Seconds until ``pg_stat_archiver`` has archived ``segment`` (or a later one of
    its timeline), or None after ``timeout``. The archiver archives in order, so every
    segment before it is archived too. Segment names of a timeline sort as written;
    ``segment`` is typically ``pg_walfile_name(pg_switch_wal())``, the one just closed."""
    if not re.fullmatch(r"[0-9A-F]{24}", segment):
        return None
    t0 = time.monotonic()

    def archived() -> bool:
        done = psql(r, "SELECT last_archived_wal FROM pg_stat_archiver", check=False)
        return archived_past(done, segment)

    try:
        poll(f"{segment} archived", archived, timeout=timeout, every=2)
    except AssertionError:
        return None
    return time.monotonic() - t0


def wait_healthy(r: Rehearsal, name: str, *, timeout: float = 180) -> None:
    """Until the container's health check says ``healthy``."""

    def healthy() -> bool:
        fmt = "{{.State.Health.Status}}"
        return r.docker("inspect", "-f", fmt, name, check=False).strip() == "healthy"

    poll(f"{name} healthy", healthy, timeout=timeout)


__all__ += ["wait_healthy"]


def image_ids(r: Rehearsal, *refs: str) -> dict[str, str]:
    """The render's image IDs plus those of ``refs`` (tags made during a scenario)."""
    ids = dict(r.render.image_ids)
    for ref in refs:
        ids[ref] = r.docker("image", "inspect", "-f", "{{.Id}}", ref).strip()
    return ids


__all__ += ["image_ids"]


def release(r: Rehearsal, base: str, tag: str) -> None:
    """``tag``: a new release of ``base`` with its own image ID (a label differs).

    A plain ``docker tag`` shares the ID, and the provider's container takes the
    image by ID (``RemoteImage.image_id``): the engine would see no change and
    roll nothing, so a deploy of it would prove nothing.
    """
    cid = r.docker("create", base).strip()
    try:
        r.docker("commit", "--change", f"LABEL org.luna.rehearsal.release={tag}", cid, tag)
    finally:
        r.docker("rm", "-f", cid, check=False)


def luna_schema(r: Rehearsal, rows: int = 25) -> int:
    """Luna's ``"User"`` table with ``rows`` rows; the count afterwards.

    The demo app stands in for Luna and has no schema (demo-app/prisma-shim); the
    drill and the PITR runbook check Luna's accounts table by name, so the
    rehearsal creates it as Luna's Prisma migration would (the columns the checks
    read are none: only the table and its rows matter).
    """
    psql(r, 'CREATE TABLE IF NOT EXISTS "User" (id text PRIMARY KEY, "createdAt" timestamptz '
            "NOT NULL DEFAULT now())")  # fmt: skip
    psql(r, f"INSERT INTO \"User\" (id) SELECT 'rehearsal-' || g FROM generate_series(1, {rows}) g "  # noqa: S608 - an int
            "ON CONFLICT DO NOTHING")  # fmt: skip
    return int(psql(r, 'SELECT count(*) FROM "User"'))


__all__ += ["luna_schema", "release"]


def rerender(
    r: Rehearsal,
    *,
    overrides: tuple[tuple[str, str], ...] = (),
    extra_secrets: tuple[tuple[str, str], ...] = (),
    images: tuple[str, ...] = (),
    edge: tuple[str, str, str] | None = None,
) -> Render:
    """The stack's render with these config changes (what ``pulumi config set`` does
    before an ``up``), keeping the first render's secrets, keys and certificates.

    ``images``: tags made during a scenario (their IDs are read from the daemon).
    ``edge``: a new ``(CA, certificate, key)`` for ``tlsCert``/``tlsKey``.
    """
    prior = r.render if edge is None else dataclasses.replace(r.render, edge=edge)
    return render_for(r.stack, r.world, f"unix://{r.host.socket}", prior=prior,
                      overrides=overrides, extra_secrets=extra_secrets,
                      image_ids=image_ids(r, *images) if images else None)  # fmt: skip


__all__ += ["rerender"]

"""g. Alerts, with the shipped rules, timings and routes (nothing shortened).

1. The crisis endpoint fails (every app replica stopped): a page must reach the
   receiver within :data:`PAGE_WITHIN_S`.
2. The object store goes dark for :data:`OUTAGE_S` (the relay in front of it
   accepts and never answers, as a dead network does) while the database
   keeps writing: an alert about archiving must reach the receiver within
   :data:`ALERT_WITHIN_S`, ``pg_wal`` must stay bounded, and once the store is
   back every WAL segment since the first base backup must be in it, none missing.

The outage runs in the background (:func:`start`), so the rehearsal starts it
before the deploy scenario and only waits for what is left of it here.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field

from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios.probe import poll, psql, wait_healthy
from tests.rehearsal.session import Rehearsal

__all__ = ["ALERT_WITHIN_S", "OUTAGE_S", "PAGE_WITHIN_S", "run", "start"]

PAGE_WITHIN_S = 120
OUTAGE_S = 6 * 60
ALERT_WITHIN_S = 5 * 60
PG_WAL_BOUND_MB = 1024
CRISIS = re.compile(r"LunaCrisis\w*|LunaAppDown")
ARCHIVING = re.compile(r"LunaWalArchiving\w*|LunaBackup\w*|LunaWal\w*")


@dataclass
class _Outage:
    started: float = 0.0
    alert_after: float | None = None
    wal_mb: list[float] = field(default_factory=list)
    thread: threading.Thread | None = None
    error: str = ""


_OUTAGES: dict[int, _Outage] = {}


def _alert_names(r: Rehearsal, since: float, pattern: re.Pattern[str]) -> list[tuple[float, str]]:
    out = []
    for at, _, body in r.world.receiver.since(since):
        if '"firing"' in body or "firing" in body:
            out += [(at + r.world.receiver.start - since, m) for m in pattern.findall(body)]
    return out


def _pg_wal_mb(r: Rehearsal) -> float:
    db = r.container("database")
    out = r.docker("exec", db, "du", "-sk", "/var/lib/postgresql/data/pgdata/pg_wal", check=False)
    return int(out.split()[0]) / 1024 if out.split() else float("nan")


def _outage(r: Rehearsal, o: _Outage) -> None:
    try:
        psql(r, "CREATE TABLE IF NOT EXISTS rehearsal_outage (id bigserial, at timestamptz "
                "DEFAULT clock_timestamp(), pad text)")  # fmt: skip
        o.started = time.monotonic()
        r.world.relay.outage(True)
        while time.monotonic() - o.started < OUTAGE_S:
            psql(r, "INSERT INTO rehearsal_outage (pad) SELECT repeat('x', 1000) "
                    "FROM generate_series(1, 200)", check=False)  # fmt: skip
            o.wal_mb.append(_pg_wal_mb(r))
            if o.alert_after is None and _alert_names(r, o.started + 0, ARCHIVING):
                o.alert_after = time.monotonic() - o.started
            time.sleep(10)
    except Exception as error:
        o.error = f"{type(error).__name__}: {error}"
    finally:
        r.world.relay.outage(False)


def start(r: Rehearsal) -> None:
    """Begin the object-store outage in the background (once per rehearsal)."""
    if id(r) in _OUTAGES:
        return
    o = _OUTAGES[id(r)] = _Outage()
    o.thread = threading.Thread(target=_outage, args=(r, o), daemon=True)
    o.thread.start()


def _crisis_page(r: Rehearsal) -> tuple[float | None, str]:
    replicas = [n for n, s in r.applier.state.containers().items() if s == "app"]
    t0 = time.monotonic()
    r.docker("stop", *replicas)
    try:
        found = poll("a crisis page at the receiver", lambda: _alert_names(r, t0, CRISIS),
                     timeout=PAGE_WITHIN_S + 60, every=2)  # fmt: skip
        return found[0][0], f"first page: {found[0][1]} after {found[0][0]:.0f} s"
    except AssertionError as error:
        return None, str(error)
    finally:
        r.docker("start", *replicas)
        for name in replicas:
            wait_healthy(r, name, timeout=120)


def _segments(r: Rehearsal) -> tuple[int, list[str]]:
    """(segments archived, gaps): WAL segment names between the first and the last."""
    names = sorted({m.group(1) for k in r.world.s3.keys(r.render.bucket)
                    if (m := re.search(r"/([0-9A-F]{24})-[0-9a-f]+", k))})  # fmt: skip
    gaps: list[str] = []
    numbers = [(n[:8], int(n[8:16], 16) * 256 + int(n[16:], 16)) for n in names]
    for (tl_a, a), (tl_b, b) in itertools.pairwise(numbers):
        if tl_a == tl_b and b != a + 1:
            gaps.append(f"timeline {tl_a}: {b - a - 1} segment(s) missing after {a:X}")
    return len(names), gaps


def run(r: Rehearsal) -> Outcome:
    start(r)
    o = _OUTAGES[id(r)]
    page_s, page_detail = _crisis_page(r)
    assert o.thread is not None
    o.thread.join(OUTAGE_S + 120)
    # Back: the archiver catches up (pgBackRest retries on the next archive_command).
    psql(r, "SELECT pg_switch_wal()", check=False)
    time.sleep(90)
    count, gaps = _segments(r)
    problems = []
    if page_s is None or page_s > PAGE_WITHIN_S:
        problems.append(f"crisis page: {page_detail}")
    if o.alert_after is None or o.alert_after > ALERT_WITHIN_S:
        problems.append(f"no archiving alert within {ALERT_WITHIN_S} s of the outage")
    peak = max(o.wal_mb or [float("nan")])
    if not peak <= PG_WAL_BOUND_MB:
        problems.append(f"pg_wal reached {peak:.0f} MB (bound {PG_WAL_BOUND_MB} MB)")
    problems += gaps + ([o.error] if o.error else [])
    alert = f"{o.alert_after:.0f} s" if o.alert_after is not None else "none"
    page = f"{page_s:.0f} s" if page_s is not None else "none"
    figure = (f"page {page}; outage {OUTAGE_S // 60} min: alert {alert}, pg_wal peak "
              f"{peak:.0f} MB, {count} segments, {len(gaps)} gaps")  # fmt: skip
    return Outcome("alerts", not problems, figure, "\n".join([*problems, page_detail]))

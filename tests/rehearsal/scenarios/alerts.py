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
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios.probe import address, get_json, poll, psql, wait_healthy
from tests.rehearsal.session import Rehearsal

__all__ = ["ALERT_WITHIN_S", "OUTAGE_S", "PAGE_WITHIN_S", "run", "start"]

PAGE_WITHIN_S = 120
OUTAGE_S = 6 * 60
ALERT_WITHIN_S = 5 * 60
PG_WAL_BOUND_MB = 1024
CRISIS = re.compile(r"LunaCrisis\w*|LunaAppDown")
# The alerts that say the crisis path is down *now*. The budget-burn alerts also
# page, but stay firing for their long window (30 min at the 6x burn) after any
# earlier failure, the stack's first start included: they are history, not a
# fault in progress, and a new fault pages through the alerts below regardless.
DOWN = re.compile(r"LunaCrisisEndpointDown|LunaCrisisEdgeDown|LunaAppDown")
ARCHIVING = re.compile(r"LunaWal\w*|LunaBackup\w*")
# One group_interval of the critical route (1m) and one maintenance pass of
# Alertmanager's dispatcher (30 s): what an open crisis group needs to close.
QUIET_S = 90
QUIET_WITHIN_S = 5 * 60
ALL = ("critical", "warning")
PAGE = ("critical",)


@dataclass
class _Outage:
    started: float = 0.0
    alert_after: float | None = None
    wal_mb: list[float] = field(default_factory=list)
    thread: threading.Thread | None = None
    error: str = ""


_OUTAGES: dict[int, _Outage] = {}


def _pages(
    r: Rehearsal, since: float, pattern: re.Pattern[str], *, severities: tuple[str, ...] = ALL
) -> list[tuple[float, str]]:
    """``(seconds after since, alertname)`` of each alert matching ``pattern`` (and
    ``severities``) that reached the alert webhook firing and *began* after ``since``
    (a monotonic time).

    Alertmanager's webhook payload carries each alert's ``startsAt`` (Prometheus'
    ``activeAt``): a notification about an alert that was already active, such as
    the automatic-rollback phase's crisis page repeated or resolved late, is not
    a page for this fault.
    """
    wall_since = time.time() - (time.monotonic() - since)
    out = []
    for at, path, body in r.world.receiver.since(since):
        if path != "/pager" or '"alerts"' not in body:
            continue
        for a in json.loads(body)["alerts"]:
            began = datetime.fromisoformat(a["startsAt"].replace("Z", "+00:00")).timestamp()
            name = a["labels"].get("alertname", "")
            severity = a["labels"].get("severity")
            if (a["status"] == "firing" and pattern.fullmatch(name) and severity in severities
                    and began >= wall_since):  # fmt: skip
                out.append((at + r.world.receiver.start - since, name))
    return out


def _quiet(r: Rehearsal) -> str:
    """Wait until no :data:`DOWN` alert is pending or firing, and none has been
    notified for :data:`QUIET_S`: a fault injected before then joins an aggregation
    group that is still open and waits for its ``group_interval`` instead of its
    ``group_wait`` (prometheus/alertmanager dispatch/dispatch.go: a group is removed
    only once it is empty, by the dispatcher's maintenance)."""
    base = f"http://{address(r, 'prometheus')}:9090/api/v1"

    def quiet() -> bool:
        active = get_json(f"{base}/alerts")["data"]["alerts"]
        if any(DOWN.fullmatch(a["labels"].get("alertname", "")) for a in active):
            return False
        recent = r.world.receiver.since(time.monotonic() - QUIET_S)
        return not any(DOWN.search(body) for _, _, body in recent)

    t0 = time.monotonic()
    poll("no crisis-down alert active or notified", quiet, timeout=QUIET_WITHIN_S, every=5)
    return f"quiet after {time.monotonic() - t0:.0f} s"


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
            if o.alert_after is None and _pages(r, o.started, ARCHIVING):
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
    try:
        quiet = _quiet(r)
    except AssertionError as error:
        return None, str(error)
    replicas = [n for n, s in r.applier.state.containers().items() if s == "app"]
    t0 = time.monotonic()
    r.docker("stop", *replicas)
    try:
        found = poll(
            "a crisis page at the receiver",
            lambda: _pages(r, t0, CRISIS, severities=PAGE),
            timeout=PAGE_WITHIN_S + 60,
            every=2,
        )
        return found[0][0], f"{quiet}; first page: {found[0][1]} after {found[0][0]:.0f} s"
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

"""b. Backups, as shipped: the database container's own start script takes the
first base backup into the object store, its success metric reaches Pushgateway,
``LunaBackupMissing`` is quiet in Prometheus, and the server never went through
crash recovery meanwhile. Then the recovery point: steady writes, ``docker
kill`` of the database, and how old the newest archived WAL was at the kill,
against the shipped ``archive_timeout``.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime

from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios.probe import (
    WAL_KEY,
    address,
    get,
    get_json,
    poll,
    psql,
    wait_healthy,
)
from tests.rehearsal.session import Rehearsal

__all__ = ["run"]

FIRST_BACKUP_S = 240
METRIC = "luna_backup_last_success_timestamp_seconds"
# The postmaster's words when a child dies (postmaster.c LogChildExit / HandleChildCrash).
CRASH = re.compile(r"terminating any other active server processes|was terminated by signal|"
                   r"server process \(PID \d+\) exited with exit code|"
                   r"all server processes terminated; reinitializing")  # fmt: skip


def _backup_objects(r: Rehearsal) -> list[str]:
    keys = r.world.s3.keys(r.render.bucket)
    return [k for k in keys if "/backup/" in k and k.endswith("backup.manifest")]


def _first_backup_s(r: Rehearsal) -> float:
    """Seconds from the database container's creation to the first backup's manifest."""
    client = r.world.s3.client()
    stored = [float(client.head_object(Bucket=r.render.bucket, Key=k)["LastModified"].timestamp())
              for k in _backup_objects(r)]  # fmt: skip
    started = r.docker("inspect", "-f", "{{.Created}}", r.container("database")).strip()
    # Docker prints nanoseconds; fromisoformat takes microseconds.
    since = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", started.replace("Z", "+00:00")))
    return min(stored) - since.timestamp()


def _wal_times(r: Rehearsal) -> list[float]:
    """When each archived WAL segment was uploaded. The drill's failing cases, which may
    run beside this scenario, rewrite an object to corrupt it and again to restore it,
    which moves its LastModified; they note the first upload's (UNIX seconds)."""
    client = r.world.s3.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=r.render.bucket)
    rewritten: dict[str, float] = r.figures.get("rewritten objects", {})
    return sorted(
        min(o["LastModified"].timestamp(), rewritten.get(o["Key"], float("inf")))
        for p in pages
        for o in p.get("Contents", [])
        if WAL_KEY.search(o["Key"])
    )


def _alert_state(r: Rehearsal, name: str) -> tuple[bool, list[str]]:
    """(the rule is loaded, the states of its active alerts) from Prometheus' API."""
    base = f"http://{address(r, 'prometheus')}:9090/api/v1"
    groups = get_json(f"{base}/rules")["data"]["groups"]
    loaded = any(rule.get("name") == name for g in groups for rule in g["rules"])
    alerts = get_json(f"{base}/alerts")["data"]["alerts"]
    return loaded, [a["state"] for a in alerts if a["labels"].get("alertname") == name]


def _archive_timeout(r: Rehearsal) -> int:
    """Seconds (PostgreSQL shows ``1min``, ``30s``, ``1h``)."""
    text = psql(r, "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'")
    return int(text or 0)  # pg_settings gives it in its unit, seconds


def _rpo(r: Rehearsal) -> tuple[float, float, str]:
    """(seconds between the newest archived WAL and the kill, archive_timeout, detail)."""
    psql(r, "CREATE TABLE IF NOT EXISTS rehearsal_rpo (id bigserial primary key, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp())")  # fmt: skip
    stop = threading.Event()
    written: list[float] = []

    def writer() -> None:
        while not stop.is_set():
            out = psql(r, "INSERT INTO rehearsal_rpo DEFAULT VALUES RETURNING "
                          "extract(epoch from at)", check=False)  # fmt: skip
            if re.fullmatch(r"[0-9.]+", out):
                written.append(float(out))
            time.sleep(0.2)

    timeout = _archive_timeout(r)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    # At least one switch forced by archive_timeout under load: the checkpointer
    # switches once archive_timeout has passed since the last switch and WAL was
    # written since (postgres src/backend/postmaster/checkpointer.c,
    # CheckArchiveTimeout), so within archive_timeout of the first write; 10 s more
    # for its archive-push.
    time.sleep(timeout + 10)
    killed = time.time()
    r.docker("kill", r.container("database"))
    stop.set()
    thread.join(30)
    newest = max([t for t in _wal_times(r) if t <= killed + 1] or [0.0])
    gap = killed - newest
    after = [t for t in written if t > newest]
    detail = (f"{len(written)} rows written; last commit {killed - max(written or [killed]):.1f} s "
              f"before the kill; newest archived WAL {gap:.1f} s before it; {len(after)} rows "
              f"committed after that segment")  # fmt: skip
    return gap, float(timeout), detail


def _restart(r: Rehearsal) -> None:
    db = r.container("database")
    if r.docker("inspect", "-f", "{{.State.Running}}", db).strip() != "true":
        r.docker("start", db)
    wait_healthy(r, db)


def run(r: Rehearsal) -> Outcome:
    problems: list[str] = []
    try:
        poll(
            "a base backup in the object store", lambda: _backup_objects(r), timeout=FIRST_BACKUP_S
        )
        first = _first_backup_s(r)
    except AssertionError as error:
        first = float("nan")
        problems.append(str(error))
    pushgateway = f"http://{address(r, 'pushgateway')}:9091/metrics"
    pushed = [ln for ln in get(pushgateway).splitlines() if ln.startswith(METRIC)]
    if not pushed:
        problems.append(f"{METRIC} is not in Pushgateway")
    try:
        poll("LunaBackupMissing quiet (rule loaded, no pending or firing alert)",
             lambda: (lambda s: s[0] and not s[1])(_alert_state(r, "LunaBackupMissing")),
             timeout=90, every=5)  # fmt: skip
    except AssertionError as error:
        problems.append(f"{error}: {_alert_state(r, 'LunaBackupMissing')}")
    db_log = r.host.docker("logs", r.container("database"), check=False)
    crashes = [ln for ln in (db_log.stdout + db_log.stderr).splitlines() if CRASH.search(ln)]
    if crashes:
        problems.append("the server went through crash recovery:\n" + "\n".join(crashes[:6]))
    gap, timeout, rpo_detail = _rpo(r)
    _restart(r)
    if gap > timeout + 15:
        problems.append(f"RPO {gap:.0f} s exceeds archive_timeout {timeout:.0f} s (+15 s)")
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    figure = (
        f"first backup {first:.0f} s after the database was created; "
        f"RPO {gap:.0f} s (archive_timeout {timeout:.0f} s)"
    )
    return Outcome("backups", not problems, figure,
                   "\n".join([*problems, rpo_detail, f"checked at {stamp} UTC"]))  # fmt: skip

"""c. The restore drill as shipped: the drill container's own script, in its image,
with its environment, against the real archive of a database with pgaudit on.

It must fail (exit non-zero and push ``luna_restore_drill_success 0``) on each
of: one archived WAL segment corrupted, one backup file corrupted, a wrong
cipher pass; each corruption is undone before the next case. Then it must pass
on the archive as it is, restoring at least :data:`RESTORE_MIN_MB` of table
data: a table of that size is loaded into the live database and backed up by
the backup container's own loop (woken, :mod:`backup_loop`) before the drill,
and the restore's size and time are read from the drill's output. The table is
dropped and the loop takes one more backup afterwards, so later scenarios
restore a small database. The failure cases run first: ``pgbackrest verify``
reads the whole repository, so each of them would read the big backup too. With
the backups scenario selected they run beside it (:func:`start_cases`).
It runs with ``docker exec`` in the drill's running container, whose loop
sleeps between scheduled runs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios import backup_loop
from tests.rehearsal.scenarios.probe import (
    address,
    archived_through,
    get,
    luna_schema,
    poll,
    psql,
    wal_segments,
)
from tests.rehearsal.session import Rehearsal

__all__ = ["join_cases", "run", "start_cases"]

DRILL = "/opt/luna/drill.sh"
SUCCESS = re.compile(
    r'^luna_restore_drill_success\{[^}]*job="luna-restore-drill"[^}]*\} (\S+)$', re.M
)


USER_ROWS = re.compile(r'^luna_restore_drill_rows\{[^}]*table="User"[^}]*\} (\S+)$', re.M)
DURATION = re.compile(
    r'^luna_restore_drill_duration_seconds\{[^}]*job="luna-restore-drill"[^}]*\} (\S+)$', re.M
)
RESTORE_MIN_MB = 100
"""MiB of table data the drill must restore (issue #21: "restore time for at least 100 MB")."""
BIG = "rehearsal_restore"
# pgBackRest's restore logs its size (src/command/restore/restore.c, cmdRestore).
RESTORE_SIZE = re.compile(r"restore size = ([0-9.]+[KMGT]?B)")
BACKUP_WITHIN_S = 300


def _pushed(r: Rehearsal, metric: re.Pattern[str]) -> float:
    found = metric.search(get(f"http://{address(r, 'pushgateway')}:9091/metrics"))
    return float(found.group(1)) if found else float("nan")


def _drill(r: Rehearsal, *env: str) -> tuple[int, str, float]:
    """(exit status, output tail, success value pushed) of one run of the shipped drill."""
    container = r.container("database-drill")
    flags = [arg for e in env for arg in ("--env", e)]
    proc = r.host.docker("exec", *flags, container, "/bin/sh", DRILL, check=False)
    metrics = get(f"http://{address(r, 'pushgateway')}:9091/metrics")
    found = SUCCESS.search(metrics)
    pushed = float(found.group(1)) if found else float("nan")
    return proc.returncode, proc.stdout + proc.stderr, pushed


@contextmanager
def _corrupted(r: Rehearsal, pick: Callable[[list[str]], str]) -> Iterator[str]:
    """One object of the bucket with bytes flipped in its middle; restored afterwards."""
    client = r.world.s3.client()
    key = pick(r.world.s3.keys(r.render.bucket))
    got = client.get_object(Bucket=r.render.bucket, Key=key)
    original = got["Body"].read()
    # Its upload time, for the recovery point measured meanwhile (backups._wal_times).
    uploaded = r.figures.setdefault("rewritten objects", {})
    uploaded.setdefault(key, got["LastModified"].timestamp())
    broken = bytearray(original)
    for i in range(len(broken) // 2, min(len(broken), len(broken) // 2 + 64)):
        broken[i] ^= 0xFF
    client.put_object(Bucket=r.render.bucket, Key=key, Body=bytes(broken))
    try:
        yield key
    finally:
        client.put_object(Bucket=r.render.bucket, Key=key, Body=original)


def _newest_wal(keys: list[str]) -> str:
    wal = wal_segments(keys)
    assert wal, "no archived WAL segment in the bucket"
    return wal[-1]


def _backup_file(keys: list[str]) -> str:
    files = sorted(k for k in keys if "/backup/" in k and ("/pg_data/" in k or "/bundle/" in k))
    assert files, "no backup data file in the bucket"
    return files[len(files) // 2]


def _load(r: Rehearsal) -> float:
    """A table of at least :data:`RESTORE_MIN_MB` MiB in the live database; its size in MiB.

    md5 text of random numbers: compressible about as much as real text (not a
    run of one byte), so the backup and the restore move real volume.
    """
    note = " || ".join(["md5(random()::text)"] * 4)
    fill = "INSERT INTO {t} SELECT g, " + note + " FROM generate_series(1, {n}) g"  # noqa: S608 - constants
    psql(r, f"DROP TABLE IF EXISTS {BIG}; CREATE TABLE {BIG} (id bigint, note text)")
    rows = 540_000  # about 204 bytes a row: 40 to an 8 KiB page, 105 MiB
    while True:
        psql(r, fill.format(t=BIG, n=rows))
        mib = int(psql(r, f"SELECT pg_total_relation_size('{BIG}')")) / 2**20
        if mib >= RESTORE_MIN_MB:
            return mib
        rows = 50_000


def _backup(r: Rehearsal) -> tuple[str, float]:
    """One pass of the backup loop, woken now: (its label, seconds to its manifest)."""
    before = backup_loop.backup_labels(r)
    t0 = time.monotonic()
    poll("the backup loop asleep, woken", lambda: backup_loop.wake(r), timeout=60, every=3)
    label = backup_loop.new_backup(r, before, timeout=BACKUP_WITHIN_S)
    return label, time.monotonic() - t0


def _restore_s(out: str) -> float | None:
    """Seconds between pgBackRest's ``restore command begin`` and ``end`` lines."""
    stamps = {}
    for m in re.finditer(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) P00 +INFO: restore "
                         r"command (begin|end)", out, re.M):  # fmt: skip
        stamps[m.group(2)] = datetime.fromisoformat(m.group(1)).timestamp()
    return stamps["end"] - stamps["begin"] if len(stamps) == 2 else None


def _big_drill(r: Rehearsal, users: int) -> tuple[list[str], str, str]:
    """The drill as shipped, restoring a backup with :data:`RESTORE_MIN_MB` MiB of table
    data: (problems, figure, detail)."""
    problems: list[str] = []
    table_mib = _load(r)
    # The load's WAL is archived first: a backup waits only archive-timeout (60 s)
    # for the segment it ends in, behind the load's hundred megabytes.
    closed = psql(r, "SELECT pg_walfile_name(pg_switch_wal())")
    if archived_through(r, closed, timeout=240) is None:
        raise AssertionError(f"the load's WAL (through {closed}) was not archived within 240 s")
    label, backup_s = _backup(r)
    psql(r, "SELECT pg_switch_wal()")
    time.sleep(5)
    code, out, pushed = _drill(r)
    restored = _pushed(r, USER_ROWS)
    duration = _pushed(r, DURATION)
    size = RESTORE_SIZE.search(out)
    size_mib = (backup_loop.size_bytes(size.group(1)) or 0) / 2**20 if size else float("nan")
    restore_s = _restore_s(out)
    if code != 0 or pushed != 1:
        problems.append(
            f"the drill failed on a good archive (exit {code}, success {pushed}):\n{out[-600:]}"
        )
    elif restored != users:
        problems.append(f'the restored copy has {restored} "User" rows, the live one {users}')
    if not size_mib >= table_mib or restore_s is None:
        problems.append(f"the drill's output has no restore of the {table_mib:.0f} MiB table "
                        f"(restore size {size_mib:.0f} MiB, time {restore_s}):\n"
                        f"{out[-600:]}")  # fmt: skip
    psql(r, f"DROP TABLE {BIG}")
    _, after_s = _backup(r)  # later scenarios restore a backup without the table
    figure = (f"{table_mib:.0f} MiB table backed up by the loop in {backup_s:.0f} s; "
              f"restored {size_mib:.0f} MiB in {restore_s or float('nan'):.0f} s, "
              f"drill {duration:.0f} s in all")  # fmt: skip
    detail = (f"as shipped: exit {code}, pushed success {pushed}, \"User\" rows {restored} "
              f"(live {users}); backup {label} of the {table_mib:.1f} MiB table by the loop in "
              f"{backup_s:.0f} s; pgbackrest restore of {size_mib:.1f} MiB in {restore_s} s; "
              f"drill {duration:.0f} s in all (verify, restore, recovery, pg_amcheck); "
              f"table dropped, backup after it {after_s:.0f} s")  # fmt: skip
    return problems, figure, detail


def _cases(r: Rehearsal) -> tuple[int, list[str], list[str]]:
    """The three cases the drill must fail: (the live "User" rows, problems, rows)."""
    # The drill restores the latest backup; the backup scenario waited for the first.
    poll("a base backup to drill", lambda: any("backup.manifest" in k for k in
         r.world.s3.keys(r.render.bucket)), timeout=240)  # fmt: skip
    users = luna_schema(r)
    psql(r, "SELECT pg_switch_wal()")
    time.sleep(5)
    rows: list[str] = []
    problems: list[str] = []

    def wal_case() -> tuple[int, str, float]:
        with _corrupted(r, _newest_wal):
            return _drill(r)

    def backup_case() -> tuple[int, str, float]:
        with _corrupted(r, _backup_file):
            return _drill(r)

    cases: list[tuple[str, Callable[[], tuple[int, str, float]]]] = [
        ("corrupted WAL segment", wal_case), ("corrupted backup file", backup_case),
        ("wrong cipher pass", lambda: _drill(r, "PGBACKREST_REPO1_CIPHER_PASS=not-the-pass")),
    ]  # fmt: skip
    for label, case in cases:
        t0 = time.monotonic()
        code, out, pushed = case()
        rows.append(
            f"{label}: exit {code}, pushed success {pushed} ({time.monotonic() - t0:.0f} s)"
        )
        if code == 0 or pushed != 0:
            problems.append(f"{label}: the drill did not fail (exit {code}, success {pushed}):\n"
                            f"{out[-600:]}")  # fmt: skip
    return users, problems, rows


def start_cases(r: Rehearsal) -> None:
    """Run the failing cases in the background (beside the backups scenario: they read
    the store from the drill's own container and touch neither the live database nor
    the app; the recovery-point measurement reads each segment's first upload time,
    which :func:`_corrupted` notes, so a corrupted and restored object does not move it)."""
    r.in_background("drill cases", _cases)


def join_cases(r: Rehearsal) -> None:
    """Wait for the background cases (each restores its corrupted object when done)."""
    if "drill cases" in r.background:
        r.background["drill cases"].join(3 * 300)


def run(r: Rehearsal) -> Outcome:
    if "drill cases" not in r.background:
        users, problems, rows = _cases(r)
    else:
        join_cases(r)
        cases = r.background["drill cases"]
        if cases.result is None:
            return Outcome("drill", False, "the failing cases did not finish", cases.error)
        users, problems, rows = cases.result
    failed_cases = len(problems)
    big, figure, detail = _big_drill(r, users)
    problems = [*problems, *big]
    passed = 3 - failed_cases + (not big)
    return Outcome("drill", not problems, f"{passed}/4 cases as expected; {figure}",
                   "\n".join([*problems, detail, *rows]))  # fmt: skip

"""c. The restore drill as shipped: the drill container's own script, in its image,
with its environment, against the real archive of a database with pgaudit on.

It must pass on the archive as it is, and fail (exit non-zero and push
``luna_restore_drill_success 0``) on each of: one archived WAL segment
corrupted, one backup file corrupted, a wrong cipher pass. Each corruption is
undone before the next case. It runs with ``docker exec`` in the drill's
running container, whose loop sleeps between scheduled runs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios.probe import address, get, luna_schema, poll, psql
from tests.rehearsal.session import Rehearsal

__all__ = ["run"]

DRILL = "/opt/luna/drill.sh"
SUCCESS = re.compile(
    r'^luna_restore_drill_success\{[^}]*job="luna-restore-drill"[^}]*\} (\S+)$', re.M
)


USER_ROWS = re.compile(r'^luna_restore_drill_rows\{[^}]*table="User"[^}]*\} (\S+)$', re.M)


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
    return proc.returncode, (proc.stdout + proc.stderr)[-600:], pushed


@contextmanager
def _corrupted(r: Rehearsal, pick: Callable[[list[str]], str]) -> Iterator[str]:
    """One object of the bucket with bytes flipped in its middle; restored afterwards."""
    client = r.world.s3.client()
    key = pick(r.world.s3.keys(r.render.bucket))
    original = client.get_object(Bucket=r.render.bucket, Key=key)["Body"].read()
    broken = bytearray(original)
    for i in range(len(broken) // 2, min(len(broken), len(broken) // 2 + 64)):
        broken[i] ^= 0xFF
    client.put_object(Bucket=r.render.bucket, Key=key, Body=bytes(broken))
    try:
        yield key
    finally:
        client.put_object(Bucket=r.render.bucket, Key=key, Body=original)


def _newest_wal(keys: list[str]) -> str:
    wal = sorted(k for k in keys if re.search(r"/archive/.*/[0-9A-F]{24}-", k))
    assert wal, "no archived WAL segment in the bucket"
    return wal[-1]


def _backup_file(keys: list[str]) -> str:
    files = sorted(k for k in keys if "/backup/" in k and ("/pg_data/" in k or "/bundle/" in k))
    assert files, "no backup data file in the bucket"
    return files[len(files) // 2]


def run(r: Rehearsal) -> Outcome:
    # The drill restores the latest backup; the backup scenario waited for the first.
    poll("a base backup to drill", lambda: any("backup.manifest" in k for k in
         r.world.s3.keys(r.render.bucket)), timeout=240)  # fmt: skip
    users = luna_schema(r)
    psql(r, "SELECT pg_switch_wal()")
    time.sleep(5)
    rows: list[str] = []
    problems: list[str] = []
    code, out, pushed = _drill(r)
    restored = _pushed(r, USER_ROWS)
    rows.append(f"as shipped: exit {code}, pushed success {pushed}, \"User\" rows {restored} "
                f"(live {users})")  # fmt: skip
    if code != 0 or pushed != 1:
        problems.append(
            f"the drill failed on a good archive (exit {code}, success {pushed}):\n{out}"
        )
    elif restored != users:
        problems.append(f'the restored copy has {restored} "User" rows, the live one {users}')
    cases: list[tuple[str, Callable[[], tuple[int, str, float]]]] = []

    def wal_case() -> tuple[int, str, float]:
        with _corrupted(r, _newest_wal):
            return _drill(r)

    def backup_case() -> tuple[int, str, float]:
        with _corrupted(r, _backup_file):
            return _drill(r)

    cases += [("corrupted WAL segment", wal_case), ("corrupted backup file", backup_case),
              ("wrong cipher pass",
               lambda: _drill(r, "PGBACKREST_REPO1_CIPHER_PASS=not-the-pass"))]  # fmt: skip
    for label, case in cases:
        code, out, pushed = case()
        rows.append(f"{label}: exit {code}, pushed success {pushed}")
        if code == 0 or pushed != 0:
            problems.append(f"{label}: the drill did not fail (exit {code}, success {pushed}):\n"
                            f"{out}")  # fmt: skip
    passed = 4 - len(problems)
    return Outcome("drill", not problems, f"{passed}/4 cases as expected",
                   "\n".join([*problems, *rows]))  # fmt: skip

"""The shipped backup loop and pgBackRest's own log lines, as the scenarios read them.

The ``database-backup`` container runs the loop of
components/configs/pgbackrest.py ``backup_script``: one pass (a full or a
differential backup), then ``sleep`` for the schedule's interval, or for the
retry delay after a failed pass. :func:`wake` ends the loop's current sleep, so
its *next* pass starts now, in the same process: a scenario need not wait a
schedule's hours, and what runs is the loop's own pass, not a hand-made backup.

pgBackRest logs each command's ``begin`` and ``end`` (src/command/command.c,
``cmdBegin``/``cmdEnd``); :func:`command_runs` pairs them, timed by the
daemon's ``docker logs --timestamps`` clock (the host's).
"""

from __future__ import annotations

import re
from datetime import datetime

from tests.rehearsal.scenarios.probe import poll
from tests.rehearsal.session import Rehearsal

__all__ = ["backup_labels", "command_runs", "loop_identity", "new_backup", "size_bytes", "wake"]

# The heartbeat sleeps 30 s and the start-up wait 5 s; the loop's own sleeps are
# the schedule's interval (hours) and the retry delay (600 s).
_LOOP_SLEEP_MIN_S = 60
_WAKE = (
    'for p in /proc/[0-9]*; do set -- $(tr "\\0" " " < "$p/cmdline" 2>/dev/null); '
    '[ "${1:-}" = sleep ] && [ "${2:-0}" -ge ' + str(_LOOP_SLEEP_MIN_S) + " ] 2>/dev/null "
    '&& kill "${p#/proc/}" && echo "${p#/proc/} $*"; done; true'
)
_STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z (.*)$")
_MANIFEST = re.compile(r"/backup/[^/]+/([^/]+)/backup\.manifest$")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def backup_labels(r: Rehearsal) -> set[str]:
    """The labels of the backups whose manifest is in the object store."""
    found = (_MANIFEST.search(k) for k in r.world.s3.keys(r.render.bucket))
    return {m.group(1) for m in found if m}


def wake(r: Rehearsal) -> str:
    """End the backup loop's current sleep (``PID sleep N`` of each process ended)."""
    out = r.docker("exec", r.container("database-backup"), "/bin/sh", "-c", _WAKE)
    if not out.strip():
        raise AssertionError("the backup loop was not sleeping (no `sleep N>=60` in its container)")
    return out.strip()


def new_backup(r: Rehearsal, before: set[str], *, timeout: float) -> str:
    """Wait for a backup whose label is not in ``before``; its label."""
    found = poll("a new backup in the object store", lambda: sorted(backup_labels(r) - before),
                 timeout=timeout, every=3)  # fmt: skip
    return found[-1]


def loop_identity(r: Rehearsal) -> str:
    """The backup container's start time and restart count: unchanged while the loop lives."""
    fmt = "{{.State.StartedAt}} restarts={{.RestartCount}} running={{.State.Running}}"
    return r.docker("inspect", "-f", fmt, r.container("database-backup")).strip()


def _stamp(text: str) -> float:
    # Docker prints nanoseconds; fromisoformat takes microseconds.
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text) + "+00:00").timestamp()


def command_runs(logs: str, command: str) -> list[tuple[float, float | None, str]]:
    """``(begin, end, how it ended)`` of each run of a pgBackRest ``command`` in
    ``docker logs --timestamps`` output (UNIX seconds; ``end`` None: still running).

    Runs of one command in one container are paired in order: PostgreSQL's
    archiver runs one ``archive_command`` at a time, and the backup loop one pass.
    """
    runs: list[tuple[float, float | None, str]] = []
    begin: float | None = None
    # stdout and stderr arrive apart: order their lines by the daemon's stamps.
    lines = sorted((_stamp(m.group(1)), m.group(2)) for ln in logs.splitlines()
                   if (m := _STAMPED.match(ln)))  # fmt: skip
    for at, text in lines:
        if f" {command} command begin" in text:
            if begin is not None:
                runs.append((begin, None, "no end logged"))
            begin = at
        elif f" {command} command end: " in text and begin is not None:
            runs.append((begin, at, text.split(" command end: ", 1)[1].strip()))
            begin = None
    if begin is not None:
        runs.append((begin, None, "still running"))
    return runs


def size_bytes(text: str) -> int | None:
    """pgBackRest's size spelling (``130.4MB``, ``1.2GB``, 1024-based) in bytes."""
    m = re.fullmatch(r"([0-9.]+)\s*([KMGT]?B)", text.strip())
    return round(float(m.group(1)) * _UNITS[m.group(2)]) if m else None

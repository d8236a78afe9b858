"""i. ``pulumi destroy --exclude-protected``, then ``up`` again (issue #22, protection).

What the engine deletes is the engine model's (tests/engine/model.py
``destroy_excluding_protected``, from pulumi/pulumi pkg/cmd/pulumi/operations/
destroy.go ``getProtectedExcludes``): every resource but the protected ones and
their transitive dependencies. The applier carries those deletes out on the
daemon (an ``up`` of a program that holds only the kept resources plans exactly
them), then ``up`` of the stack's render creates the rest again.

Must hold on a stack that protects its data (prod): the data volume survives
the destroy; the database created again starts on it (the same system
identifier, the rows written before the destroy) and archives WAL to the object
store again, with the passwords it kept. On a stack that protects nothing
(dev, staging: ``protect`` is off in their config) the destroy deletes all of
it by design, so there is nothing to check and the scenario says so.

The rehearsal renders once, so the second ``up`` reuses the first render's TLS
keys, where a real one would make new keys (they are not protected): the
certificates are not what this checks.
"""

from __future__ import annotations

import time

from tests.engine.model import destroy_excluding_protected
from tests.rehearsal.applier import CONTAINER, VOLUME
from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios.probe import archived_through, psql
from tests.rehearsal.session import Rehearsal

__all__ = ["ARCHIVE_WITHIN_S", "run"]

ARCHIVE_WITHIN_S = 180


def _data_volume(r: Rehearsal) -> str | None:
    """The database's protected data volume's name on the daemon, if it has one."""
    for urn, res in r.applier.model.resources.items():
        if res.type == VOLUME and res.protect and urn.endswith("-postgres-data"):
            return str(res.outputs.get("name") or res.inputs["name"])
    return None


def _destroy(r: Rehearsal) -> tuple[int, int, float]:
    """The engine's deletes, carried out: (deleted, kept, seconds)."""
    state = r.applier.model.resources
    deleted, kept = destroy_excluding_protected(state)
    t0 = time.monotonic()
    r.applier.up({u: state[u] for u in state if u in kept})
    return len(deleted), len(kept), time.monotonic() - t0


def run(r: Rehearsal) -> Outcome:
    volume = _data_volume(r)
    if volume is None:
        why = f"{r.stack}: no protected database volume; destroy deletes it all"
        return Outcome("destroy", True, f"n/a: {r.stack} protects no data (its config)", why)
    psql(r, "CREATE TABLE IF NOT EXISTS rehearsal_destroy (id int); "
            "INSERT INTO rehearsal_destroy VALUES (42)")  # fmt: skip
    system_id = psql(r, "SELECT system_identifier FROM pg_control_system()")
    deleted, kept, destroy_s = _destroy(r)
    problems: list[str] = []
    volumes = r.docker("volume", "ls", "-q").split()
    if volume not in volumes:
        problems.append(f"the data volume {volume} was deleted")
    left = [n for n in r.docker("ps", "-aq").split() if n]
    if left:
        problems.append(f"{len(left)} containers outlived the destroy")
    if any(res.type == CONTAINER for res in r.applier.model.resources.values()):
        problems.append("the engine's state still holds containers after the destroy")
    t0 = time.monotonic()
    r.applier.up(r.render.resources)
    up_s = time.monotonic() - t0
    again = psql(r, "SELECT system_identifier FROM pg_control_system()")
    rows = psql(r, "SELECT count(*) FROM rehearsal_destroy WHERE id = 42", check=False)
    if again != system_id:
        problems.append(f"a new cluster started (system id {again}, was {system_id})")
    if rows != "1":
        problems.append(f"the rows written before the destroy are gone ({rows or 'no table'})")
    segment = psql(r, "SELECT pg_walfile_name(pg_switch_wal())")
    archived = archived_through(r, segment, timeout=ARCHIVE_WITHIN_S)
    if archived is None:
        problems.append(f"WAL segment {segment} not archived within {ARCHIVE_WITHIN_S} s")
    figure = (
        f"destroy deleted {deleted}, kept {kept} (data volume kept: {volume in volumes}) "
        f"in {destroy_s:.0f} s; up again {up_s:.0f} s: same cluster "
        f"{again == system_id}, rows kept {rows == '1'}, WAL archived "
        + (f"{archived:.0f} s after the switch" if archived is not None else "never")
    )
    return Outcome("destroy", not problems, figure, "\n".join(problems))

"""The rehearsal's scenarios, in the order they run; each reports one measured figure.

A scenario is ``run(rehearsal) -> Outcome``. It fails by returning ``ok=False``
with the evidence in ``detail`` (never by hiding a check). Scenario ``up`` applies
the stack; every other one needs it up and says so when it is not.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator

from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios import (
    alerts,
    backups,
    deploy,
    destroy,
    drill,
    idempotence,
    metadata,
    phi,
    rotations,
    runbooks,
    up,
)  # fmt: skip
from tests.rehearsal.session import Rehearsal

__all__ = [
    "NAMES",
    "SCENARIOS",
    "Outcome",
    "run_all",
    "run_beside",
    "run_scenario",
    "start_background",
]


Scenario = Callable[[Rehearsal], Outcome]


SCENARIOS: dict[str, Scenario] = {
    "up": up.run,
    "idempotence": idempotence.run,
    "backups": backups.run,
    "drill": drill.run,
    "runbooks": runbooks.run,
    "phi": phi.run,
    "metadata": metadata.run,
    "rotations": rotations.run,
    "deploy": deploy.run,
    "alerts": alerts.run,
    "destroy": destroy.run,
}
BACKGROUND: dict[str, Callable[[Rehearsal], None]] = {"alerts": alerts.start}
"""Scenarios with a long wait, started once the scenarios that need the object store
are done, so that the PHI, metadata, rotation and deploy scenarios run meanwhile."""
QUIET = ("up", "idempotence", "backups", "drill", "runbooks")
"""Scenarios that need the object store (or the stack as applied): the outage
starts once the last of them is done with it (runbooks says so after its PITR and
minor bump, before its rotation and rollback)."""
Beside = tuple[str, Callable[[Rehearsal], None], Callable[[Rehearsal], None]]
BESIDE: dict[str, tuple[Beside, ...]] = {
    "backups": (
        ("drill", drill.start_cases, drill.join_cases),
        ("alerts", alerts.start_page, alerts.join_page),
    ),
}
"""``scenario: ((owner, start, join), ...)``: parts of ``owner`` that run while
``scenario`` does and are over before the next one starts; ``owner`` reports them.
The recovery point (backups) mostly waits for ``archive_timeout`` while a writer
commits, then kills the database. Beside it, the drill's three failing cases run
the drill in its own container against the store (never the live database; their
rewritten objects keep their first upload time for the recovery point), and the
crisis page stops every app replica and waits (Prometheus' scrapes, the rule's
``for``, Alertmanager's group wait); the database's kill is not a crisis alert."""
NAMES = tuple(SCENARIOS)


def start_background(names: list[str], r: Rehearsal) -> None:
    """Start the background part of every selected scenario that has one."""
    for name in names:
        if name in BACKGROUND and r.figures.get("applied"):
            BACKGROUND[name](r)


def run_beside(name: str, names: list[str], r: Rehearsal) -> Outcome:
    """Run ``name`` with the parts of other selected scenarios that run beside it
    (:data:`BESIDE`), which are over when this returns."""
    beside = [(start, join) for owner, start, join in BESIDE.get(name, ())
              if owner in names and r.figures.get("applied")]  # fmt: skip
    for start, _ in beside:
        start(r)
    try:
        return run_scenario(name, r)
    finally:
        for _, join in beside:
            join(r)


def run_all(names: list[str], r: Rehearsal) -> Iterator[Outcome]:
    """Each scenario in order; background work starts once the last quiet one is done
    with the object store (it may say so before it ends: Rehearsal.release_store)."""
    last_quiet = max((i for i, n in enumerate(names) if n in QUIET), default=-1)
    for i, name in enumerate(names):
        if i == last_quiet:
            r.store_released.append(lambda: start_background(names, r))
        yield run_beside(name, names, r)
        if i == last_quiet:
            r.release_store()


def run_scenario(name: str, r: Rehearsal) -> Outcome:
    """Run one scenario; an exception in it is its failure (with the last lines of
    the traceback), never the rehearsal's."""
    start = time.monotonic()
    if name != "up" and not r.figures.get("applied"):
        return Outcome(
            name,
            False,
            "-",
            "the stack was not applied (scenario up failed to apply it, or did not run)",
        )
    try:
        outcome = SCENARIOS[name](r)
    except KeyboardInterrupt:
        raise
    except Exception as error:
        tail = "".join(traceback.format_exception(error)[-2:])
        outcome = Outcome(name, False, "-", f"{type(error).__name__}: {error}\n{tail}")
    return Outcome(outcome.name, outcome.ok, outcome.figure, outcome.detail,
                   time.monotonic() - start)  # fmt: skip

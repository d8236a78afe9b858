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
BESIDE: dict[str, tuple[str, Callable[[Rehearsal], None], Callable[[Rehearsal], None]]] = {
    "drill": ("alerts", alerts.start_page, alerts.join_page),
}
"""``scenario: (owner, start, join)``: a part of ``owner`` that runs while ``scenario``
does and is over before the next one starts. The crisis page stops every app
replica and mostly waits (Prometheus' scrapes, the rule's ``for``, Alertmanager's
group wait); the drill restores from the store in a container of its own and
needs neither the app nor the edge."""
NAMES = tuple(SCENARIOS)


def start_background(names: list[str], r: Rehearsal) -> None:
    """Start the background part of every selected scenario that has one."""
    for name in names:
        if name in BACKGROUND and r.figures.get("applied"):
            BACKGROUND[name](r)


def run_beside(name: str, names: list[str], r: Rehearsal) -> Outcome:
    """Run ``name`` with the part of another selected scenario that runs beside it
    (:data:`BESIDE`), which is over when this returns."""
    owner, start, join = BESIDE.get(name, ("", None, None))
    beside = owner in names and bool(r.figures.get("applied"))
    if beside and start:
        start(r)
    try:
        return run_scenario(name, r)
    finally:
        if beside and join:
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

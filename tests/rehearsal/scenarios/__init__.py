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

__all__ = ["NAMES", "SCENARIOS", "Outcome", "run_all", "run_scenario", "start_background"]


Scenario = Callable[[Rehearsal], Outcome]


SCENARIOS: dict[str, Scenario] = {
    "up": up.run,
    "idempotence": idempotence.run,
    "backups": backups.run,
    "phi": phi.run,
    "metadata": metadata.run,
    "drill": drill.run,
    "runbooks": runbooks.run,
    "rotations": rotations.run,
    "deploy": deploy.run,
    "alerts": alerts.run,
    "destroy": destroy.run,
}
BACKGROUND: dict[str, Callable[[Rehearsal], None]] = {"alerts": alerts.start}
"""Scenarios with a long wait, started when the stack is up and the backup and PHI
scenarios are done, so that the deploy scenario runs meanwhile."""
QUIET = ("up", "idempotence", "backups", "phi", "drill", "runbooks")
"""Scenarios during which no background work may run (they measure the quiet stack)."""
NAMES = tuple(SCENARIOS)


def start_background(names: list[str], r: Rehearsal) -> None:
    """Start the background part of every selected scenario that has one."""
    for name in names:
        if name in BACKGROUND and r.figures.get("applied"):
            BACKGROUND[name](r)


def run_all(names: list[str], r: Rehearsal) -> Iterator[Outcome]:
    """Each scenario in order; background work starts after the last quiet one."""
    last_quiet = max((i for i, n in enumerate(names) if n in QUIET), default=-1)
    for i, name in enumerate(names):
        yield run_scenario(name, r)
        if i == last_quiet:
            start_background(names, r)


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

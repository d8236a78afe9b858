"""The rehearsal's scenarios as slow tests: one staging stack, shared by the module.

``./scripts/rehearse`` runs the same scenarios and prints their figures; here
each is a test, in the command's order (tests/conftest.py keeps this module on
one xdist worker). A scenario's failure message is its evidence.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rehearsal.scenarios import run_beside, run_scenario, start_background
from tests.rehearsal.session import Rehearsal, rehearsal

pytestmark = [
    pytest.mark.slow,
    # The local stand-in servers (S3 relay, DNS, hooks) leave sockets to the garbage
    # collector when a peer drops mid-connection; Python reports them as unraisable
    # ResourceWarnings, which filterwarnings=error would turn into this test's error.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def staging() -> Iterator[Rehearsal]:
    with rehearsal("staging") as r:
        yield r


def _check(name: str, r: Rehearsal, *, beside: tuple[str, ...] = ()) -> None:
    """Run scenario ``name``; with ``beside``, the parts of those scenarios that
    scripts/rehearse runs beside it (scenarios.BESIDE), which they then report."""
    outcome = run_beside(name, list(beside), r) if beside else run_scenario(name, r)
    print(f"\nrehearsal {name}: {outcome.figure} ({outcome.seconds:.0f} s)")
    assert outcome.ok, f"{name}: {outcome.figure}\n{outcome.detail}"


def test_up(staging: Rehearsal) -> None:
    _check("up", staging)


def test_idempotence(staging: Rehearsal) -> None:
    _check("idempotence", staging)


def test_backups(staging: Rehearsal) -> None:
    # The drill's failing cases and the crisis page run beside it, as in
    # scripts/rehearse (test_drill and test_alerts check them).
    _check("backups", staging, beside=("drill", "alerts"))


def test_drill(staging: Rehearsal) -> None:
    _check("drill", staging)


def test_runbooks(staging: Rehearsal) -> None:
    # The outage begins once its PITR and minor bump are done, as in scripts/rehearse.
    staging.store_released.append(lambda: start_background(["alerts"], staging))
    _check("runbooks", staging)


def test_phi(staging: Rehearsal) -> None:
    start_background(["alerts"], staging)  # the outage runs meanwhile, as in scripts/rehearse
    _check("phi", staging)


def test_metadata(staging: Rehearsal) -> None:
    start_background(["alerts"], staging)  # once: a no-op when test_phi started it
    _check("metadata", staging)


def test_rotations(staging: Rehearsal) -> None:
    start_background(["alerts"], staging)
    _check("rotations", staging)


def test_deploy(staging: Rehearsal) -> None:
    start_background(["alerts"], staging)  # once: a no-op when test_rotations started it
    _check("deploy", staging)


def test_alerts(staging: Rehearsal) -> None:
    _check("alerts", staging)

"""The destroy scenario on prod, the stack that protects its data (slow: its own
rehearsal, `up` then `destroy`, as ``./scripts/rehearse --stack prod --scenario destroy``)."""

from __future__ import annotations

import pytest

from tests.rehearsal.scenarios import run_scenario
from tests.rehearsal.session import rehearsal

pytestmark = [
    pytest.mark.slow,
    # As in test_rehearsal.py: the stand-in servers' dropped sockets are unraisable.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_destroy_excluding_protected_leaves_a_database_that_starts_and_archives() -> None:
    with rehearsal("prod") as r:
        up = run_scenario("up", r)
        assert up.ok, f"up: {up.figure}\n{up.detail}"
        outcome = run_scenario("destroy", r)
    print(f"\nrehearsal destroy (prod): {outcome.figure} ({outcome.seconds:.0f} s)")
    assert not outcome.figure.startswith("n/a"), f"prod protects no data: {outcome.figure}"
    assert outcome.ok, f"destroy: {outcome.figure}\n{outcome.detail}"

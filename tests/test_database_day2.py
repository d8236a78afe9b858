"""Day 2 for Docker's PostgreSQL, through the engine model (tests/engine).

A database password rotation reruns the role job and replaces the app; it
never replaces (restarts) the PostgreSQL container, and the role job is
ordered before every client that uses the new password.
"""

from __future__ import annotations

import pytest

from tests.engine.scenarios import day2, snap

pytestmark = pytest.mark.slow  # renders the whole program twice per stack


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_db_password_rotation_never_restarts_postgres(stack: str) -> None:
    base = snap(stack, "docker")
    rotated = snap(stack, "docker", secrets=(("dbPassword", "Rotated0Password0Value0123456789"),))
    result, timeline = day2(base, rotated)
    assert not result.errors, result.errors
    changed = {u.split("::")[-1]: s.op for u, s in result.changed().items()}
    print(f"\n{stack}: dbPassword rotation: {sorted(changed.items())}")
    assert "luna-database-postgres" not in changed, f"PostgreSQL is replaced: {changed}"
    assert changed.get("luna-database-postgres-roles") == "update", changed
    assert any(name.startswith("luna-app-web") for name in changed), "the app keeps the old URL"
    assert min(timeline) >= 1, f"no app running at some moment {timeline}"
    # The server has the new password before any replica that uses it starts.
    order = [urn.split("::")[-1] for _, urn in result.events]
    roles = order.index("luna-database-postgres-roles")
    first_app = min(i for i, name in enumerate(order) if name.startswith("luna-app-web"))
    assert roles < first_app, f"the app starts before the roles are applied: {order}"

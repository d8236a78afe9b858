"""Shared fixtures: one render per (stack, platform), reused by the tests of a worker."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import pytest

from infra.render import Rendered, on_platform, render
from tests.support.harness import Resources

STACKS = ("dev", "staging", "prod")
# Every stack is tested on every platform listed here.
PLATFORMS: tuple[str, ...] = ("docker", "kubernetes")


@cache
def rendered(stack: str, platform: str, extra: tuple[tuple[str, str], ...] = ()) -> Rendered:
    overrides: Sequence[tuple[str, str]] = (*on_platform(platform), *extra)
    return render(stack, overrides=overrides)


@pytest.fixture(params=[(s, p) for s in STACKS for p in PLATFORMS], ids=lambda v: f"{v[0]}-{v[1]}")
def stack_render(request: pytest.FixtureRequest) -> tuple[str, str, Rendered]:
    stack, platform = request.param
    return stack, platform, rendered(stack, platform)


def resources_of(r: Rendered) -> Resources:
    return Resources(r.monitor.records)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Every rehearsal test on one worker: they share one stack (a module fixture).

    xdist's loadgroup does nothing on pytest 9.2 (it rewrites item._nodeid, which
    pytest no longer reads), so the scope is decided from the node id here: the
    rehearsal's module is one scope, every other test its own, as with ``load``.
    """
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class RehearsalTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/rehearsal/test_rehearsal.py::"):
                return "tests/rehearsal/test_rehearsal.py"
            return nodeid

    return RehearsalTogether(config, log)

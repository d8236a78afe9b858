"""Shared fixtures: one render per (stack, platform), reused by the tests of a worker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache

import pytest
from pulumi.runtime import resource as sdk_resource
from pulumi.runtime.proto import source_pb2

from infra.render import Rendered, on_platform, render
from tests.support.harness import Resources
from tests.support.tools import REPO
from tests.support.write_guard import WriteGuard

# Under mocks nothing reads a resource's source position, yet the SDK walks and
# converts the whole Python stack at every registration (pulumi/runtime/resource.py
# _get_stack_trace: a fifth of a render's time). An empty trace is what the SDK
# itself sends when it finds no user frame; nothing else about a render changes.
sdk_resource._get_stack_trace = source_pb2.StackTrace

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


_GUARD: list[WriteGuard] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    # Before any fixture runs, so session fixtures' writes are seen too.
    _GUARD.append(WriteGuard(REPO))


@pytest.fixture(autouse=True)
def _writes_stay_in_temporary_folders() -> Iterator[None]:
    """Fail a test that leaves a file outside its temporary folders (support/write_guard.py)."""
    yield
    if _GUARD and (stray := _GUARD[0].new_entries()):
        pytest.fail(
            "the test created files outside its temporary folders (use tmp_path): "
            + ", ".join(stray),
            pytrace=False,
        )


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The rehearsals first: the staging one is the longest scope and mostly waits (an
    outage, health checks), so the other workers fill that time; prod's, next, starts
    on another worker beside it."""
    order = ("tests/rehearsal/test_rehearsal.py::", "tests/rehearsal/test_rehearsal_prod.py::")

    def rank(item: pytest.Item) -> int:
        return next((n for n, p in enumerate(order) if item.nodeid.startswith(p)), len(order))

    items.sort(key=rank)  # stable: order kept otherwise

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

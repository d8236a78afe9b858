"""Session fixtures: one render per stack (per xdist worker), one test certificate."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import PLATFORMS
from tests.real.support import RenderedStack, render_stack
from tests.support.tls import TlsPair, make_tls_pair

# Stacks that deploy the proxy, cache, PostgreSQL, monitoring and logging.
FULL_STACKS = ("staging", "prod")
# Every full stack on every platform the suite covers (tests/conftest.py).
FULL_STACK_PARAMS = [(s, p) for s in FULL_STACKS for p in PLATFORMS]


def stack_id(value: tuple[str, str]) -> str:
    return f"{value[0]}-{value[1]}"


@pytest.fixture(scope="session")
def stacks() -> Callable[..., RenderedStack]:
    cache: dict[tuple[str, str], RenderedStack] = {}

    def get(stack: str, platform: str = "docker") -> RenderedStack:
        if (stack, platform) not in cache:
            cache[stack, platform] = render_stack(stack, platform=platform)
        return cache[stack, platform]

    return get


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> TlsPair:
    """A throwaway pair for the stacks' names."""
    return make_tls_pair(
        tmp_path_factory.mktemp("tls"),
        common_name="luna-app.com",
        alt_names="DNS:luna-app.com,DNS:staging.luna-app.com",
    )

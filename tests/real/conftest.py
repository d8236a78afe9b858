"""Session fixtures: one render per stack (per xdist worker), one test certificate."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PLATFORMS
from tests.real.support import RenderedStack, render_stack
from tests.support.tools import need

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


@dataclass(frozen=True)
class TlsPair:
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> TlsPair:
    """A throwaway ECDSA P-256 pair (like the proxy's self-signed one) for the stacks' names."""
    openssl = need("openssl")
    d = tmp_path_factory.mktemp("tls")
    pair = TlsPair(cert=d / "tls.crt", key=d / "tls.key")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(pair.key),
            "-out",
            str(pair.cert),
            "-days",
            "1",
            "-subj",
            "/CN=luna-app.com",
            "-addext",
            "subjectAltName=DNS:luna-app.com,DNS:staging.luna-app.com",
        ],
        check=True,
        capture_output=True,
    )
    return pair

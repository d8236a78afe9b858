"""One kubernetes render per stack and session, and its manifests on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.render import Rendered, write
from tests.conftest import rendered

KUBE_STACKS = ("staging", "prod")
KUBERNETES_VERSION = "1.31.0"
"""The pinned API version manifests are validated against."""


def render_k8s(stack: str) -> Rendered:
    return rendered(stack, "kubernetes")


def manifests(stack: str) -> list[dict[str, Any]]:
    return render_k8s(stack).manifests()


def ident(obj: dict[str, Any]) -> str:
    """How assertion messages name an object."""
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.fixture(scope="session")
def manifest_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = {}
    for stack in KUBE_STACKS:
        out = tmp_path_factory.mktemp(f"render-{stack}")
        write(render_k8s(stack), out)
        dirs[stack] = out / "manifests"
    return dirs

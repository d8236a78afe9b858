"""The repository's GitHub workflows, parsed for the pipeline tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import REPO

__all__ = ["WORKFLOWS", "load_workflow"]

WORKFLOWS = REPO / ".github" / "workflows"


def load_workflow(name: str | Path) -> dict[str, Any]:
    """``name`` (a file of .github/workflows, or a path) as a mapping. libyaml parses
    it: the pipeline tests read the workflows hundreds of times, and the pure-Python
    parser was a third of their time."""
    path = name if isinstance(name, Path) else WORKFLOWS / name
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data

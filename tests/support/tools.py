"""Locate the external programs that tests run.

Outside CI a missing tool skips the test with the install hint; in CI
(``CI=true``) it fails, because ``scripts/test`` must have installed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["REPO", "copy_checkout", "need"]

REPO = Path(__file__).resolve().parents[2]

_EXTRA_DIRS = [
    REPO / ".venv" / "bin",
    REPO / ".tools" / "checkov" / "bin",
    REPO / ".tools" / "node" / "node_modules" / ".bin",
    Path("/usr/sbin"),
    *sorted(Path("/usr/lib/postgresql").glob("*/bin")),
]


def need(tool: str) -> str:
    """Return the path of ``tool``; skip (locally) or fail (CI) when absent."""
    path = shutil.which(tool) or next(
        (str(d / tool) for d in _EXTRA_DIRS if (d / tool).is_file()), None
    )
    if path:
        return path
    message = f"{tool} is not installed; run ./scripts/test to install it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def copy_checkout(dest: Path) -> Path:
    """Copy every file git would commit from this checkout (tracked and untracked,
    ignored ones left out) into ``dest``, so a test can run commands in it."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest

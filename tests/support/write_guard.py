"""A test may write only into its temporary folders: this notices files it left elsewhere.

Why: a render into ``--out /nonexistent`` once created that folder as root, and every
later run of an unrelated test failed for the wrong reason (issue 26). The guard
watches the places a stray write lands and that no test owns: every folder of the
repository (tool caches and installed environments aside) and ``/``. Another
process may write there too (a second xdist worker, a person); the guard then
names the file, and the test that reported it is the first suspect, not proof.

Cheap by design: after each test it compares the ``mtime`` of ~30 folders, and lists
only a folder whose ``mtime`` moved (creating or removing an entry moves its folder's).
Files a test creates and removes again are not seen; nor are writes into existing
files (a test that edits tracked files shows in ``git status``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

__all__ = ["WriteGuard"]

# Written by the tools themselves, never by a test's code (mutmut's bookkeeping lands in
# the copy it tests in, ./mutants, between two tests).
IGNORED: Final = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
     "mutmut-stats.json", "mutmut-cicd-stats.json"}
)  # fmt: skip
# Not walked: environments and dependencies the test command installs.
NOT_WALKED: Final = frozenset({".git", ".venv", ".tools", "node_modules", *IGNORED})


def _entries(folder: str) -> frozenset[str]:
    try:
        return frozenset(n for n in os.listdir(folder) if n not in IGNORED)
    except OSError:
        return frozenset()


def _mtime(folder: str) -> int:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return -1


class WriteGuard:
    """Snapshot the watched folders once; :meth:`new_entries` says what appeared since."""

    def __init__(self, repo: Path, extra: tuple[str, ...] = ("/",)) -> None:
        folders = [*extra]
        for root, dirs, _files in os.walk(repo):
            dirs[:] = [d for d in dirs if d not in NOT_WALKED]
            folders.append(root)
        self._state = {f: (_mtime(f), _entries(f)) for f in folders}

    def new_entries(self) -> list[str]:
        """Paths created in a watched folder since the last call (the snapshot then moves on)."""
        found: list[str] = []
        for folder, (mtime, entries) in self._state.items():
            now = _mtime(folder)
            if now == mtime:
                continue
            current = _entries(folder)
            found += sorted(str(Path(folder) / name) for name in current - entries)
            self._state[folder] = (now, current)
        return found

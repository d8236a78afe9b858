"""The pipeline scripts' Markdown reports: a verdict line and a table of checks.

A job summary shows them as they are, so a cell never breaks its row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["table", "verdict"]


def verdict(oks: Sequence[bool]) -> str:
    failed = sum(not ok for ok in oks)
    return "all checks passed" if not failed else f"{failed} of {len(oks)} checks failed"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table's lines; a ``|`` in a cell is escaped and newlines become spaces."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = (cell.replace("|", "\\|").replace("\n", " ") for cell in row)
        lines.append("| " + " | ".join(cells) + " |")
    return lines

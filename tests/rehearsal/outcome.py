"""What a scenario reports: pass or fail, one measured figure, and the evidence."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Outcome"]


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    figure: str
    detail: str = ""
    seconds: float = 0.0

"""The audit's pages and budgets, per stack: audit/budgets.toml, read and validated.

``[defaults]`` applies to every stack; ``[stacks.<stack>]`` names the stacks that
may be audited and overrides any key of the defaults for one of them. Every
problem is one :class:`UsageError` line naming the key, the value and what is
allowed. Used by scripts/audit_site.py; stdlib only.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lib.cli import UsageError

__all__ = ["METRICS", "Budgets", "Metric", "Page", "UsageError", "load_budgets"]


@dataclass(frozen=True)
class Metric:
    """A performance budget key and the Lighthouse audit that measures it."""

    key: str
    audit: str
    unit: str
    scale: float  # numericValue / scale = the budget's unit

    def show(self, value: float) -> str:
        if self.unit == "":
            return f"{value:.3f}"
        return f"{value:.0f} {self.unit}"


METRICS = (
    Metric("lcp_ms", "largest-contentful-paint", "ms", 1.0),
    Metric("cls", "cumulative-layout-shift", "", 1.0),
    Metric("tbt_ms", "total-blocking-time", "ms", 1.0),
    Metric("transfer_kib", "total-byte-weight", "KiB", 1024.0),
)


@dataclass(frozen=True)
class Page:
    """One audited page and its budget (audit/budgets.toml, [defaults.pages.<name>])."""

    name: str
    path: str
    accessibility_min_score: float
    lcp_ms: float
    cls: float
    tbt_ms: float
    transfer_kib: float

    def budget(self, metric: Metric) -> float:
        value = getattr(self, metric.key)
        assert isinstance(value, float)
        return value


@dataclass(frozen=True)
class Budgets:
    stack: str
    critical_rules: tuple[str, ...]
    pages: tuple[Page, ...]


_PAGE_KEYS = tuple(f.name for f in fields(Page) if f.name != "name")
# (low, high) for every numeric page key; high is generous, it catches typos.
_LIMITS: dict[str, tuple[float, float]] = {
    "accessibility_min_score": (0.0, 1.0),
    "lcp_ms": (1.0, 60_000.0),
    "cls": (0.0, 5.0),
    "tbt_ms": (1.0, 60_000.0),
    "transfer_kib": (1.0, 100_000.0),
}
_NAME = re.compile(r"[a-z][a-z0-9-]*")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _page(where: str, name: str, raw: object) -> Page:
    if not _NAME.fullmatch(name):
        raise UsageError(f"{where}: page name {name!r} must be lower-case letters, digits, '-'")
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}.{name} must be a table")
    unknown = sorted(set(raw) - set(_PAGE_KEYS))
    missing = [k for k in _PAGE_KEYS if k not in raw]
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
        raise UsageError(f"{where}.{name}: {problem}; a page has exactly {list(_PAGE_KEYS)}")
    path = raw["path"]
    if not isinstance(path, str) or not re.fullmatch(r"/[A-Za-z0-9._~/?=&%-]*", path):
        raise UsageError(f"{where}.{name}.path = {path!r}: an absolute URL path such as /crisis")
    numbers: dict[str, float] = {}
    for key, (low, high) in _LIMITS.items():
        value = raw[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            raise UsageError(f"{where}.{name}.{key} = {value!r}: a number from {low:g} to {high:g}")
        numbers[key] = float(value)
    return Page(name=name, path=path, **numbers)


def load_budgets(path: Path, stack: str) -> Budgets:
    """The budgets of ``stack``: [defaults] with [stacks.<stack>] merged over it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read budgets {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"defaults", "stacks"})
    if unknown:
        raise UsageError(f"{path}: unknown top-level keys {unknown}; expected defaults, stacks")
    stacks, defaults = data.get("stacks", {}), data.get("defaults", {})
    if not isinstance(stacks, Mapping) or not isinstance(defaults, Mapping):
        raise UsageError(f"{path}: [defaults] and [stacks] must be tables")
    if stack not in stacks:
        raise UsageError(f"--stack {stack!r} is not in {path}; audited stacks: {sorted(stacks)}")
    if not isinstance(stacks[stack], Mapping):
        raise UsageError(f"{path}: [stacks.{stack}] must be a table")
    merged = _merge(defaults, stacks[stack])
    unknown = sorted(set(merged) - {"critical_rules", "pages"})
    if unknown:
        raise UsageError(
            f"{path} [{stack}]: unknown keys {unknown}; expected critical_rules, pages"
        )
    rules = merged.get("critical_rules")
    if (
        not isinstance(rules, list)
        or not rules
        or not all(isinstance(r, str) and _NAME.fullmatch(r) for r in rules)
    ):
        raise UsageError(f"{path} [{stack}]: critical_rules must be a list of audit ids")
    pages = merged.get("pages")
    if not isinstance(pages, Mapping) or not pages:
        raise UsageError(f"{path} [{stack}]: no pages to audit")
    where = f"{path.name} [{stack}] pages"
    return Budgets(
        stack=stack,
        critical_rules=tuple(rules),
        pages=tuple(_page(where, name, raw) for name, raw in pages.items()),
    )

"""A model of what GitHub Actions does with a workflow's ``if:`` and ``concurrency:``.

Enough of GitHub's documented behaviour to replay a run's job graph offline:

- Expressions (docs.github.com, "Evaluate expressions in workflows and actions"):
  literals, ``==``/``!=`` (strings compared case-insensitively), ``!``, ``&&``,
  ``||`` (which return an operand, not a boolean), parentheses, property access
  (``needs.x.result``), and the functions ``always()``, ``success()``,
  ``failure()``, ``cancelled()``, ``contains()`` and ``format()``. A job ``if:``
  without a status function is evaluated as ``success() && (...)``: it runs only
  when every job it needs succeeded ("Using conditions to control job execution").
- Jobs (docs.github.com, "Using jobs in a workflow"): a job whose needs did not
  all finish is never started; a job whose condition is false is ``skipped``,
  and so counts as neither success nor failure for those that need it.
- Concurrency (docs.github.com, "Control the concurrency of workflows and
  jobs"): "at most one running and one pending job or workflow" per group; "any
  existing pending job or workflow in the same concurrency group will be
  canceled" when a new one is queued; with ``cancel-in-progress: true`` the
  running one is cancelled as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConcurrencyGroups", "Run", "evaluate", "simulate"]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||[!(),])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.\-\[\]'*]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read expression at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _truthy(v: Any) -> bool:
    return v not in (None, False, "", 0)


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if isinstance(a, bool) or isinstance(b, bool):
        return (
            _truthy(a) == _truthy(b)
            if isinstance(a, bool) and isinstance(b, bool)
            else (str(a).lower() == str(b).lower())
        )
    return bool(a == b)


class _Parser:
    def __init__(self, text: str, lookup: Callable[[str], Any], funcs: Mapping[str, Any]):
        self.toks = _tokens(text)
        self.i = 0
        self.lookup = lookup
        self.funcs = funcs

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.or_()
        if self.i != len(self.toks):
            raise ValueError(f"trailing tokens: {self.toks[self.i :]}")
        return value

    def or_(self) -> Any:
        left = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            left = left if _truthy(left) else right
        return left

    def and_(self) -> Any:
        left = self.cmp()
        while self.peek() == "&&":
            self.take()
            right = self.cmp()
            left = right if _truthy(left) else left
        return left

    def cmp(self) -> Any:
        left = self.unary()
        while self.peek() in ("==", "!="):
            op = self.take()[1]
            right = self.unary()
            left = _eq(left, right) if op == "==" else not _eq(left, right)
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not _truthy(self.unary())
        return self.atom()

    def atom(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.or_()
            assert self.take()[1] == ")"
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self.peek() == "(":
            self.take()
            args: list[Any] = []
            while self.peek() != ")":
                args.append(self.or_())
                if self.peek() == ",":
                    self.take()
            self.take()
            return self.funcs[text](*args)
        return self.lookup(text)


def _format(template: str, *args: Any) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1))]), template)


def evaluate(
    text: str, context: Mapping[str, Any], status: Mapping[str, bool] | None = None
) -> Any:
    """Evaluate ``text`` (with or without ``${{ }}``) against nested ``context``."""
    text = str(text).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]

    def lookup(path: str) -> Any:
        value: Any = context
        for part in re.findall(r"[^.\[\]']+", path):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    s = status or {}
    funcs = {
        "always": lambda: True,
        "success": lambda: s.get("success", True),
        "failure": lambda: s.get("failure", False),
        "cancelled": lambda: s.get("cancelled", False),
        "contains": lambda a, b: (
            (str(b).lower() in str(a).lower())
            if isinstance(a, str)
            else any(_eq(x, b) for x in (a or []))
        ),
        "format": _format,
    }
    return _Parser(text, lookup, funcs).parse()


def interpolate(text: str, context: Mapping[str, Any]) -> str:
    """A string with ``${{ expr }}`` parts replaced, as GitHub does in ``with:`` and ``env:``."""
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _str(evaluate(m.group(1), context)), str(text))


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


_STATUS_FUNCS = re.compile(r"\b(always|success|failure|cancelled)\(\)")


@dataclass
class Run:
    """The outcome of one replayed run: each job's result and outputs."""

    results: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    def ran(self, job: str) -> bool:
        return self.results.get(job) not in (None, "skipped")


def simulate(
    workflow: Mapping[str, Any],
    github: Mapping[str, Any],
    outcome: Callable[[str], tuple[str, dict[str, str]]],
) -> Run:
    """Replay the job graph: ``outcome(job)`` gives a started job's result and outputs."""
    jobs: Mapping[str, Any] = workflow["jobs"]
    run = Run()
    pending = list(jobs)
    while pending:
        progressed = False
        for name in list(pending):
            deps = jobs[name].get("needs", [])
            deps = [deps] if isinstance(deps, str) else list(deps)
            if any(d not in run.results for d in deps):
                continue
            pending.remove(name)
            progressed = True
            needs = {d: {"result": run.results[d], "outputs": run.outputs.get(d, {})} for d in deps}
            context = {"github": github, "needs": needs, "inputs": github.get("inputs", {})}
            failed = any(n["result"] in ("failure", "cancelled") for n in needs.values())
            all_ok = all(n["result"] == "success" for n in needs.values())
            condition = str(jobs[name].get("if", "")).strip()
            ok = (
                _truthy(evaluate(condition, context, {"success": all_ok, "failure": failed}))
                if condition
                else True
            )
            if not _STATUS_FUNCS.search(condition):
                ok = ok and all_ok
            if ok:
                result, outputs = outcome(name)
                run.results[name], run.outputs[name] = result, outputs
            else:
                run.results[name] = "skipped"
        if not progressed:
            raise AssertionError(f"needs cycle or unknown job among {pending}")
    return run


@dataclass
class ConcurrencyGroups:
    """GitHub's per-group queue: one running, one pending, the pending one replaced."""

    running: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)

    def arrive(self, group: str, who: str, *, cancel_in_progress: bool = False) -> str:
        """Queue ``who`` in ``group``; return its state: running or pending."""
        if group in self.running and cancel_in_progress:
            self.cancelled.append(self.running.pop(group))
        if group not in self.running:
            self.running[group] = who
            return "running"
        if group in self.pending:
            self.cancelled.append(self.pending.pop(group))
        self.pending[group] = who
        return "pending"

    def finish(self, group: str) -> None:
        self.running.pop(group, None)
        if group in self.pending:
            self.running[group] = self.pending.pop(group)

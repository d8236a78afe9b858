"""Every bug in tests/mutants/catalogue.py is killed by the tests it names.

The slow test copies the checkout (what git would commit) into scratch folders,
plants one entry at a time in a copy and runs only that entry's tests there with
this interpreter (the project's .venv). An entry survives when all of its tests
pass with the bug in place: the suite has a hole, and the test fails naming it.
Before any bug is planted, all named tests run once on an unchanged copy: a test
that already fails would "kill" every bug it is named for.

The fast test checks that every entry still applies: its ``old`` text occurs
exactly once in its file and its tests exist. When code moves, it names the
entry and the file, so whoever moved the code updates the entry.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mutants.catalogue import CATALOGUE, Mutant
from tests.support.tools import REPO, copy_checkout

CATALOGUE_FILE = "tests/mutants/catalogue.py"
# Two copies run at once: the machine's two cores (the budget is 8 minutes on two).
WORKERS = int(os.environ.get("LUNA_CATALOGUE_WORKERS", "2"))
TIMEOUT_S = 600
# The baseline runs every named test in one process: several real-program fixtures in a row.
BASELINE_TIMEOUT_S = 1800
# While writing an entry: LUNA_CATALOGUE_ONLY=id1,id2 plants only those (never in CI).
ONLY = [i for i in os.environ.get("LUNA_CATALOGUE_ONLY", "").split(",") if i]


def stale(m: Mutant) -> list[str]:
    """Why entry ``m`` no longer applies to this checkout (empty: it applies)."""
    where = f"catalogue entry {m.id!r} ({CATALOGUE_FILE})"
    path = REPO / m.file
    if not path.is_file():
        return [f"{where}: {m.file} does not exist: the code moved, update the entry"]
    problems = []
    found = path.read_text().count(m.old)
    if found != 1:
        problems.append(
            f"{where}: {m.file} contains its old text {found} times, not once: "
            f"the code moved, update the entry's old/new text: {m.old!r}"
        )
    if m.old == m.new:
        problems.append(f"{where}: old and new text are the same")
    if not m.tests:
        problems.append(f"{where}: names no test")
    for node in m.tests:
        file, _, name = node.partition("::")
        test_file = REPO / file
        function = name.split("[", 1)[0]
        if not test_file.is_file() or f"def {function}(" not in test_file.read_text():
            problems.append(f"{where}: its test {node} does not exist")
    return problems


def test_every_entry_applies_to_this_checkout() -> None:
    ids = [m.id for m in CATALOGUE]
    assert len(ids) == len(set(ids)), "catalogue ids repeat"
    assert len(CATALOGUE) >= 60, f"{len(CATALOGUE)} entries; the catalogue keeps at least 60"
    problems = [p for m in CATALOGUE for p in stale(m)]
    assert not problems, "\n".join(problems)


@dataclass(frozen=True)
class Outcome:
    id: str
    code: int | None
    """pytest's exit code; ``None`` on a timeout."""
    seconds: float
    output: str

    @property
    def verdict(self) -> str:
        return {None: "timeout", 0: "SURVIVED", 1: "killed"}.get(self.code, "error")


def _scratch(dest: Path) -> Path:
    copy = copy_checkout(dest)
    # The tools the tests run (need() looks beside the checkout), shared read-only.
    for tools in (".venv", ".tools"):
        if (REPO / tools).exists():
            (copy / tools).symlink_to(REPO / tools)
    return copy


def _baseline(copy: Path, tests: tuple[str, ...]) -> Outcome:
    """Every named test on the unchanged copy; a failure is retried once, alone.

    Real-program tests carry timeouts that a machine shared by many can overrun; a test
    that passes on its retry is not broken, and one that fails twice is.
    """
    first = _pytest(copy, tests, "baseline", stop_early=False, timeout=BASELINE_TIMEOUT_S)
    if first.code in (0, None):
        return first
    failed = tuple(re.findall(r"^(?:FAILED|ERROR) (\S+)", first.output, re.M))
    if first.code != 1 or not failed:
        return first
    retry = _pytest(copy, failed, "baseline (retry)")
    return Outcome("baseline", retry.code, first.seconds + retry.seconds,
                   f"{first.output}\n--- retried {failed}:\n{retry.output}")  # fmt: skip


def _pytest(
    copy: Path,
    tests: tuple[str, ...],
    name: str,
    *,
    stop_early: bool = True,
    timeout: int = TIMEOUT_S,
) -> Outcome:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(copy)}
    # Not this run's xdist worker identity: the inner run is a session of its own.
    for key in [k for k in env if k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))]:
        del env[key]
    argv = [sys.executable, "-m", "pytest", *(["-x"] if stop_early else []), "-q", "-rfE",
            "-p", "no:cacheprovider", "--no-header", "-o", "addopts=--strict-markers",
            *tests]  # fmt: skip
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        out = error.stdout.decode(errors="replace") if isinstance(error.stdout, bytes) else ""
        return Outcome(name, None, time.monotonic() - started, out)
    return Outcome(name, proc.returncode, time.monotonic() - started, proc.stdout + proc.stderr)


def _planted(copies: queue.Queue[Path], m: Mutant) -> Outcome:
    copy = copies.get()
    target = copy / m.file
    original = target.read_text()
    try:
        target.write_text(original.replace(m.old, m.new, 1))
        return _pytest(copy, m.tests, m.id)
    finally:
        target.write_text(original)
        copies.put(copy)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.mark.slow
def test_every_catalogued_bug_is_killed_by_its_tests(tmp_path: Path) -> None:
    problems = [p for m in CATALOGUE for p in stale(m)]
    assert not problems, "\n".join(problems)
    entries = [m for m in CATALOGUE if not ONLY or m.id in ONLY]
    assert entries, f"LUNA_CATALOGUE_ONLY names no entry: {ONLY}"
    if ONLY and os.environ.get("CI", "").lower() == "true":
        pytest.fail("LUNA_CATALOGUE_ONLY is set in CI: the whole catalogue must run")
    copies: queue.Queue[Path] = queue.Queue()
    for i in range(WORKERS):
        copies.put(_scratch(tmp_path / f"copy-{i}"))
    every_test = tuple(dict.fromkeys(t for m in entries for t in m.tests))
    started = time.monotonic()
    baseline_copy = _scratch(tmp_path / "baseline")
    # Real-program entries first: the long jobs start early and the short ones fill in.
    order = sorted(entries, key=lambda m: not any("/real/" in t for t in m.tests))
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        baseline = pool.submit(_baseline, baseline_copy, every_test)
        outcomes = list(pool.map(lambda m: _planted(copies, m), order))
        clean = baseline.result()
    wall = time.monotonic() - started
    killed = [o for o in outcomes if o.verdict == "killed"]
    for o in sorted(outcomes, key=lambda o: -o.seconds):
        print(f"{o.verdict:9} {o.seconds:6.1f} s  {o.id}")
    print(
        f"catalogue: {len(killed)}/{len(outcomes)} killed "
        f"({100 * len(killed) / len(outcomes):.0f} %) in {wall:.0f} s wall with {WORKERS} copies;"
        f" baseline {clean.seconds:.0f} s"
    )
    assert clean.code == 0, (
        f"the named tests fail without any bug planted (exit {clean.code}): fix them first\n"
        + _tail(clean.output, 40)
    )
    bad = [o for o in outcomes if o.verdict != "killed"]
    assert not bad, "\n\n".join(
        f"catalogue entry {o.id!r} {o.verdict} (exit {o.code}) after {o.seconds:.0f} s: "
        f"its tests did not fail with the bug planted\n{_tail(o.output)}"
        for o in bad
    )
    shutil.rmtree(tmp_path, ignore_errors=True)

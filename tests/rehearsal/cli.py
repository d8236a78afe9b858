"""``scripts/rehearse``: rehearse a stack on a private, real Docker daemon; print a report.

    scripts/rehearse [--stack staging|prod] [--scenario up,idempotence,...] [--keep DIR]

Prints a Markdown table (scenario, figure, pass/fail) and the evidence of each
failure. Exit status: 0 when every scenario passed, 1 when one failed (or the
run was interrupted), 2 on bad arguments or a daemon that will not start, with
one line and no traceback. Whatever happens, nothing it started keeps running.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from lib.cli import tool_parser
from lib.report import table, verdict

from infra.config_error import ConfigError
from tests.rehearsal.scenarios import NAMES, Outcome, run_all
from tests.rehearsal.session import DaemonError, rehearsal
from tests.rehearsal.stack import STACKS

__all__ = ["main", "report"]

PROG = "rehearse"
DETAILED = ("up", "drill", "runbooks", "metadata", "rotations", "alerts")
"""Scenarios whose details are shown even when they pass (what was skipped; the
per-container table; each case's, runbook's and phase's own figures)."""


def _scenarios(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or repr(text)}; allowed: {', '.join(NAMES)}"
        )
    # `up` applies the stack every other scenario needs: it always runs first.
    return ["up", *[n for n in NAMES if n in names and n != "up"]]


def report(
    stack: str, outcomes: Sequence[Outcome], seconds: float, ready: float | None = None
) -> str:
    rows = [(o.name, o.figure, f"{o.seconds:.0f}", "pass" if o.ok else "FAIL") for o in outcomes]
    lines = [f"## Rehearsal of {stack}: {verdict([o.ok for o in outcomes])} "
             f"in {seconds / 60:.1f} min", ""]  # fmt: skip
    if ready is not None:
        # Where the rest of the wall time went: the daemon, the world and the images.
        lines += [f"Daemon, object store and images ready in {ready:.0f} s.", ""]
    lines += table(("scenario", "figure", "s", "result"), rows)
    for o in outcomes:
        if not o.ok or o.name in DETAILED:
            lines += ["", f"### {o.name} ({o.seconds:.0f} s)", "```", o.detail.strip(), "```"]
    return "\n".join(lines) + "\n"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser(PROG, __doc__)
    parser.add_argument("--stack", default="staging", choices=STACKS)
    parser.add_argument("--scenario", type=_scenarios, default=list(NAMES),
                        help=f"comma-separated, of: {', '.join(NAMES)}")  # fmt: skip
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="copy the containers' and daemon's logs here")  # fmt: skip
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    start = time.monotonic()
    outcomes: list[Outcome] = []
    ready: float | None = None
    try:
        with rehearsal(args.stack, keep=args.keep) as r:
            ready = time.monotonic() - start
            print(f"ready in {ready:.0f} s", file=sys.stderr, flush=True)
            for outcome in run_all(args.scenario, r):
                outcomes.append(outcome)
                print(f"{outcome.name}: {'pass' if outcome.ok else 'FAIL'} in "
                      f"{outcome.seconds:.0f} s ({outcome.figure})", file=sys.stderr,
                      flush=True)  # fmt: skip
    except DaemonError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        print(f"{PROG}: error: {type(error).__name__}: {str(error).strip()[:300]}", file=sys.stderr)
        print(report(args.stack, outcomes, time.monotonic() - start, ready))
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; everything it started was stopped", file=sys.stderr)
        print(report(args.stack, outcomes, time.monotonic() - start, ready))
        return 1
    print(report(args.stack, outcomes, time.monotonic() - start, ready))
    return 0 if outcomes and all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

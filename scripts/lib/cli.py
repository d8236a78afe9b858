"""Command-line plumbing of the pipeline scripts: bad usage is one line and exit 2.

A CI log then shows the cause on one line, without the usage text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

__all__ = ["OneLineParser", "UsageError", "number", "positive_int", "tool_parser"]


class UsageError(Exception):
    """Bad arguments (or an input file they name): exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are ``<tool>: error: <message>``, exit 2.

    Sub-command parsers (``add_subparsers``) are of this class too; they report
    under the tool's name, not ``<tool> <command>``.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog.split()[0]}: error: {message}\n")


def tool_parser(prog: str, doc: str | None) -> OneLineParser:
    """The tool's parser, described by the first paragraph of its docstring."""
    return OneLineParser(prog=prog, description=doc.split("\n\n")[0] if doc else None)


def number(allowed: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse ``type=``: a float for which ``ok`` holds, else "must be <allowed>"."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}: {text!r}")
        return value

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value

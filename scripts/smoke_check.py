#!/usr/bin/env python3
"""Post-deploy checks of a deployed Luna stack, run by the pipeline (docs/pipeline.md).

Standard library only, so that any job with a Python 3.11 can run it without
installing anything::

    smoke_check.py check --url https://staging.luna.example --outputs-json outputs.json
    smoke_check.py check --url https://luna.example --only crisis --crisis-budget-ms 500
    smoke_check.py perf --url https://luna.example --requests 50 --json perf.json
    smoke_check.py image ghcr.io/luna-app/luna-web:1.4.2

``check`` runs, against the base URL: the health path answers 200; TLS 1.0 and
1.1 are refused and TLS 1.2+ is accepted; HSTS with max-age of a year or more;
the security headers; the crisis endpoint answers 200 within its latency
budget; optionally the HTTP to HTTPS redirect and a ``pulumi stack output
--json`` file free of plaintext secrets. ``perf`` measures latency percentiles.
``image`` accepts only a pinned image reference.

Every mode prints a Markdown report (and writes it to ``--report FILE``).
Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from lib.cli import UsageError, number, positive_int, tool_parser
from lib.http_checks import (
    MAX_BODY,
    USER_AGENT,
    Options,
    Result,
    Target,
    check_headers,
    check_hsts,
    check_tls,
    failure,
    fetch,
)
from lib.report import table, verdict

__all__ = ["CHECKS", "Result", "main", "validate_image"]

CHECKS = ("health", "tls", "hsts", "headers", "crisis", "redirect", "outputs")
DEFAULT_CHECKS = ("health", "tls", "hsts", "headers", "crisis")
# The Docker reference grammar (distribution/reference), without the parts Luna never uses.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_IMAGE_RE = re.compile(
    rf"(?P<name>(?:{_HOST}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)

_SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|"
    r"database[_-]?url|connection[_-]?string|dsn",
    re.IGNORECASE,
)
_PLAINTEXT_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a URL with a password", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("an API key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
)
# `pulumi stack output --json` without --show-secrets prints secret values as this.
SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 - a marker, not a password


# --------------------------------------------------------------------- checks
def check_health(opts: Options, path: str, wait_s: float) -> Result:
    """The health path answers 200, polled for up to ``wait_s`` while a rollout settles."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            response = fetch(opts, path)
            last = f"HTTP {response.status}"
            if response.status == 200:
                return Result("health", True, f"GET {path}: 200 in {response.elapsed_ms:.0f} ms")
        except (OSError, http.client.HTTPException) as exc:
            last = failure(exc)
        if time.monotonic() >= deadline:
            waited = f" (polled for {wait_s:.0f} s)" if wait_s else ""
            return Result("health", False, f"GET {path}: {last}, expected 200{waited}")
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def check_crisis(
    opts: Options, path: str, *, budget_ms: float, samples: int, stat: str, expect: str | None
) -> Result:
    """The crisis endpoint answers 200 every time, and fast enough for someone in crisis."""
    latencies: list[float] = []
    for i in range(samples):
        try:
            response = fetch(opts, path)
        except (OSError, http.client.HTTPException) as exc:
            return Result("crisis", False, f"GET {path} (sample {i + 1}): {failure(exc)}")
        if response.status != 200:
            return Result(
                "crisis",
                False,
                f"GET {path} (sample {i + 1}): HTTP {response.status}, expected 200",
            )
        if expect is not None and expect not in response.body.decode("utf-8", "replace"):
            return Result("crisis", False, f"GET {path}: body does not contain {expect!r}")
        latencies.append(response.elapsed_ms)
    observed = max(latencies) if stat == "max" else percentile(latencies, 95)
    summary = f"{stat} {observed:.0f} ms over {samples} samples, budget {budget_ms:.0f} ms"
    if observed > budget_ms:
        return Result("crisis", False, f"GET {path}: too slow: {summary}")
    return Result("crisis", True, f"GET {path}: 200, {summary}")


def check_redirect(opts: Options, http_port: int) -> Result:
    """Plain HTTP answers with a permanent redirect to HTTPS."""
    conn = http.client.HTTPConnection(opts.target.host, http_port, timeout=opts.timeout)
    where = f"http://{opts.target.host}:{http_port}/"
    try:
        conn.request("GET", opts.target.path("/"), headers={"User-Agent": USER_AGENT})
        response = conn.getresponse()
        response.read(MAX_BODY)
    except (OSError, http.client.HTTPException) as exc:
        return Result("redirect", False, f"GET {where}: {failure(exc)}")
    finally:
        conn.close()
    location = response.headers.get("Location", "")
    if response.status not in (301, 308):
        return Result(
            "redirect", False, f"GET {where}: HTTP {response.status}, expected 301 or 308 to https"
        )
    if not location.startswith("https://"):
        return Result("redirect", False, f"GET {where}: redirects to {location!r}, not https")
    return Result("redirect", True, f"GET {where}: {response.status} to {location}")


def _walk(value: object, path: str) -> Iterator[tuple[str, object]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _walk(child, f"{path}[{index}]")


def secret_leaks(outputs: object) -> list[str]:
    """Where the stack outputs hold a secret in plaintext. Never includes the value."""
    leaks: list[str] = []
    for path, value in _walk(outputs, ""):
        leaf = re.split(r"[.\[]", path)[-1]
        if path and _SENSITIVE_KEY.search(leaf) and value not in (None, SECRET_PLACEHOLDER):
            if isinstance(value, dict | list):
                continue  # its leaves are checked on their own
            leaks.append(f"{path} is not secret (expected {SECRET_PLACEHOLDER!r})")
        elif isinstance(value, str):
            leaks.extend(
                f"{path or '<root>'} contains {what}"
                for what, pattern in _PLAINTEXT_SECRET_PATTERNS
                if pattern.search(value)
            )
    return leaks


def check_outputs(outputs_json: Path) -> Result:
    try:
        outputs = json.loads(outputs_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Result("outputs", False, f"cannot read {outputs_json}: {failure(exc)}")
    leaks = secret_leaks(outputs)
    if leaks:
        return Result("outputs", False, "plaintext secret in stack outputs: " + "; ".join(leaks))
    count = len(outputs) if isinstance(outputs, dict) else 0
    return Result("outputs", True, f"{count} outputs, none holds a plaintext secret")


def validate_image(reference: str) -> str | None:
    """Why ``reference`` is not a pinned image reference, or None when it is."""
    match = _IMAGE_RE.fullmatch(reference)
    if match is None:
        return "not an image reference (registry/name:tag or registry/name@sha256:digest)"
    tag, digest = match.group("tag"), match.group("digest")
    if tag is None and digest is None:
        return "has neither a tag nor a digest, so it is not pinned"
    if tag == "latest":
        return "uses the tag 'latest', which is not pinned; use a version tag or a digest"
    return None


# --------------------------------------------------------------------- report
def render(title: str, results: Sequence[Result]) -> str:
    rows = ((r.name, "PASS" if r.ok else "FAIL", r.detail) for r in results)
    lines = [
        f"## {title}",
        "",
        f"**{verdict([r.ok for r in results])}**",
        "",
        *table(("check", "result", "detail"), rows),
    ]
    return "\n".join(lines) + "\n"


def emit(report: str, report_file: Path | None) -> None:
    sys.stdout.write(report)
    if report_file is not None:
        report_file.write_text(report, encoding="utf-8")


# ------------------------------------------------------------------------ CLI
_positive_float = number("a positive number", lambda v: v > 0 and not math.isinf(v))
_non_negative = number("zero or a positive number", lambda v: v >= 0 and not math.isinf(v))


def _add_target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="https:// base URL, e.g. the app_url output")
    parser.add_argument("--cafile", type=Path, help="PEM CA bundle to trust (private CA)")
    parser.add_argument("--timeout", type=_positive_float, default=10.0, help="seconds per request")
    parser.add_argument("--report", type=Path, help="also write the Markdown report here")


def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser("smoke_check", __doc__)
    sub = parser.add_subparsers(dest="mode", required=True)

    check = sub.add_parser("check", help="health, TLS, HSTS, headers, crisis, redirect, outputs")
    _add_target_args(check)
    check.add_argument("--only", help=f"comma-separated subset of: {', '.join(CHECKS)}")
    check.add_argument("--health-path", default="/api/health")
    check.add_argument("--headers-path", default="/", help="page whose headers are checked")
    check.add_argument("--wait", type=_non_negative, default=0.0, help="seconds to poll health")
    check.add_argument("--crisis-path", default="/api/crisis/health")
    check.add_argument("--crisis-budget-ms", type=_positive_float, default=500.0)
    check.add_argument("--crisis-samples", type=positive_int, default=5)
    check.add_argument("--crisis-stat", choices=("p95", "max"), default="p95")
    check.add_argument("--crisis-expect", help="text the crisis response body must contain")
    check.add_argument("--http-redirect", action="store_true", help="check HTTP->HTTPS redirect")
    check.add_argument("--http-port", type=positive_int, default=80)
    check.add_argument("--outputs-json", type=Path, help="`pulumi stack output --json` file")

    perf = sub.add_parser("perf", help="latency percentiles of N requests, as JSON")
    _add_target_args(perf)
    perf.add_argument("--path", default="/")
    perf.add_argument("--requests", type=positive_int, default=30)
    perf.add_argument("--p95-budget-ms", type=_positive_float, help="fail when p95 is above")
    perf.add_argument("--json", type=Path, required=True, help="where to write the results")

    image = sub.add_parser("image", help="accept only a pinned image reference")
    image.add_argument("reference")
    return parser


def _selected_checks(args: argparse.Namespace) -> list[str]:
    if args.only is None:
        selected = list(DEFAULT_CHECKS)
        if args.http_redirect:
            selected.append("redirect")
        if args.outputs_json is not None:
            selected.append("outputs")
        return selected
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(CHECKS))
    if unknown or not selected:
        raise UsageError(f"--only takes names from {', '.join(CHECKS)}; got {args.only!r}")
    if "outputs" in selected and args.outputs_json is None:
        raise UsageError("--only outputs needs --outputs-json FILE")
    return selected


def _options(args: argparse.Namespace) -> Options:
    cafile: Path | None = args.cafile
    if cafile is not None and not cafile.is_file():
        raise UsageError(f"--cafile {cafile} does not exist")
    return Options(Target.parse(args.url), str(cafile) if cafile else None, args.timeout)


def run_check(args: argparse.Namespace) -> int:
    opts = _options(args)
    selected = _selected_checks(args)
    runners: dict[str, Callable[[], Result]] = {
        "health": lambda: check_health(opts, args.health_path, args.wait),
        "tls": lambda: check_tls(opts),
        "hsts": lambda: check_hsts(opts, args.headers_path),
        "headers": lambda: check_headers(opts, args.headers_path),
        "crisis": lambda: check_crisis(
            opts,
            args.crisis_path,
            budget_ms=args.crisis_budget_ms,
            samples=args.crisis_samples,
            stat=args.crisis_stat,
            expect=args.crisis_expect,
        ),
        "redirect": lambda: check_redirect(opts, args.http_port),
        "outputs": lambda: check_outputs(args.outputs_json),
    }
    results = [runners[name]() for name in CHECKS if name in selected]
    emit(render(f"Smoke check of {opts.target.url}", results), args.report)
    return 0 if all(r.ok for r in results) else 1


def run_perf(args: argparse.Namespace) -> int:
    opts = _options(args)
    latencies: list[float] = []
    errors: list[str] = []
    for _ in range(args.requests):
        try:
            response = fetch(opts, args.path)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(failure(exc))
            continue
        if response.status >= 400:
            errors.append(f"HTTP {response.status}")
        latencies.append(response.elapsed_ms)
    error_samples = sorted(set(errors))[:5]
    summary: dict[str, object] = {
        "url": opts.target.url,
        "path": args.path,
        "requests": args.requests,
        "errors": len(errors),
        "error_samples": error_samples,
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "p95_budget_ms": args.p95_budget_ms,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    results = [
        Result(
            "errors",
            not errors,
            f"{len(errors)} of {args.requests} requests failed"
            + (f": {', '.join(error_samples)}" if errors else ""),
        )
    ]
    if latencies:
        p50, p95 = summary["p50_ms"], summary["p95_ms"]
        budget = args.p95_budget_ms
        within = budget is None or percentile(latencies, 95) <= budget
        limit = f", budget {budget:.0f} ms" if budget is not None else ""
        results.append(Result("latency", within, f"p50 {p50} ms, p95 {p95} ms{limit}"))
    emit(render(f"Performance of {opts.target.url}{args.path}", results), args.report)
    return 0 if all(r.ok for r in results) else 1


def run_image(args: argparse.Namespace) -> int:
    problem = validate_image(args.reference)
    if problem is not None:
        # repr() keeps the untrusted text on one line, so it cannot forge a
        # GitHub workflow command.
        print(f"smoke_check: image {args.reference!r} {problem}", file=sys.stderr)
        return 1
    print(f"image {args.reference} is pinned")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    modes: dict[str, Callable[[argparse.Namespace], int]] = {
        "check": run_check,
        "perf": run_perf,
        "image": run_image,
    }
    try:
        return modes[args.mode](args)
    except UsageError as exc:
        print(f"smoke_check: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

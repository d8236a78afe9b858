#!/usr/bin/env python3
"""Accessibility, performance and header audit of a deployed Luna site (docs/pipeline.md).

Runs Lighthouse (pinned by audit/package-lock.json, installed by
scripts/install-lighthouse) in the OS's Chromium, on its mobile emulation,
against each page that audit/budgets.toml lists for the stack::

    audit_site.py --url https://staging.luna-app.com --stack staging --out reports/audit
    audit_site.py --url https://luna-app.com --stack prod --page crisis

Per page it checks:

- accessibility: the Lighthouse category score (axe-core) against its minimum,
  and that none of the critical rules failed;
- performance: LCP, CLS, TBT and total transfer size against the page's budget;
- HTTPS: Lighthouse's is-on-https (the page and every subresource over HTTPS,
  so no mixed content);
- headers: HSTS of a year or more and the security headers the edge sets, with
  smoke_check.py's rules.

It writes ``<page>.report.json`` and ``<page>.report.html`` (Lighthouse's own
reports), ``results.json`` and ``summary.md`` into ``--out`` and prints the
summary. Exit status: 0 when every check passed, 1 when one failed (each
failure is named on stderr), 2 on bad arguments or budgets (one line).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audit_budgets import METRICS, Page, load_budgets
from lib.cli import UsageError, number, tool_parser
from lib.http_checks import Options, Target, check_headers, check_hsts, client_context
from lib.report import table, verdict

__all__ = ["Check", "evaluate", "main"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUDGETS = REPO / "audit" / "budgets.toml"
INSTALLED_LIGHTHOUSE = REPO / ".tools" / "lighthouse" / "node_modules" / ".bin" / "lighthouse"
# Where Lighthouse's chrome-launcher looks on Linux, in its order, and CHROME_PATH
# first (chrome-launcher src/chrome-finder.ts, linux()). The script resolves it
# itself so that a missing browser is one clear line, and passes it on.
CHROMIUM_NAMES = ("google-chrome-stable", "google-chrome", "chromium-browser", "chromium")
CATEGORIES = ("performance", "accessibility", "best-practices")


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    page: str
    check: str
    ok: bool
    measured: str
    budget: str
    detail: str = ""


# ---------------------------------------------------------------- evaluation
def _passed(audit: Mapping[str, Any]) -> bool:
    """A binary Lighthouse audit passed, or did not apply (no such element on the page)."""
    return audit.get("scoreDisplayMode") == "notApplicable" or audit.get("score") == 1


def _failing_items(audit: Mapping[str, Any]) -> str:
    items = (audit.get("details") or {}).get("items") or []
    snippets = []
    for item in items[:3]:
        node = item.get("node") or {}
        snippets.append(str(node.get("snippet") or item.get("url") or "?")[:80])
    more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
    return f"{len(items)} found: " + "; ".join(snippets) + more if items else ""


def evaluate(page: Page, rules: Sequence[str], lhr: Mapping[str, Any]) -> list[Check]:
    """Every check of one page against one Lighthouse result (its JSON report)."""
    error = lhr.get("runtimeError")
    if error:
        return [
            Check(page.name, "load", False, str(error.get("code", "?")), "loads",
                  str(error.get("message", "")))
        ]  # fmt: skip
    audits: Mapping[str, Any] = lhr.get("audits", {})
    categories: Mapping[str, Any] = lhr.get("categories", {})
    settings: Mapping[str, Any] = lhr.get("configSettings", {})
    checks: list[Check] = []

    # Budgets are set for a phone; a desktop run would pass them too easily.
    emulation = settings.get("screenEmulation") or {}
    mobile = settings.get("formFactor") == "mobile" and emulation.get("mobile") is True
    throttling = settings.get("throttlingMethod", "?")
    checks.append(
        Check(page.name, "mobile emulation", mobile, f"{settings.get('formFactor')}", "mobile",
              f"throttling: {throttling}")
    )  # fmt: skip

    score = (categories.get("accessibility") or {}).get("score")
    checks.append(
        Check(
            page.name,
            "accessibility score",
            isinstance(score, int | float) and score >= page.accessibility_min_score,
            "not measured" if score is None else f"{score:.2f}",
            f">= {page.accessibility_min_score:.2f}",
        )
    )
    for rule in rules:
        audit = audits.get(rule)
        if audit is None:
            checks.append(
                Check(page.name, f"rule {rule}", False, "unknown", "pass",
                      "not a Lighthouse audit: check critical_rules in the budgets")
            )  # fmt: skip
            continue
        ok = _passed(audit)
        state = "n/a" if audit.get("scoreDisplayMode") == "notApplicable" else "pass"
        if not ok:
            state = "error" if audit.get("scoreDisplayMode") == "error" else "fail"
        detail = audit.get("title", "") if ok else _failing_items(audit) or audit.get("title", "")
        checks.append(Check(page.name, f"rule {rule}", ok, state, "pass", detail))

    for metric in METRICS:
        audit = audits.get(metric.audit) or {}
        value = audit.get("numericValue")
        limit = page.budget(metric)
        if not isinstance(value, int | float):
            checks.append(
                Check(page.name, f"budget {metric.key}", False, "not measured",
                      f"<= {metric.show(limit)}", str(audit.get("errorMessage", metric.audit)))
            )  # fmt: skip
            continue
        measured = value / metric.scale
        checks.append(
            Check(page.name, f"budget {metric.key}", measured <= limit, metric.show(measured),
                  f"<= {metric.show(limit)}", metric.audit)
        )  # fmt: skip

    https = audits.get("is-on-https") or {}
    checks.append(
        Check(page.name, "https", _passed(https), "pass" if _passed(https) else "fail",
              "pass", _failing_items(https) or "page and subresources over HTTPS")
    )  # fmt: skip
    return checks


def header_checks(page: Page, opts: Options) -> list[Check]:
    """HSTS and the security headers on the page's own response (smoke_check's rules)."""
    rows = []
    for result in (check_hsts(opts, page.path), check_headers(opts, page.path)):
        state = "pass" if result.ok else "fail"
        rows.append(Check(page.name, result.name, result.ok, state, "pass", result.detail))
    return rows


# ---------------------------------------------------------------- lighthouse
def _spki_pin(der: bytes) -> str:
    """The base64 SHA-256 of a DER certificate's SubjectPublicKeyInfo, as Chromium takes it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise UsageError("--cafile needs openssl to pin the certificate; install openssl")
    pem_key = subprocess.run(
        [openssl, "x509", "-inform", "DER", "-noout", "-pubkey"], input=der, capture_output=True
    )
    spki = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "DER"], input=pem_key.stdout, capture_output=True
    )
    if pem_key.returncode or spki.returncode or not spki.stdout:
        raise ssl.SSLError("openssl could not read the served certificate's public key")
    return base64.b64encode(hashlib.sha256(spki.stdout).digest()).decode("ascii")


def served_certificate_pin(target: Target, ctx: ssl.SSLContext, timeout: float) -> str:
    """Verify the served certificate with ``ctx`` (chain, name, dates), then pin its key.

    Chromium's --ignore-certificate-errors-spki-list matches only the certificates
    the server presents, and then ignores every error, expiry and name included
    (Chromium services/network/ignore_errors_cert_verifier.cc). A private root CA
    is rarely presented, so its pin would not match. The leaf that OpenSSL has
    just verified against the CA is pinned instead: the full check happens here.
    """
    with (
        socket.create_connection((target.host, target.port), timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=target.host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return _spki_pin(der)


def chrome_flags(pins: Sequence[str]) -> list[str]:
    flags = ["--headless=new", "--disable-dev-shm-usage"]  # /dev/shm is 64 MB in containers
    if os.geteuid() == 0:
        # Chromium refuses to start as root with its sandbox. Root is the CI
        # container (and this project's test machine); the page is our own.
        flags.append("--no-sandbox")
    if pins:
        # A private CA (staging): trust exactly the verified leaf's key, in this run's profile.
        flags.append("--ignore-certificate-errors-spki-list=" + ",".join(pins))
    return flags


def run_lighthouse(
    lighthouse: str, chrome: str, url: str, out_base: Path, flags: Sequence[str], timeout: float
) -> dict[str, Any]:
    """Run Lighthouse once; its JSON report, or a stand-in with runtimeError on failure."""
    command = [
        lighthouse, url, "--quiet", "--output=json", "--output=html",
        f"--output-path={out_base}", "--only-categories=" + ",".join(CATEGORIES),
        "--chrome-flags=" + " ".join(flags),
    ]  # fmt: skip
    report = out_base.with_name(out_base.name + ".report.json")
    report.unlink(missing_ok=True)
    env = {**os.environ, "CHROME_PATH": chrome}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"runtimeError": {"code": "TIMEOUT", "message": f"no result in {timeout:.0f} s"}}
    if not report.is_file():
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[:300]
        return {"runtimeError": {"code": f"EXIT {done.returncode}", "message": tail}}
    lhr: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    return lhr


# -------------------------------------------------------------------- report
def render(url: str, stack: str, tools: str, checks: Sequence[Check]) -> str:
    lines = [
        f"## Lighthouse audit of {url} ({stack})",
        "",
        f"**{verdict([c.ok for c in checks])}**. {tools}, mobile emulation. "
        "Reports: the audit artifact.",
        "",
        *table(
            ("page", "check", "measured", "budget", "result", "detail"),
            (
                (c.page, c.check, c.measured, c.budget, "PASS" if c.ok else "**FAIL**", c.detail)
                for c in checks
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------- CLI
_seconds = number("between 0 and 3600 seconds", lambda v: 0 < v < 3600)


def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser("audit_site", __doc__)
    parser.add_argument("--url", required=True, help="https:// base URL (the stack's app_url)")
    parser.add_argument("--stack", required=True, help="stack whose budgets apply")
    parser.add_argument("--budgets", type=Path, default=DEFAULT_BUDGETS, help="budgets TOML")
    parser.add_argument(
        "--page", action="append", help="audit only this page of the budgets (repeatable)"
    )
    parser.add_argument("--cafile", type=Path, help="PEM CA to trust (staging's private CA)")
    parser.add_argument("--out", type=Path, default=Path("reports/audit"), help="report folder")
    parser.add_argument("--lighthouse", help="lighthouse command (default: .tools/lighthouse)")
    parser.add_argument("--timeout", type=_seconds, default=240.0, help="seconds per page")
    return parser


def _find_tools(lighthouse: str | None) -> tuple[str, str]:
    found = lighthouse or (
        str(INSTALLED_LIGHTHOUSE) if INSTALLED_LIGHTHOUSE.is_file() else shutil.which("lighthouse")
    )
    if not found or not (Path(found).is_file() or shutil.which(found)):
        raise UsageError(
            "lighthouse not found: run scripts/install-lighthouse or pass --lighthouse"
        )
    chrome = os.environ.get("CHROME_PATH") or next(
        (p for p in map(shutil.which, CHROMIUM_NAMES) if p), None
    )
    if not chrome or not Path(chrome).is_file():
        raise UsageError("Chromium not found: apt-get install chromium, or set CHROME_PATH")
    return found, chrome


def _browser_version(chrome: str) -> str:
    """``Chromium 156.0.8078.108``: the exact build, which the report's user agent hides."""
    try:
        done = subprocess.run([chrome, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return Path(chrome).name
    return done.stdout.split(" built ")[0].strip() or Path(chrome).name


def run(args: argparse.Namespace) -> int:
    target = Target.parse(args.url)
    budgets = load_budgets(args.budgets, args.stack)
    pages = budgets.pages
    if args.page:
        names = {p.name for p in pages}
        unknown = sorted(set(args.page) - names)
        if unknown:
            raise UsageError(
                f"--page {unknown[0]!r} is not a page of {args.stack}: {sorted(names)}"
            )
        pages = tuple(p for p in pages if p.name in args.page)
    cafile: Path | None = args.cafile
    if cafile is not None and not cafile.is_file():
        raise UsageError(f"--cafile {cafile} does not exist")
    ctx = None
    if cafile is not None:
        try:
            ctx = client_context(str(cafile))
        except ssl.SSLError:
            raise UsageError(f"--cafile {cafile} holds no PEM certificate") from None
    lighthouse, chrome = _find_tools(args.lighthouse)
    opts = Options(target, str(cafile) if cafile else None, 15.0)

    args.out.mkdir(parents=True, exist_ok=True)
    checks: list[Check] = []
    tools = browser = _browser_version(chrome)
    pins: list[str] = []
    if ctx is not None:
        try:
            pins.append(served_certificate_pin(target, ctx, opts.timeout))
        except (OSError, ssl.SSLError) as exc:
            # Chromium could not load a page either; say why once, instead of per page.
            checks.append(Check("*", "certificate", False, "untrusted", "trusted by --cafile",
                                f"{type(exc).__name__}: {exc}"))  # fmt: skip
            pages = ()
    flags = chrome_flags(pins)
    # One page at a time: parallel runs share the CPU and skew each other's timings.
    for page in pages:
        lhr = run_lighthouse(
            lighthouse, chrome, target.url.rstrip("/") + page.path, args.out / page.name, flags,
            args.timeout,
        )  # fmt: skip
        if "lighthouseVersion" in lhr:
            axe = (lhr.get("environment") or {}).get("credits", {}).get("axe-core", "?")
            tools = f"{browser}, Lighthouse {lhr['lighthouseVersion']}, axe-core {axe}"
        checks += evaluate(page, budgets.critical_rules, lhr)
        checks += header_checks(page, opts)

    summary = render(target.url, args.stack, tools, checks)
    (args.out / "summary.md").write_text(summary, encoding="utf-8")
    (args.out / "results.json").write_text(
        json.dumps([asdict(c) for c in checks], indent=2) + "\n", encoding="utf-8"
    )
    sys.stdout.write(summary)
    for c in checks:
        if not c.ok:
            print(f"FAIL {c.page}: {c.check}: {c.measured} (expected {c.budget}) {c.detail}",
                  file=sys.stderr)  # fmt: skip
    return 0 if all(c.ok for c in checks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"audit_site: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

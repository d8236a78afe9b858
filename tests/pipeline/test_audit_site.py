"""scripts/audit_site.py: budgets, arguments, and real Lighthouse runs against local pages.

The slow tests serve pages over HTTPS on 127.0.0.1 (http.server + ssl), with a
certificate from a throwaway private CA that the server does not present, the
CA passed as ``--cafile`` exactly as staging's is, and with the security headers
the edge sets (components/configs/nginx.py).
They run the script as the pipeline does, with Debian's ``chromium`` and the
Lighthouse pinned by audit/package-lock.json, against the committed prod
budgets. Each prints its summary table (``pytest -s`` shows it).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import audit_budgets
import audit_site
import pytest

from components.configs.nginx import SECURITY_HEADERS, NginxSettings
from tests.support.tls import make_ca_signed_pair
from tests.support.tools import REPO, need

SCRIPT = REPO / "scripts" / "audit_site.py"
BUDGETS = REPO / "audit" / "budgets.toml"
AUDITED_STACKS = ("staging", "prod")

EDGE_HEADERS = {
    **SECURITY_HEADERS,
    "Strict-Transport-Security": (
        f"max-age={NginxSettings(server_name='x', upstream='a:1').hsts_max_age_s}; "
        "includeSubDomains"
    ),
}


def run_script(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=REPO,
    )


# ------------------------------------------------------- committed budgets
@pytest.mark.parametrize("stack", AUDITED_STACKS)
def test_committed_budgets_load_with_home_and_crisis(stack: str) -> None:
    budgets = audit_budgets.load_budgets(BUDGETS, stack)
    paths = {p.name: p.path for p in budgets.pages}
    assert paths.get("home") == "/", f"{stack}: the home page is not audited: {paths}"
    assert "crisis" in paths, f"{stack}: the crisis page is not audited: {paths}"
    required = {"color-contrast", "button-name", "link-name", "label", "html-has-lang"}
    missing = (required | {"document-title"}) - set(budgets.critical_rules)
    assert not missing, f"{stack}: critical rules lack {sorted(missing)}"


@pytest.mark.parametrize("stack", AUDITED_STACKS)
def test_crisis_page_has_the_strictest_budget(stack: str) -> None:
    pages = {p.name: p for p in audit_budgets.load_budgets(BUDGETS, stack).pages}
    crisis = pages.pop("crisis")
    for other in pages.values():
        for metric in audit_budgets.METRICS:
            assert crisis.budget(metric) <= other.budget(metric), (
                f"{stack}: crisis {metric.key} {crisis.budget(metric)} is looser than "
                f"{other.name}'s {other.budget(metric)}"
            )
        assert crisis.accessibility_min_score >= other.accessibility_min_score, stack
    # Strictly tighter somewhere, or "strictest" would be an empty word.
    assert any(
        crisis.budget(m) < other.budget(m)
        for m in audit_budgets.METRICS
        for other in pages.values()
    ), f"{stack}: the crisis budget is no tighter than any other page's"


def test_staging_gate_is_at_least_as_strict_as_prod() -> None:
    # The staging audit gates production: a looser staging lets through what prod then fails.
    staging = {p.name: p for p in audit_budgets.load_budgets(BUDGETS, "staging").pages}
    prod = audit_budgets.load_budgets(BUDGETS, "prod")
    assert staging.keys() >= {p.name for p in prod.pages}, "staging skips a page prod audits"
    assert set(audit_budgets.load_budgets(BUDGETS, "staging").critical_rules) >= set(
        prod.critical_rules
    )
    for page in prod.pages:
        gate = staging[page.name]
        assert gate.path == page.path, page.name
        assert gate.accessibility_min_score >= page.accessibility_min_score, page.name
        for metric in audit_budgets.METRICS:
            assert gate.budget(metric) <= page.budget(metric), f"staging {page.name} {metric.key}"


def test_docs_show_the_committed_budgets() -> None:
    docs = (REPO / "docs" / "pipeline.md").read_text(encoding="utf-8")
    for p in audit_budgets.load_budgets(BUDGETS, "prod").pages:
        row = (
            f"| `{p.name}` | `{p.path}` | ≥ {p.accessibility_min_score:.2f} | ≤ {p.lcp_ms:.0f} ms "
            f"| ≤ {p.cls:g} | ≤ {p.tbt_ms:.0f} ms | ≤ {p.transfer_kib:.0f} KiB |"
        )
        assert row in docs, f"docs/pipeline.md's budget table is out of date; expected: {row}"


def test_a_stack_override_changes_only_its_key(tmp_path: Path) -> None:
    text = BUDGETS.read_text(encoding="utf-8") + "\n[stacks.prod.pages.home]\nlcp_ms = 3000\n"
    # TOML forbids defining [stacks.prod] twice; drop the committed empty one.
    text = text.replace("[stacks.prod]\n", "", 1)
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(text, encoding="utf-8")
    prod = {p.name: p for p in audit_budgets.load_budgets(budgets, "prod").pages}
    staging = {p.name: p for p in audit_budgets.load_budgets(budgets, "staging").pages}
    assert prod["home"].lcp_ms == 3000
    assert staging["home"].lcp_ms != 3000, "a prod override leaked into staging"
    assert prod["home"].tbt_ms == staging["home"].tbt_ms, "an override dropped other keys"


# ------------------------------------------------------------- bad input
BAD_BUDGETS = {
    "negative budget": ("[defaults.pages.home]\nlcp_ms = -1\n", "lcp_ms = -1"),
    "unknown key": ("[defaults.pages.home]\nlcp = 1\n", "unknown keys ['lcp']"),
    "not toml": ("[defaults\n", "is not valid TOML"),
    "score above 1": (
        "[defaults.pages.crisis]\naccessibility_min_score = 95\n",
        "accessibility_min_score = 95",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BUDGETS))
def test_bad_budgets_exit_2_with_one_line(tmp_path: Path, case: str) -> None:
    extra, expected = BAD_BUDGETS[case]
    committed = BUDGETS.read_text(encoding="utf-8")
    # Append the override as a stack section, so the committed defaults stay as they are.
    bad = tmp_path / "budgets.toml"
    section = extra.replace("[defaults.", "[stacks.prod.")
    bad.write_text(committed.replace("[stacks.prod]\n", "", 1) + "\n" + section)
    done = run_script("--url", "https://127.0.0.1:1", "--stack", "prod", "--budgets", str(bad))
    assert done.returncode == 2, f"{case}: exit {done.returncode}: {done.stderr}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audit_site: error:"), done.stderr
    assert expected in lines[0], f"{case}: {lines[0]}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--url", "http://luna.test", "--stack", "prod"], "must be an https:// URL"),
        (["--url", "https://luna.test", "--stack", "dev"], "audited stacks: ['prod', 'staging']"),
        (["--url", "https://luna.test", "--stack", "prod", "--page", "nope"], "'nope'"),
        (["--url", "https://luna.test", "--stack", "prod", "--cafile", "/nope.pem"], "/nope.pem"),
        (
            ["--url", "https://luna.test", "--stack", "prod", "--lighthouse", "/nope/lighthouse"],
            "lighthouse not found",
        ),
        (["--url", "https://luna.test"], "--stack"),
        (["--url", "https://luna.test", "--stack", "prod", "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], expected: str) -> None:
    done = run_script(*args)
    assert done.returncode == 2, f"{args}: exit {done.returncode}: {done.stderr}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audit_site: error:"), done.stderr
    assert expected in lines[0], lines[0]
    assert done.stdout == "", "nothing may run before the arguments are valid"


# ------------------------------------------------------------- evaluation
def _page() -> audit_budgets.Page:
    return audit_budgets.load_budgets(BUDGETS, "prod").pages[0]


def test_a_critical_rule_lighthouse_does_not_know_fails() -> None:
    # A typo in critical_rules must not pass silently as "no failure found".
    lhr: dict[str, Any] = {"audits": {}, "categories": {"accessibility": {"score": 1}}}
    checks = audit_site.evaluate(_page(), ["colour-contrast"], lhr)
    (rule,) = [c for c in checks if c.check == "rule colour-contrast"]
    assert not rule.ok and "not a Lighthouse audit" in rule.detail


def test_an_audit_that_errored_fails() -> None:
    lhr: dict[str, Any] = {
        "audits": {"label": {"score": None, "scoreDisplayMode": "error"}},
        "categories": {"accessibility": {"score": 1}},
    }
    (rule,) = [c for c in audit_site.evaluate(_page(), ["label"], lhr) if c.check == "rule label"]
    assert not rule.ok and rule.measured == "error"


# ------------------------------------------------------ real Lighthouse runs
CLEAN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Luna: help now</title><link rel="icon" href="data:,"></head>
<body><main><h1>You are not alone</h1>
<p>Talk to someone now, day or night.</p>
<p><a href="tel:988">Call 988</a></p>
<form><label for="name">Your first name</label><input id="name" name="name">
<button type="submit">Start a chat</button></form>
{extra}</main></body></html>
"""

INACCESSIBLE = (
    CLEAN.replace(
        '<label for="name">Your first name</label><input id="name" name="name">',
        '<input id="name" name="name">',  # no label
    )
    .replace(
        '<button type="submit">Start a chat</button>',
        '<button type="submit"></button>',  # no accessible name
    )
    .replace(
        "<p>Talk to someone now, day or night.</p>",
        '<p style="color:#c8c8c8;background:#ffffff">Talk to someone now, day or night.</p>',
    )
)

# Two seconds of script on the main thread, after the first paint, when TBT counts it.
BLOCKING = CLEAN.replace(
    "{extra}",
    "<script>addEventListener('load', () => setTimeout(() => {"
    " const end = Date.now() + 2000; while (Date.now() < end) {} }, 0));</script>",
)


# An image over plain HTTP on an HTTPS page: mixed content, whatever the browser does with it.
MIXED = CLEAN.replace(
    "{extra}", '<img src="http://127.0.0.1:9/pixel.png" alt="" width="1" height="1">'
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        body = self.server.routes.get(self.path.split("?")[0])
        data = (body or "not found").replace("{extra}", "").encode()
        self.send_response(200 if body else 404)
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: Mapping[str, str]
    headers: Mapping[str, str]


@contextmanager
def https_site(
    tmp_path: Path, routes: Mapping[str, str], headers: Mapping[str, str]
) -> Iterator[tuple[str, Path]]:
    pair = make_ca_signed_pair(tmp_path, common_name="127.0.0.1", alt_names="IP:127.0.0.1")
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes = routes
    server.headers = headers
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pair.cert, pair.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", pair.ca
    finally:
        server.shutdown()
        server.server_close()


def need_audit_tools() -> None:
    need("chromium")
    need("openssl")
    lighthouse = REPO / ".tools" / "lighthouse" / "node_modules" / ".bin" / "lighthouse"
    if not lighthouse.is_file():
        need("lighthouse")  # skips (locally) or fails (CI) with the install hint


def audit(
    tmp_path: Path,
    routes: Mapping[str, str],
    *pages: str,
    headers: Mapping[str, str] = EDGE_HEADERS,
) -> tuple[int, dict[str, Any]]:
    need_audit_tools()
    out = tmp_path / "reports"
    with https_site(tmp_path, routes, headers) as (url, cert):
        args = ["--url", url, "--stack", "prod", "--cafile", str(cert), "--out", str(out)]
        for page in pages:
            args += ["--page", page]
        done = run_script(*args, timeout=600)
    print(done.stdout, done.stderr)
    assert done.returncode in (0, 1), f"audit_site did not run: {done.stderr}"
    rows = json.loads((out / "results.json").read_text())
    for page in pages or ("home", "crisis"):
        for kind in ("json", "html"):
            assert (out / f"{page}.report.{kind}").stat().st_size > 0, f"no {kind} for {page}"
    checks = {f"{r['page']}: {r['check']}": r for r in rows}
    return done.returncode, {"checks": checks, "stderr": done.stderr, "stdout": done.stdout}


def failed(result: dict[str, Any]) -> set[str]:
    return {name for name, row in result["checks"].items() if not row["ok"]}


@pytest.mark.slow
def test_a_clean_fast_page_passes_every_check(tmp_path: Path) -> None:
    rc, result = audit(tmp_path, {"/": CLEAN, "/crisis": CLEAN})
    assert failed(result) == set(), f"a clean page failed: {result['stderr']}"
    assert rc == 0
    checks = result["checks"]
    for page in ("home", "crisis"):
        for name in ("accessibility score", "budget lcp_ms", "budget tbt_ms", "https", "headers"):
            assert f"{page}: {name}" in checks, f"{page}: {name} was not checked"
        assert checks[f"{page}: mobile emulation"]["ok"], "not audited on mobile emulation"
    assert "Lighthouse 12.2.3" in result["stdout"], "not the pinned Lighthouse"


@pytest.mark.slow
def test_missing_label_nameless_button_and_low_contrast_fail_by_rule(tmp_path: Path) -> None:
    rc, result = audit(tmp_path, {"/": INACCESSIBLE}, "home")
    assert rc == 1
    expected = {"home: rule label", "home: rule button-name", "home: rule color-contrast"}
    assert expected <= failed(result), f"failed: {sorted(failed(result))}"
    for rule in ("label", "button-name", "color-contrast"):
        assert f"FAIL home: rule {rule}" in result["stderr"], f"{rule} is not named on stderr"
    # Only what the page breaks: the rest of the audit still passes.
    assert not {c for c in failed(result) if "budget" in c or c.endswith("headers")}


@pytest.mark.slow
def test_two_seconds_of_main_thread_fail_the_tbt_budget(tmp_path: Path) -> None:
    rc, result = audit(tmp_path, {"/crisis": BLOCKING}, "crisis")
    assert rc == 1
    assert "crisis: budget tbt_ms" in failed(result), f"failed: {sorted(failed(result))}"
    assert "FAIL crisis: budget tbt_ms" in result["stderr"]
    tbt = result["checks"]["crisis: budget tbt_ms"]
    print(f"TBT measured {tbt['measured']} against {tbt['budget']}")
    assert not {c for c in failed(result) if c.startswith("crisis: rule")}, "a11y regressed"


@pytest.mark.slow
def test_mixed_content_and_a_missing_edge_header_fail_https_and_headers(tmp_path: Path) -> None:
    weak_edge = {k: v for k, v in EDGE_HEADERS.items() if k != "X-Frame-Options"}
    rc, result = audit(tmp_path, {"/": MIXED}, "home", headers=weak_edge)
    assert rc == 1
    assert {"home: https", "home: headers"} <= failed(result), sorted(failed(result))
    checks = result["checks"]
    assert "http://127.0.0.1:9/pixel.png" in checks["home: https"]["detail"]
    assert "X-Frame-Options missing" in checks["home: headers"]["detail"]
    assert checks["home: hsts"]["ok"], "HSTS was sent and must pass"


def test_a_certificate_the_ca_did_not_sign_fails_before_any_page_is_audited(
    tmp_path: Path,
) -> None:
    # The pin handed to Chromium skips its own checks, so the script's own
    # verification against --cafile must hold: another CA's certificate fails.
    need_audit_tools()
    other = tmp_path / "other"
    other.mkdir()
    stranger = make_ca_signed_pair(other, common_name="127.0.0.1", alt_names="IP:127.0.0.1")
    out = tmp_path / "reports"
    with https_site(tmp_path, {"/": CLEAN}, EDGE_HEADERS) as (url, _ca):
        args = ["--url", url, "--stack", "prod", "--cafile", str(stranger.ca), "--out", str(out)]
        done = run_script(*args)
    assert done.returncode == 1, done.stderr
    rows = json.loads((out / "results.json").read_text())
    assert [(r["check"], r["ok"]) for r in rows] == [("certificate", False)], rows
    assert "CERTIFICATE_VERIFY_FAILED" in rows[0]["detail"], rows[0]["detail"]
    assert not list(out.glob("*.report.json")), "Lighthouse ran against an untrusted site"

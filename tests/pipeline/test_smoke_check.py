"""scripts/smoke_check.py against a real HTTPS server on 127.0.0.1.

The server is Python's http.server behind ssl, with a self-signed certificate
made by openssl. Each test starts its own server with the behaviour it needs,
runs the script as the pipeline does (a subprocess), and reads its exit status
and Markdown report.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.tls import TlsPair, make_tls_pair
from tests.support.tools import REPO

SCRIPT = REPO / "scripts" / "smoke_check.py"

SECURE_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}


@dataclass(frozen=True)
class Route:
    status: int = 200
    body: bytes = b'{"status":"ok"}'
    delay_s: float = 0.0


@dataclass(frozen=True)
class Behaviour:
    """What the fake Luna answers: per-path routes, and headers on every response."""

    routes: Mapping[str, Route] = field(
        default_factory=lambda: {
            "/": Route(),
            "/api/health": Route(),
            "/api/crisis/health": Route(),
        }
    )
    headers: Mapping[str, str] = field(default_factory=lambda: dict(SECURE_HEADERS))


GOOD = Behaviour()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        route = behaviour.routes.get(self.path.split("?")[0], Route(status=404, body=b"nope"))
        time.sleep(route.delay_s)
        self.send_response(route.status)
        for name, value in behaviour.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Refused handshakes and dropped connections are what several tests provoke.
        pass


class _Redirector(BaseHTTPRequestHandler):
    server: _PlainServer

    def do_GET(self) -> None:
        self.send_response(self.server.status)
        self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PlainServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int, location: str) -> None:
        super().__init__(("127.0.0.1", 0), _Redirector)
        self.status = status
        self.location = location


Cert = TlsPair


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_tls_pair(
        tmp_path_factory.mktemp("tls"), common_name="127.0.0.1", alt_names="IP:127.0.0.1"
    )


def _server_context(cert: Cert, *, legacy: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)
    if legacy:
        # A misconfigured server that still speaks TLS 1.0/1.1. OpenSSL 3 only
        # allows it at security level 0; Python warns that these versions are deprecated.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def luna(cert: Cert, behaviour: Behaviour = GOOD, *, legacy_tls: bool = False) -> Iterator[str]:
    """A fake Luna over HTTPS; yields its base URL."""
    server = _Server(behaviour)
    server.socket = _server_context(cert, legacy=legacy_tls).wrap_socket(
        server.socket, server_side=True
    )
    with serving(server) as port:
        yield f"https://127.0.0.1:{port}"


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def row(self, check: str) -> str:
        """The report's row for one check, e.g. '| crisis | FAIL | ... |'."""
        rows = [line for line in self.stdout.splitlines() if line.startswith(f"| {check} |")]
        assert len(rows) == 1, f"no single row for {check!r} in:\n{self.stdout}\n{self.stderr}"
        return rows[0]

    def passed(self, check: str) -> bool:
        return f"| {check} | PASS |" in self.row(check)


def smoke(*args: str | Path) -> Run:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def check(url: str, cert: Cert, *extra: str | Path) -> Run:
    return smoke("check", "--url", url, "--cafile", cert.cert, "--timeout", "5", *extra)


def with_route(path: str, route: Route) -> Behaviour:
    return replace(GOOD, routes={**GOOD.routes, path: route})


def without_header(name: str) -> Behaviour:
    return replace(GOOD, headers={k: v for k, v in SECURE_HEADERS.items() if k != name})


# ------------------------------------------------------------------ passes
def test_healthy_deployment_passes_every_check(cert: Cert, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps({"app_url": "https://luna.example", "database_url": "[secret]"}),
        encoding="utf-8",
    )
    report = tmp_path / "report.md"
    with (
        luna(cert) as url,
        serving(_PlainServer(301, "https://127.0.0.1/")) as http_port,
    ):
        run = check(
            url,
            cert,
            "--http-redirect",
            "--http-port",
            str(http_port),
            "--outputs-json",
            outputs,
            "--report",
            report,
        )
    assert run.code == 0, run.stdout + run.stderr
    for name in ("health", "tls", "hsts", "headers", "crisis", "redirect", "outputs"):
        assert run.passed(name), run.row(name)
    assert "TLSv1.3" in run.row("tls") or "TLSv1.2" in run.row("tls")
    assert report.read_text(encoding="utf-8") == run.stdout, "--report differs from stdout"


# ---------------------------------------------------------------- failures
def test_slow_crisis_endpoint_fails(cert: Cert) -> None:
    slow = with_route("/api/crisis/health", Route(delay_s=0.25))
    with luna(cert, slow) as url:
        run = check(url, cert, "--crisis-budget-ms", "100", "--crisis-samples", "3")
    assert run.code == 1
    assert not run.passed("crisis")
    assert "too slow" in run.row("crisis") and "budget 100 ms" in run.row("crisis")
    assert run.passed("health"), "only the crisis check may fail"


def test_crisis_endpoint_within_budget_passes_with_max_stat(cert: Cert) -> None:
    with luna(cert, with_route("/api/crisis/health", Route(delay_s=0.02))) as url:
        run = check(url, cert, "--only", "crisis", "--crisis-stat", "max")
    assert run.code == 0, run.stdout
    assert "max" in run.row("crisis")


def test_crisis_endpoint_wrong_status_fails(cert: Cert) -> None:
    with luna(cert, with_route("/api/crisis/health", Route(status=500))) as url:
        run = check(url, cert, "--only", "crisis")
    assert run.code == 1
    assert "HTTP 500, expected 200" in run.row("crisis")


def test_crisis_endpoint_wrong_body_fails(cert: Cert) -> None:
    with luna(cert, with_route("/api/crisis/health", Route(body=b'{"status":"degraded"}'))) as url:
        run = check(url, cert, "--only", "crisis", "--crisis-expect", '"status":"ok"')
    assert run.code == 1
    assert "does not contain" in run.row("crisis")


def test_health_wrong_status_fails(cert: Cert) -> None:
    with luna(cert, with_route("/api/health", Route(status=503))) as url:
        run = check(url, cert)
    assert run.code == 1
    assert "HTTP 503, expected 200" in run.row("health")
    assert run.passed("crisis")


@pytest.mark.parametrize(
    "header",
    ["X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy"],
)
def test_missing_security_header_fails(cert: Cert, header: str) -> None:
    with luna(cert, without_header(header)) as url:
        run = check(url, cert, "--only", "headers")
    assert run.code == 1
    assert f"{header} missing" in run.row("headers")


def test_leaky_referrer_policy_fails(cert: Cert) -> None:
    leaky = replace(GOOD, headers={**SECURE_HEADERS, "Referrer-Policy": "unsafe-url"})
    with luna(cert, leaky) as url:
        run = check(url, cert, "--only", "headers")
    assert run.code == 1
    assert "sends full URLs" in run.row("headers")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no Strict-Transport-Security header"),
        ("max-age=86400", "under one year"),
        ("includeSubDomains", "has no max-age"),
    ],
)
def test_weak_hsts_fails(cert: Cert, value: str | None, reason: str) -> None:
    headers = {k: v for k, v in SECURE_HEADERS.items() if k != "Strict-Transport-Security"}
    if value is not None:
        headers["Strict-Transport-Security"] = value
    with luna(cert, replace(GOOD, headers=headers)) as url:
        run = check(url, cert, "--only", "hsts")
    assert run.code == 1
    assert reason in run.row("hsts")


def test_server_accepting_tls_1_1_fails(cert: Cert) -> None:
    # Measured on this machine kind (OpenSSL 3.0, Debian 12): with security
    # level 0 on both ends, a TLS 1.0/1.1 handshake still completes, so the
    # script's refusal check can be shown to catch a server that allows it.
    with luna(cert, legacy_tls=True) as url:
        run = check(url, cert, "--only", "tls")
    assert run.code == 1, run.stdout
    assert re.search(r"server accepted TLSv1(\.1)?;", run.row("tls")), run.row("tls")


def test_tls_1_2_only_server_passes_tls_check(cert: Cert) -> None:
    with luna(cert) as url:
        run = check(url, cert, "--only", "tls")
    assert run.code == 0, run.stdout
    assert "TLS 1.0/1.1 refused" in run.row("tls")


def test_untrusted_certificate_fails(cert: Cert) -> None:
    with luna(cert) as url:
        run = smoke("check", "--url", url, "--only", "health,tls", "--timeout", "5")
    assert run.code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in run.row("health")
    assert "CERTIFICATE_VERIFY_FAILED" in run.row("tls")


@pytest.mark.parametrize(
    ("status", "location", "reason"),
    [
        (200, "", "HTTP 200, expected 301 or 308"),
        (302, "https://127.0.0.1/", "HTTP 302, expected 301 or 308"),
        (301, "http://127.0.0.1/", "not https"),
    ],
)
def test_missing_https_redirect_fails(cert: Cert, status: int, location: str, reason: str) -> None:
    with luna(cert) as url, serving(_PlainServer(status, location)) as http_port:
        run = check(url, cert, "--only", "redirect", "--http-port", str(http_port))
    assert run.code == 1
    assert reason in run.row("redirect")


@pytest.mark.parametrize(
    ("outputs", "where"),
    [
        (
            {"app_url": "https://x", "database_url": "postgres://luna:hunter2@db:5432/luna"},
            "database_url",
        ),
        ({"app_url": "https://luna:hunter2@x.example/"}, "app_url contains a URL with a password"),
        ({"config": {"grafana_admin_password": "hunter2"}}, "config.grafana_admin_password"),
        ({"notes": "key sk-hunter2hunter2hunter2hunter2"}, "notes contains an API key"),
    ],
)
def test_plaintext_secret_in_outputs_fails(
    tmp_path: Path, outputs: dict[str, Any], where: str
) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs), encoding="utf-8")
    # Only the outputs check: no server needed, so the URL is never contacted.
    run = smoke(
        "check", "--url", "https://127.0.0.1:9", "--only", "outputs", "--outputs-json", path
    )
    assert run.code == 1
    assert where in run.row("outputs")
    assert "hunter2" not in run.stdout + run.stderr, "the report must not repeat the secret"


# ------------------------------------------------------------ other modes
def test_perf_writes_percentiles(cert: Cert, tmp_path: Path) -> None:
    results = tmp_path / "perf.json"
    with luna(cert) as url:
        run = smoke(
            "perf", "--url", url, "--cafile", cert.cert, "--requests", "8", "--json", results
        )
    assert run.code == 0, run.stdout + run.stderr
    data = json.loads(results.read_text(encoding="utf-8"))
    assert data["requests"] == 8 and data["errors"] == 0
    assert 0 < data["p50_ms"] <= data["p95_ms"] <= data["max_ms"]


def test_perf_over_budget_fails(cert: Cert, tmp_path: Path) -> None:
    results = tmp_path / "perf.json"
    with luna(cert, with_route("/", Route(delay_s=0.05))) as url:
        run = smoke(
            "perf",
            "--url",
            url,
            "--cafile",
            cert.cert,
            "--requests",
            "3",
            "--p95-budget-ms",
            "10",
            "--json",
            results,
        )
    assert run.code == 1
    assert "| latency | FAIL |" in run.row("latency")
    assert json.loads(results.read_text(encoding="utf-8"))["p95_ms"] > 10


@pytest.mark.parametrize(
    "reference",
    [
        "ghcr.io/luna-app/luna-web:1.4.2",
        "ghcr.io/luna-app/luna-web@sha256:" + "a" * 64,
        "registry.example:5000/luna/web:2024.10.1-rc.1@sha256:" + "0" * 64,
    ],
)
def test_pinned_image_is_accepted(reference: str) -> None:
    run = smoke("image", reference)
    assert run.code == 0, run.stderr


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("ghcr.io/luna-app/luna-web:latest", "latest"),
        ("ghcr.io/luna-app/luna-web", "neither a tag nor a digest"),
        ("ghcr.io/luna-app/luna-web@sha256:short", "not an image reference"),
        ("ghcr.io/luna-app/luna-web:1.0\n::error::forged", "not an image reference"),
        ("", "not an image reference"),
    ],
)
def test_unpinned_image_is_refused(reference: str, reason: str) -> None:
    run = smoke("image", reference)
    assert run.code == 1
    assert reason in run.stderr
    assert "\n::" not in run.stderr, "untrusted input reached the log unescaped"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "required"),
        (("check",), "--url"),
        (("check", "--url", "http://luna.example"), "must be an https:// URL"),
        (("check", "--url", "https://luna.example", "--only", "health,nope"), "--only takes"),
        (("check", "--url", "https://luna.example", "--only", "outputs"), "needs --outputs-json"),
        (("check", "--url", "https://luna.example", "--crisis-budget-ms", "-5"), "positive"),
        (("check", "--url", "https://luna.example", "--wait", "-1"), "zero or a positive"),
        (("perf", "--url", "https://luna.example", "--json", "x", "--requests", "0"), "at least 1"),
        (("check", "--url", "https://luna.example", "--cafile", "/nonexistent"), "does not exist"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    run = smoke(*args)
    assert run.code == 2, f"{args}: exit {run.code}"
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], f"{args}: {run.stderr!r}"
    # Sub-command errors too name the tool, not "smoke_check check" (scripts/lib/cli.py).
    assert lines[0].startswith("smoke_check: error: "), f"{args}: {lines[0]!r}"
    assert run.stdout == ""

"""HTTP, TLS and header checks of a deployed HTTPS site, standard library only.

One implementation of the edge's rules, used by scripts/smoke_check.py (after
every deploy) and scripts/audit_site.py (per audited page): TLS 1.2+ only, HSTS
of a year or more, and the security headers nginx sets
(components/configs/nginx.py).
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from lib.cli import UsageError

__all__ = [
    "MAX_BODY",
    "USER_AGENT",
    "Options",
    "Response",
    "Result",
    "Target",
    "check_headers",
    "check_hsts",
    "check_tls",
    "client_context",
    "failure",
    "fetch",
    "header_problems",
]

ONE_YEAR_S = 31_536_000
MAX_BODY = 1 << 20
USER_AGENT = "luna-smoke-check/1"
# Referrer policies that send the full URL (with its path, which can name a
# patient's page) to other origins.
LEAKY_REFERRER_POLICIES = frozenset({"unsafe-url", "no-referrer-when-downgrade"})


@dataclass(frozen=True)
class Target:
    """The HTTPS base URL under test, split for http.client."""

    url: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise UsageError(f"--url must be an https:// URL, got {url!r}")
        try:
            port = parts.port or 443
        except ValueError as exc:
            raise UsageError(f"--url has an invalid port: {url!r}") from exc
        return cls(url, parts.hostname, port, parts.path.rstrip("/"))

    def path(self, path: str) -> str:
        return self.base_path + (path if path.startswith("/") else "/" + path)


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed_ms: float


@dataclass(frozen=True)
class Options:
    target: Target
    cafile: str | None
    timeout: float


@dataclass(frozen=True)
class Result:
    """The outcome of one check, one row of the report."""

    name: str
    ok: bool
    detail: str


def client_context(cafile: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def fetch(opts: Options, path: str) -> Response:
    """GET one path over a new connection, without following redirects."""
    conn = http.client.HTTPSConnection(
        opts.target.host,
        opts.target.port,
        context=client_context(opts.cafile),
        timeout=opts.timeout,
    )
    start = time.perf_counter()
    try:
        conn.request("GET", opts.target.path(path), headers={"User-Agent": USER_AGENT})
        response = conn.getresponse()
        body = response.read(MAX_BODY)
        elapsed_ms = (time.perf_counter() - start) * 1000
        return Response(response.status, response.headers, body, elapsed_ms)
    finally:
        conn.close()


def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _handshake(opts: Options, ctx: ssl.SSLContext) -> str:
    with (
        socket.create_connection((opts.target.host, opts.target.port), opts.timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=opts.target.host) as tls,
    ):
        return tls.version() or "unknown"


def _legacy_context(cafile: str | None) -> ssl.SSLContext:
    """A client that offers only TLS 1.0 and 1.1, to see whether the server takes them."""
    ctx = ssl.create_default_context(cafile=cafile)
    # Python deprecates these versions; offering them is the point of this probe.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    # OpenSSL 3's default security level forbids TLS < 1.2 on the client side too;
    # without level 0 the probe would "pass" without ever reaching the server.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


# What a server that will not speak TLS 1.0/1.1 answers: an alert, a reply in a
# newer version, or a closed connection. Any other error was raised locally.
_REFUSALS = frozenset(
    {"UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING"}
)


def _server_refused(exc: ssl.SSLError) -> bool:
    reason = exc.reason or ""
    return isinstance(exc, ssl.SSLEOFError) or "ALERT" in reason or reason in _REFUSALS


def check_tls(opts: Options) -> Result:
    try:
        modern = _handshake(opts, client_context(opts.cafile))
    except (OSError, ssl.SSLError) as exc:
        return Result("tls", False, f"TLS 1.2+ handshake failed: {failure(exc)}")
    try:
        legacy = _handshake(opts, _legacy_context(opts.cafile))
    except ssl.SSLError as exc:
        if not _server_refused(exc):
            # e.g. NO_CIPHERS_AVAILABLE: the probe never left this machine.
            return Result(
                "tls",
                False,
                f"negotiated {modern}, but this machine could not offer TLS 1.0/1.1 "
                f"({exc.reason}), so their refusal is unverified",
            )
        return Result("tls", True, f"negotiated {modern}; TLS 1.0/1.1 refused ({exc.reason})")
    except OSError as exc:
        # A server may simply drop a ClientHello it will not serve.
        return Result("tls", True, f"negotiated {modern}; TLS 1.0/1.1 refused ({failure(exc)})")
    return Result("tls", False, f"server accepted {legacy}; only TLS 1.2 and later may be served")


def check_hsts(opts: Options, path: str) -> Result:
    try:
        response = fetch(opts, path)
    except (OSError, http.client.HTTPException) as exc:
        return Result("hsts", False, f"GET {path}: {failure(exc)}")
    value = response.headers.get("Strict-Transport-Security")
    if value is None:
        return Result("hsts", False, f"GET {path}: no Strict-Transport-Security header")
    match = re.search(r"(?:^|;)\s*max-age\s*=\s*\"?(\d+)\"?", value, re.IGNORECASE)
    if match is None:
        return Result("hsts", False, f"Strict-Transport-Security has no max-age: {value!r}")
    max_age = int(match.group(1))
    if max_age < ONE_YEAR_S:
        return Result("hsts", False, f"max-age={max_age} is under one year ({ONE_YEAR_S})")
    subdomains = (
        "includeSubDomains" if "includesubdomains" in value.lower() else "no includeSubDomains"
    )
    return Result("hsts", True, f"max-age={max_age}, {subdomains}")


def header_problems(headers: http.client.HTTPMessage) -> list[str]:
    """What is missing or weak among the security headers, empty when all is well."""
    problems: list[str] = []
    nosniff = headers.get("X-Content-Type-Options")
    if nosniff is None:
        problems.append("X-Content-Type-Options missing")
    elif nosniff.strip().lower() != "nosniff":
        problems.append(f"X-Content-Type-Options is {nosniff!r}, expected 'nosniff'")
    frame = headers.get("X-Frame-Options")
    if frame is None:
        problems.append("X-Frame-Options missing")
    elif frame.strip().upper() not in {"DENY", "SAMEORIGIN"}:
        problems.append(f"X-Frame-Options is {frame!r}, expected DENY or SAMEORIGIN")
    referrer = headers.get("Referrer-Policy")
    if referrer is None:
        problems.append("Referrer-Policy missing")
    else:
        policies = {p.strip().lower() for p in referrer.split(",")}
        if policies & LEAKY_REFERRER_POLICIES:
            problems.append(f"Referrer-Policy {referrer!r} sends full URLs to other origins")
    csp = headers.get("Content-Security-Policy")
    if csp is None or not csp.strip():
        problems.append("Content-Security-Policy missing")
    return problems


def check_headers(opts: Options, path: str) -> Result:
    try:
        response = fetch(opts, path)
    except (OSError, http.client.HTTPException) as exc:
        return Result("headers", False, f"GET {path}: {failure(exc)}")
    problems = header_problems(response.headers)
    if problems:
        return Result("headers", False, f"GET {path}: " + "; ".join(problems))
    return Result("headers", True, f"GET {path}: nosniff, X-Frame-Options, Referrer-Policy, CSP")

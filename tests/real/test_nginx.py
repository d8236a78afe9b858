"""The rendered nginx.conf, run by a real nginx in front of stand-in app replicas.

Adaptations to this host, each an asserted substitution: certificate paths
(to a test pair from openssl), ``/tmp`` (to a private temp dir) and the listen
ports (to free ports on 127.0.0.1). The app is found as each platform finds it:
- Kubernetes: a static upstream ``app:3000`` (the Service), substituted with a
  stand-in's host:port (nginx resolves it once at start either way);
- Docker: ``resolver 127.0.0.11`` and the name ``app``, looked up per request.
  The resolver becomes a stand-in of Docker's embedded DNS (tests/real/dns.py)
  that answers ``app`` with one loopback address per stand-in replica, and the
  port 3000 the stand-ins' common port.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import math
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from infra.program import crisis_prefix
from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.dns import ReplicaDns, replica_dns
from tests.real.support import (
    Daemon,
    RenderedStack,
    StandIn,
    free_port,
    free_ports,
    standins,
    substitute,
    wait_for_port,
)
from tests.real.tls_front import edge_to_front, start_front
from tests.support.tls import TlsPair, make_tls_pair
from tests.support.tools import REPO, need

pytestmark = pytest.mark.slow

NGINX_CONF = "/etc/nginx/luna/nginx.conf"
REQUIRED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
ONE_YEAR_S = 365 * 24 * 3600


@dataclass
class Edge:
    stack: RenderedStack
    nginx: Daemon
    apps: list[StandIn]
    http_port: int
    https_port: int
    status_port: int
    cert: Path
    dns: ReplicaDns | None = None
    """Docker: the embedded DNS stand-in that lists the replicas."""
    app_port: int = 0

    def answered_by_app(self, body: str) -> bool:
        return bool(body.split()) and body.split()[0] in {a.ident for a in self.apps}

    @property
    def server_name(self) -> str:
        host = self.stack.setting("appUrl").split("://", 1)[1]
        return host.split(":")[0].rstrip("/")

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def https_conn(self) -> http.client.HTTPSConnection:
        return _SniHTTPSConnection(
            "127.0.0.1", self.https_port, self.server_name, context=self.tls_context(), timeout=10
        )

    def get(
        self,
        path: str,
        *,
        conn: http.client.HTTPConnection | None = None,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        own = conn is None
        c = conn or self.https_conn()
        try:
            c.request(
                method, path, body=body, headers={"Host": self.server_name, **(headers or {})}
            )
            resp = c.getresponse()
            text = resp.read().decode(errors="replace")
            return resp.status, dict(resp.getheaders()), text
        finally:
            if own:
                c.close()


class _SniHTTPSConnection(http.client.HTTPSConnection):
    """Connects to 127.0.0.1 but sends SNI and checks the certificate for ``server_name``."""

    def __init__(
        self, host: str, port: int, server_name: str, *, context: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._ctx = context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self._server_name)


def adapt(
    conf: str,
    *,
    stack: str,
    tmp: Path,
    cert: TlsPair,
    ports: dict[str, int],
    upstreams: dict[str, str],
    resolver: str | None = None,
) -> str:
    what = f"{stack}: {NGINX_CONF}"
    # pid and the five *_temp_path directives (first: the test paths below are in /tmp too).
    conf = substitute(conf, " /tmp/", f" {tmp}/", count=6, what=what)
    conf = substitute(
        conf,
        "ssl_certificate /etc/nginx/luna/tls/tls.crt;",
        f"ssl_certificate {cert.cert};",
        what=what,
    )
    conf = substitute(
        conf,
        "ssl_certificate_key /etc/nginx/luna/tls/tls.key;",
        f"ssl_certificate_key {cert.key};",
        what=what,
    )
    # Container ports (8080 http, 8443 https, 8081 status) to free loopback ports.
    for directive, port in ports.items():
        container_port = directive.split()[1].rstrip(";")
        local = directive.replace(f"listen {container_port}", f"listen 127.0.0.1:{port}")
        conf = substitute(conf, directive, local, what=what)
    for address, local in upstreams.items():
        if resolver is None:
            conf = substitute(conf, f"server {address} ", f"server {local} ", what=what)
        else:
            conf = substitute(conf, f'"{address}"', f'"{local}"', what=what)
    if resolver is not None:
        conf = substitute(conf, "resolver 127.0.0.11 ", f"resolver {resolver} ", what=what)
    return conf


def upstream_addresses(conf: str) -> list[str]:
    """The static upstream's servers, or the name resolved per request."""
    block = re.search(r"upstream luna_app \{(.*?)\}", conf, re.S)
    if block:
        return re.findall(r"^\s*server (\S+)", block.group(1), re.M)
    dynamic = re.findall(r'^\s*set \$luna_app "(\S+)";', conf, re.M)
    assert dynamic, "nginx.conf has neither an upstream block nor a resolved name"
    return dynamic


@pytest.fixture(params=FULL_STACK_PARAMS, ids=stack_id)
def edge(
    request: pytest.FixtureRequest, stacks: Callable[[str, str], RenderedStack], tls_pair: TlsPair
) -> Iterator[Edge]:
    nginx = need("nginx")
    stack = stacks(*request.param)
    conf = stack.file("proxy", NGINX_CONF)
    addresses = upstream_addresses(conf)
    replicas = int(stack.setting("appReplicas"))
    docker = stack.platform == "docker"
    # Kubernetes: the edge reaches the app's TLS front (its sidecar), verified.
    want = "app:3000" if docker else "app:3443"
    assert addresses == [want], f"{stack.stack}/{stack.platform}: nginx upstream {addresses}"
    assert ("resolver 127.0.0.11 " in conf) is docker, f"{stack.stack}/{stack.platform}: resolver"
    # Not tmp_path: nginx workers drop to an unprivileged user and must reach
    # the temp dirs, and pytest's base dir is 0700.
    tmp = Path(tempfile.mkdtemp(prefix="luna-nginx-"))
    tmp.chmod(0o755)
    idents = [f"app-{i}" for i in range(replicas)] if docker else ["app"]
    app_port = free_port()
    with contextlib.ExitStack() as stack_ctx:
        stack_ctx.callback(shutil.rmtree, tmp, ignore_errors=True)
        dns = stack_ctx.enter_context(replica_dns()) if docker else None
        hosts = [replica_host(i) for i in range(len(idents))] if docker else []
        apps = stack_ctx.enter_context(standins(idents, hosts=hosts, port=app_port))
        for app in apps if dns else []:
            dns.add("app", app.host)  # type: ignore[union-attr]
        upstream = f"app:{app_port}" if dns else apps[0].address
        app_ca: Path | None = None
        if not docker:
            # The app pod's sidecar, as rendered, with a certificate for "app".
            app_tls = make_tls_pair(_subdir(tmp, "app-tls"), common_name="app",
                                    alt_names="DNS:app")  # fmt: skip
            front = start_front(stack, _subdir(tmp, "front"), app_tls, apps[0].address)
            stack_ctx.callback(front.daemon.stop)
            app_ca, upstream = app_tls.cert, f"127.0.0.1:{front.port}"
        http_port, https_port, status_port = free_ports(3)
        ports = {
            "listen 8080;": http_port,
            "listen 8080 default_server;": http_port,
            "listen 8443 ssl;": https_port,
            "listen 8443 ssl default_server;": https_port,
            "listen 8081;": status_port,
        }
        conf = adapt(
            conf,
            stack=stack.stack,
            tmp=tmp,
            cert=tls_pair,
            ports=ports,
            upstreams={want: upstream},
            resolver=f"127.0.0.1:{dns.port}" if dns else None,
        )
        if app_ca is not None:
            conf = edge_to_front(conf, stack=stack.stack, ca=app_ca)
        (tmp / "nginx.conf").write_text(conf)
        daemon = Daemon(
            [nginx, "-e", "stderr", "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
             "-g", "daemon off;"],
            log=tmp / "nginx.log",
        )  # fmt: skip
        stack_ctx.callback(daemon.stop)
        for port in (http_port, https_port, status_port):
            wait_for_port(port, proc=daemon.proc, what=f"{stack.stack} nginx", log=daemon.log)
        yield Edge(
            stack=stack,
            nginx=daemon,
            apps=apps,
            http_port=http_port,
            https_port=https_port,
            status_port=status_port,
            cert=tls_pair.cert,
            dns=dns,
            app_port=app_port,
        )


def _subdir(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir(mode=0o755)
    return path


def replica_host(index: int) -> str:
    """A loopback address of its own per replica, as each container has its own IP."""
    return f"127.0.0.{10 + index}"


def test_http_redirects_to_https(edge: Edge) -> None:
    public = int(edge.stack.setting("httpsPort"))
    expected_host = edge.server_name + ("" if public == 443 else f":{public}")
    for method in ("GET", "POST"):
        c = http.client.HTTPConnection("127.0.0.1", edge.http_port, timeout=10)
        try:
            status, headers, body = edge.get("/journal/entry?id=7", conn=c, method=method)
        finally:
            c.close()
        assert status == 301, f"{edge.stack.stack}: plain HTTP {method} answered {status}"
        assert headers["Location"] == f"https://{expected_host}/journal/entry?id=7", (
            f"{edge.stack.stack}: nginx.conf redirects to {headers['Location']}"
        )
        assert not edge.answered_by_app(body), f"{edge.stack.stack}: plain HTTP reached the app"
    # Host headers nginx still files under the configured name (the part before ':' is
    # the name, ngx_http_validate_host in src/http/ngx_http_request.c): the redirect
    # still names the configured host, never what the client sent (an open redirect:
    # https://luna-app.com:@evil.example/ is evil.example to a browser).
    for host in (f"{edge.server_name}:@evil.example", f"{edge.server_name}:1@evil.example",
                 edge.server_name.upper(), f"{edge.server_name}."):  # fmt: skip
        c = http.client.HTTPConnection("127.0.0.1", edge.http_port, timeout=10)
        try:
            status, headers, _ = edge.get("/journal/entry?id=7", conn=c, headers={"Host": host})
        except http.client.RemoteDisconnected:
            continue  # closed without an answer (444): no redirect at all
        finally:
            c.close()
        location = headers.get("Location")
        assert status == 400 or location == f"https://{expected_host}/journal/entry?id=7", (
            f"{edge.stack.stack}: Host {host!r} got {status}, redirected to {location}"
        )


def _handshake(edge: Edge, version: ssl.TLSVersion, port: int | None = None) -> str:
    """Handshake pinned to one TLS version; returns the negotiated version."""
    with warnings.catch_warnings():
        # TLSv1/TLSv1_1 are deprecated names: we use them on purpose, to be refused.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = version
        ctx.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            # Let the client offer old protocols at all (OpenSSL 3 forbids them at level 1).
            ctx.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port or edge.https_port), 10) as raw,
        ctx.wrap_socket(raw, server_hostname=edge.server_name) as tls,
    ):
        return str(tls.version())


def _old_tls_server(cert: Path, key: Path) -> tuple[socket.socket, threading.Thread, list[str]]:
    """A Python TLS server that accepts TLS 1.0-1.3: the control for the client."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[str] = []

    def serve() -> None:
        conn, _addr = listener.accept()
        with conn:
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    seen.append(str(tls.version()))
            except (ssl.SSLError, OSError) as error:
                seen.append(f"error: {error}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, seen


@pytest.mark.parametrize(
    ("old", "name"),
    [(ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1")],
    ids=["tls1.0", "tls1.1"],
)
def test_old_tls_refused_by_nginx_tls12_and_13_accepted(
    edge: Edge, old: ssl.TLSVersion, name: str, tls_pair: TlsPair
) -> None:
    # Control: the same client completes a TLS 1.0/1.1 handshake with a server
    # that allows it, so a refusal below is nginx's doing, not the client's.
    listener, thread, seen = _old_tls_server(tls_pair.cert, tls_pair.key)
    try:
        control = _handshake(edge, old, port=listener.getsockname()[1])
    finally:
        thread.join(5)
        listener.close()
    assert control == name, f"control server negotiated {control} ({seen})"

    with pytest.raises(ssl.SSLError) as refused:
        _handshake(edge, old)
    assert "PROTOCOL_VERSION" in refused.value.reason.upper() or "UNSUPPORTED_PROTOCOL" in (
        str(refused.value.reason).upper()
    ), f"{edge.stack.stack}: {old.name} failed, but not by protocol version: {refused.value}"
    assert _handshake(edge, ssl.TLSVersion.TLSv1_2) == "TLSv1.2", edge.stack.stack
    assert _handshake(edge, ssl.TLSVersion.TLSv1_3) == "TLSv1.3", edge.stack.stack


def test_tls12_cipher_is_forward_secret_aead(edge: Edge) -> None:
    ctx = edge.tls_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", edge.https_port), 10) as raw,
        ctx.wrap_socket(raw, server_hostname=edge.server_name) as tls,
    ):
        cipher = tls.cipher()
    assert cipher is not None
    name = cipher[0]
    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), (
        f"{edge.stack.stack}: nginx negotiated {name} over TLS 1.2"
    )


def _assert_security_headers(edge: Edge, headers: dict[str, str], what: str) -> None:
    stack = edge.stack.stack
    hsts = headers.get("Strict-Transport-Security", "")
    match = re.fullmatch(r"max-age=(\d+); includeSubDomains", hsts)
    assert match and int(match.group(1)) >= ONE_YEAR_S, f"{stack}: {what}: HSTS is {hsts!r}"
    for name, value in REQUIRED_HEADERS.items():
        assert headers.get(name) == value, f"{stack}: {what}: {name} is {headers.get(name)!r}"
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), (
        f"{stack}: {what}: CSP is {headers.get('Content-Security-Policy')!r}"
    )
    assert "camera=()" in headers.get("Permissions-Policy", ""), f"{stack}: {what}"
    assert headers.get("Server") == "nginx", f"{stack}: {what}: Server {headers.get('Server')!r}"
    assert "X-Powered-By" not in headers, f"{stack}: {what}: the app's X-Powered-By leaks"


def test_security_headers_on_proxied_and_error_responses(edge: Edge) -> None:
    status, headers, body = edge.get("/")
    assert status == 200 and edge.answered_by_app(body), f"{edge.stack.stack}: {status} {body!r}"
    _assert_security_headers(edge, headers, "proxied 200")
    status, headers, _ = edge.get("/nope", method="POST", body=b"x" * (_limit(edge) + 1))
    assert status == 413
    _assert_security_headers(edge, headers, "413 error page")


def _answers(edge: Edge, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for i in range(n):
        status, _, body = edge.get(f"/api/mood?i={i}")
        assert status == 200, f"{edge.stack.stack}: request {i} got {status}: {body!r}"
        seen[body.split()[0]] += 1
    return seen


# nginx balances only where it sees each replica (Docker: every address the
# embedded DNS gives for `app`). On Kubernetes its one upstream is the app
# Service, whose endpoints (ready pods) do the spreading and the failover, so
# these two run on Docker only.
MULTI_UPSTREAM = [p for p in FULL_STACK_PARAMS if p[1] == "docker"]


@pytest.mark.parametrize("edge", MULTI_UPSTREAM, ids=stack_id, indirect=True)
def test_requests_spread_across_every_replica(edge: Edge) -> None:
    """Each request's replica is a fair draw: nginx starts each cached answer at a
    random address (ngx_resolver.c, ngx_resolver_export with rotate), so a replica's
    count is binomial. 30 requests a replica, and at least a third of its share: a
    fair spread falls short with odds under 1e-6. At 12 a replica and half its share,
    prod's three replicas fell short once in a CI run ({'app-1': 16, 'app-0': 15,
    'app-2': 5}), odds of 2.3 %; a starved replica still gets none or a few."""
    n = 30 * len(edge.apps)
    seen = _answers(edge, n)
    assert len(edge.apps) >= 2, f"{edge.stack.stack}: only {len(edge.apps)} upstream"
    print(f"{edge.stack.stack}: {n} requests -> {dict(sorted(seen.items()))}")
    for app in edge.apps:
        assert seen[app.ident] >= n // len(edge.apps) // 3, (
            f"{edge.stack.stack}: distribution {dict(seen)} starves {app.ident}"
        )


@pytest.mark.parametrize("edge", MULTI_UPSTREAM, ids=stack_id, indirect=True)
def test_dead_replica_is_routed_around(edge: Edge) -> None:
    dead = edge.apps[0]
    dead.kill()
    seen = _answers(edge, 6 * len(edge.apps))
    assert dead.ident not in seen, f"{edge.stack.stack}: {dead.ident} answered after dying"
    assert set(seen) == {a.ident for a in edge.apps[1:]}, f"{edge.stack.stack}: {dict(seen)}"
    print(f"{edge.stack.stack}: {dead.ident} killed -> {dict(sorted(seen.items()))}")
    # nginx tried the dead one and moved on (not merely never picked it): the
    # access log's upstream list names it with a 502 before the replica that
    # answered. (The error log keeps crit only: its lines carry the client.)
    tried = [line for line in edge.nginx.output().splitlines() if dead.address in line]
    assert any('us="502, 200' in line for line in tried), (
        f"{edge.stack.stack}: the access log never showed the dead upstream tried: {tried[:3]}"
    )


def test_proxy_health_endpoints_answer_without_the_app(edge: Edge) -> None:
    for app in edge.apps:
        app.kill()
    stack = edge.stack.stack
    plain = http.client.HTTPConnection("127.0.0.1", edge.http_port, timeout=10)
    status_conn = http.client.HTTPConnection("127.0.0.1", edge.status_port, timeout=10)
    try:
        assert edge.get("/healthz", conn=plain)[::2] == (200, "ok\n"), f"{stack}: http /healthz"
        assert edge.get("/healthz")[::2] == (200, "ok\n"), f"{stack}: https /healthz"
        assert edge.get("/healthz", conn=status_conn)[::2] == (200, "ok\n"), f"{stack}: status"
        status, _, body = edge.get("/stub_status", conn=status_conn)
        assert status == 200 and body.startswith("Active connections"), f"{stack}: stub_status"
    finally:
        plain.close()
        status_conn.close()
    # With every replica dead, app paths fail while the proxy stays healthy.
    assert edge.get("/")[0] == 502, f"{stack}: / with no replica alive"


def _limit(edge: Edge) -> int:
    return int(edge.stack.setting("clientMaxBodyMb")) * 1024 * 1024


def test_body_over_limit_gets_413_and_at_limit_reaches_the_app(edge: Edge) -> None:
    limit = _limit(edge)
    status, _, body = edge.get("/api/upload", method="POST", body=b"a" * limit)
    assert status == 200 and body.split()[1] == str(limit), (
        f"{edge.stack.stack}: a body of exactly {limit} bytes got {status} {body!r}"
    )
    status, _, body = edge.get("/api/upload", method="POST", body=b"a" * (limit + 1))
    assert status == 413, f"{edge.stack.stack}: a body of {limit + 1} bytes got {status}"
    assert not edge.answered_by_app(body), f"{edge.stack.stack}: the oversized body reached the app"


def test_access_log_keeps_no_query_string_header_or_full_client_address(edge: Edge) -> None:
    stack = edge.stack.stack
    query = "email=jane.doe%40example.com&phone=%2B44%2020%207946%200958&mail=sam@example.net"
    headers = {
        "Host": edge.server_name,
        "User-Agent": "Mozilla/5.0 (patient-device-7788)",
        "Referer": "https://luna-app.com/crisis?name=Jane+Doe",
        "X-Forwarded-For": "198.51.100.23",
        "Cookie": "session=s3cr3t-cookie-value",
    }
    conn = edge.https_conn()
    try:
        conn.request("GET", f"/api/journal/search?{query}", headers=headers)
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 200, f"{stack}: the search answered {resp.status}"
    # nginx writes the line in its log phase, after the response has gone out.
    lines = _wait_for_lines(edge, "/api/journal/search", 1)
    print(f"\n{stack}/{edge.stack.platform}: access log lines {lines}")
    assert len(lines) == 1, f"{stack}: access log lines {lines}"
    log = "\n".join(lines)
    for secret in (
        "jane.doe", "%40example", "example.com", "7946%200958", "%2B44", "sam@example.net",
        "patient-device-7788", "Jane+Doe", "198.51.100.23", "s3cr3t-cookie-value", "?",
        "127.0.0.1 ",
    ):  # fmt: skip
        assert secret not in log, f"{stack}: the access log keeps {secret!r}: {lines}"
    # The line keeps the client's network, never its address.
    assert lines[0].startswith('127.0.0.0 "GET /api/journal/search HTTP/1.1" 200 '), (
        f"{stack}: {lines[0]}"
    )


def _wait_for_lines(edge: Edge, needle: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in edge.nginx.output().splitlines() if needle in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _pipeline_check(edge: Edge, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run scripts/smoke_check.py as the pipeline does, with the stack's name resolving
    to loopback (a private mount namespace's /etc/hosts; nothing changes outside it)."""
    hosts = tmp / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {edge.server_name}\n")
    url = f"https://{edge.server_name}:{edge.https_port}"
    command = [
        sys.executable, str(REPO / "scripts" / "smoke_check.py"), "check", "--url", url,
        "--cafile", str(edge.cert), *args,
    ]  # fmt: skip
    script = f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec {shlex.join(command)}"
    return subprocess.run(
        [need("unshare"), "-m", "sh", "-c", script],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_pipeline_smoke_and_crisis_checks_pass_against_the_demo_app_behind_the_edge(
    edge: Edge, tmp_path: Path
) -> None:
    """The post-deploy smoke check (health, TLS, HSTS, headers, crisis) and the crisis
    job's check (20 samples, p95 within the stack's budget), exactly as
    .github/workflows/pipeline.yml runs them, against nginx with the rendered
    config in front of the demo app."""
    smoke = _pipeline_check(edge, tmp_path, "--wait", "10")
    assert smoke.returncode == 0, f"{edge.stack.stack}: smoke check failed\n{smoke.stdout}"
    budget = edge.stack.setting("crisisLatencyBudgetMs")
    crisis = _pipeline_check(
        edge, tmp_path, "--only", "crisis", "--crisis-path", edge.stack.setting("crisisPath"),
        "--crisis-budget-ms", budget, "--crisis-samples", "20", "--crisis-stat", "p95",
    )  # fmt: skip
    assert crisis.returncode == 0, f"{edge.stack.stack}: crisis check failed\n{crisis.stdout}"
    print(f"\n{edge.stack.stack}/{edge.stack.platform}:\n{smoke.stdout}{crisis.stdout}")


SPOOF = {"X-Forwarded-For": "203.0.113.66", "X-Real-IP": "203.0.113.66", "Forwarded": "for=6.6.6.6"}


def _crisis_prefix(edge: Edge) -> str:
    return crisis_prefix(edge.stack.setting("crisisPath"))


def test_spoofed_forwarded_for_does_not_reach_the_app(edge: Edge) -> None:
    stack = f"{edge.stack.stack}/{edge.stack.platform}"
    for path in ("/journal", "/api/auth/session", _crisis_prefix(edge) + "x"):
        status, headers, body = edge.get(path, headers=SPOOF)
        assert status == 200 and edge.answered_by_app(body), f"{stack}: {path} got {status}"
        seen = {k.removeprefix("X-Seen-"): v for k, v in headers.items() if k.startswith("X-Seen")}
        # The stand-in's only peer address is nginx's connection from 127.0.0.1.
        assert seen["X-Forwarded-For"] == "127.0.0.1", f"{stack}: {path}: app saw XFF {seen}"
        assert seen["X-Real-IP"] == "127.0.0.1", f"{stack}: {path}: app saw {seen}"
        assert seen["Forwarded"] == "-", f"{stack}: {path}: the client's Forwarded passed: {seen}"
        assert seen["Host"] == edge.server_name, f"{stack}: {path}: Host {seen['Host']}"


def _raw_tls(edge: Edge, sni: str) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", edge.https_port), 10)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def test_unknown_host_is_refused(edge: Edge) -> None:
    stack = f"{edge.stack.stack}/{edge.stack.platform}"
    # Control: the configured name reaches the app.
    status, _, body = edge.get("/")
    assert status == 200 and edge.answered_by_app(body), f"{stack}: control got {status}"
    # An unknown name in SNI: no handshake at all.
    with pytest.raises(ssl.SSLError) as refused:
        _raw_tls(edge, "evil.example").close()
    assert "UNRECOGNIZED_NAME" in str(refused.value).upper(), f"{stack}: {refused.value}"
    # The right SNI with another Host header: 421, and the app never sees it.
    status, _, body = edge.get("/", headers={"Host": "evil.example"})
    assert status == 421 and not edge.answered_by_app(body), f"{stack}: unknown Host got {status}"
    # Plain HTTP with an unknown Host: closed without an answer (444), no redirect.
    plain = http.client.HTTPConnection("127.0.0.1", edge.http_port, timeout=10)
    try:
        with pytest.raises(http.client.RemoteDisconnected):
            edge.get("/", conn=plain, headers={"Host": "evil.example"})
    finally:
        plain.close()


def test_auth_is_rate_limited_while_the_crisis_path_never_is(edge: Edge) -> None:
    stack = f"{edge.stack.stack}/{edge.stack.platform}"
    conf = edge.stack.file("proxy", NGINX_CONF)
    rate = re.search(r"zone=luna_auth:\S+ rate=(\d+)r/m;", conf)
    burst = re.search(r"limit_req zone=luna_auth burst=(\d+) nodelay;", conf)
    assert rate and burst, f"{stack}: no auth rate limit in nginx.conf"
    per_min, allowed_burst = int(rate.group(1)), int(burst.group(1))
    crisis = _crisis_prefix(edge)
    assert f"location ^~ {crisis} {{" in conf, f"{stack}: no crisis location for {crisis}"
    n = 40
    paths = [p for i in range(n) for p in (f"/api/auth/callback?i={i}", f"{crisis}chat?i={i}")]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda p: (p, edge.get(p, method="POST", body=b"{}")), paths))
    elapsed = time.monotonic() - started
    auth = Counter(r[0] for p, r in results if p.startswith("/api/auth/"))
    crisis_seen = Counter(r[0] for p, r in results if p.startswith(crisis))
    print(f"{stack}: {n} auth + {n} crisis requests in {elapsed:.2f}s: auth {dict(auth)}, "
          f"crisis {dict(crisis_seen)}")  # fmt: skip
    ceiling = allowed_burst + 1 + math.ceil(elapsed * per_min / 60)
    assert auth[200] <= ceiling, f"{stack}: {auth[200]} auth requests passed, limit {ceiling}"
    assert auth[429] >= n - ceiling and set(auth) <= {200, 429}, f"{stack}: auth {dict(auth)}"
    assert crisis_seen == Counter({200: n}), f"{stack}: crisis refusals {dict(crisis_seen)}"
    for _path, (status, _, body) in results:
        if status == 429:
            assert not edge.answered_by_app(body), f"{stack}: a 429 came from the app"


# A loopback address of its own, so a full client address is easy to find in a log
# (the upstream stand-ins listen on 127.0.0.1 and 127.0.0.1x).
PHI_CLIENT = "127.0.0.77"
PHI_QUERY = "q=suicidal+thoughts&dob=1984-03-02&email=jane.doe%40example.com&dx=F32.1"
PHI_BODY = b'{"note":"Mrs Jane Doe, born 02/03/1984, F33.2, wants to end it all"}'
PHI_MARKERS = (
    # Whole dates, not the bare year: a random request id or port may hold "1984".
    PHI_CLIENT, "suicidal", "1984-03-02", "02/03/1984", "jane.doe", "F32.1", "F33.2",
    "Jane Doe", "end it", "?q=", "client:", "request:",
)  # fmt: skip


def _send_from_client(edge: Edge, method: str, path: str, body: bytes | None) -> int:
    """One request over TLS from PHI_CLIENT's address."""
    ctx = edge.tls_context()
    raw = socket.create_connection(
        ("127.0.0.1", edge.https_port), 10, source_address=(PHI_CLIENT, 0)
    )
    conn = http.client.HTTPSConnection("127.0.0.1", edge.https_port, context=ctx, timeout=10)
    conn.sock = ctx.wrap_socket(raw, server_hostname=edge.server_name)
    try:
        headers = {"Host": edge.server_name, "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_rate_limited_and_upstream_failed_requests_leave_no_phi_in_any_log(edge: Edge) -> None:
    """429 and 502 are where nginx's error log writes `client: <address>, request:
    "<method> <uri with query>"`; neither log may keep the query string, the body
    or the full client address (issue 20 defect 5, issue 23)."""
    stack = f"{edge.stack.stack}/{edge.stack.platform}"
    conf = edge.stack.file("proxy", NGINX_CONF)
    burst = re.search(r"limit_req zone=luna_auth burst=(\d+) nodelay;", conf)
    assert burst, f"{stack}: no auth rate limit"
    n = int(burst.group(1)) + 6
    limited = [
        _send_from_client(edge, "POST", f"/api/auth/signin?{PHI_QUERY}", PHI_BODY) for _ in range(n)
    ]
    assert 429 in limited, f"{stack}: never rate-limited: {Counter(limited)}"
    for app in edge.apps:
        app.kill()
    failed = [
        _send_from_client(edge, "GET", f"/api/journal?{PHI_QUERY}", None),
        _send_from_client(edge, "POST", f"/api/journal?{PHI_QUERY}", PHI_BODY),
    ]
    assert failed == [502, 502], f"{stack}: with every replica dead: {failed}"
    # The access log records both kinds, by status, from the client's network.
    auth_lines = _wait_for_lines(edge, '"POST /api/auth/signin HTTP/1.1"', n)
    journal_lines = _wait_for_lines(edge, " /api/journal HTTP/1.1", 2)
    assert len(auth_lines) == n and len(journal_lines) == 2, f"{stack}: access log incomplete"
    assert any(" 429 " in line for line in auth_lines), f"{stack}: no 429 in {auth_lines}"
    assert all(line.startswith('127.0.0.0 "') and " 502 " in line for line in journal_lines), (
        f"{stack}: {journal_lines}"
    )
    output = edge.nginx.output()
    print(f"\n{stack}: nginx output after {Counter(limited)} + {failed}:\n{output[-1500:]}")
    for marker in PHI_MARKERS:
        assert marker not in output, f"{stack}: nginx's logs keep {marker!r}"


INTERNAL_SPELLINGS = ("", "/", "?scrape=1", "/x", "/%2e%2e/metrics")


def test_edge_answers_404_for_the_apps_metrics_path(edge: Edge) -> None:
    """The app serves its metrics to anyone who reaches it; the edge never proxies
    them, in any spelling nginx normalises to the same path. Prometheus scrapes
    the app inside the network, at the app's own address."""
    stack = f"{edge.stack.stack}/{edge.stack.platform}"
    metrics = edge.stack.setting("metricsPath")
    upper = metrics.upper()
    # Control: the replica itself answers the path (so a 404 below is the edge's).
    with urllib.request.urlopen(f"http://{edge.apps[0].address}{metrics}", timeout=10) as direct:
        assert direct.status == 200, f"{stack}: the app does not serve {metrics}"
    head, _, tail = metrics.rpartition("/")
    spellings = [metrics + s for s in INTERNAL_SPELLINGS] + [
        upper, f"{head}//{tail}", f"{head}/./{tail}", f"{head}/%{ord(tail[0]):02x}{tail[1:]}",
    ]  # fmt: skip
    for path in spellings:
        status, _, body = edge.get(path)
        assert status == 404 and not edge.answered_by_app(body), (
            f"{stack}: {path} through the edge got {status} {body[:80]!r}"
        )
    # A longer name is another page: it still reaches the app.
    status, _, body = edge.get(metrics + "-history")
    assert edge.answered_by_app(body), f"{stack}: {metrics}-history got {status} {body[:80]!r}"
    prometheus = yaml.safe_load(edge.stack.file("prometheus", "/etc/prometheus/prometheus.yml"))
    app_jobs = [j for j in prometheus["scrape_configs"] if j.get("metrics_path") == metrics]
    targets = [t for j in app_jobs for c in j.get("static_configs", []) for t in c["targets"]]
    targets += [c["names"][0] for j in app_jobs for c in j.get("dns_sd_configs", [])]
    assert app_jobs and not any(edge.server_name in str(t) for t in targets), (
        f"{stack}: Prometheus does not scrape {metrics} inside: {app_jobs}"
    )


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/api/users/jane.doe%2Btherapy%40example.com", "/api/users"),
        ("/api/patients/555-123-4567/notes", "/api/patients"),
        ("/api/records/A123456780", "/api/records"),
        ("/jane.doe@example.com", "/..."),
    ],
)
def test_access_log_keeps_the_route_not_an_identifier_in_the_path(
    edge: Edge, path: str, route: str
) -> None:
    # A path can name a person: only its leading lowercase words are logged.
    edge.get(path)
    lines = _wait_for_lines(edge, f'"GET {route} HTTP/1.1"', 1)
    assert lines, f"{edge.stack.stack}: no access line with the route {route} for {path}"
    identifier = path.rsplit("/", 1)[-1] if route != "/..." else path[1:]
    for form in (identifier, "jane.doe", "555-123-4567", "A123456780", "%40"):
        assert not any(form in line for line in lines), f"{path}: the log keeps {form!r}: {lines}"

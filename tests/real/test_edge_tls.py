"""Kubernetes: the edge reaches the app over TLS and verifies it (issue 23).

Real nginx runs the rendered edge configuration and the rendered TLS front (the
app pod's sidecar, components/platforms/kubernetes/tls_front.py) in front of the
demo app. A request through the edge reaches the app only when the front shows
a certificate for ``app`` from the CA the edge trusts: one for another name, or
from another CA, is refused (502) and the app never sees the request.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.real.support import (
    Daemon,
    RenderedStack,
    free_ports,
    standins,
    substitute,
    wait_for_port,
)
from tests.real.tls_front import edge_to_front, start_front
from tests.support.tls import TlsPair, make_tls_pair
from tests.support.tools import need

pytestmark = pytest.mark.slow

EDGE_CONF = "/etc/nginx/luna/nginx.conf"


def _dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(mode=0o755)
    return path


def _edge(
    stack: RenderedStack,
    tmp: Path,
    edge_tls: TlsPair,
    front_port: int,
    ca: Path,
    *,
    verify: bool = True,
) -> tuple[Daemon, int]:
    conf = stack.file("proxy", EDGE_CONF)
    what = f"{stack.stack}: {EDGE_CONF}"
    conf = substitute(conf, " /tmp/", f" {tmp}/", count=6, what=what)
    conf = substitute(conf, "ssl_certificate /etc/nginx/luna/tls/tls.crt;",
                      f"ssl_certificate {edge_tls.cert};", what=what)  # fmt: skip
    conf = substitute(conf, "ssl_certificate_key /etc/nginx/luna/tls/tls.key;",
                      f"ssl_certificate_key {edge_tls.key};", what=what)  # fmt: skip
    http_port, https_port, status_port = free_ports(3)
    for directive, port in (("listen 8080;", http_port), ("listen 8080 default_server;", http_port),
                            ("listen 8443 ssl;", https_port),
                            ("listen 8443 ssl default_server;", https_port),
                            ("listen 8081;", status_port)):  # fmt: skip
        if directive in conf:
            local = directive.replace(directive.split()[1].rstrip(";"), f"127.0.0.1:{port}", 1)
            conf = substitute(conf, directive, local, what=what)
    conf = substitute(conf, "server app:3443 ", f"server 127.0.0.1:{front_port} ", what=what)
    conf = edge_to_front(conf, stack=stack.stack, ca=ca)
    if not verify:
        count = conf.count("proxy_ssl_verify on;")
        conf = substitute(conf, "proxy_ssl_verify on;", "proxy_ssl_verify off;", count=count,
                          what=what)  # fmt: skip
    (tmp / "edge.conf").write_text(conf)
    daemon = Daemon([need("nginx"), "-e", "stderr", "-p", str(tmp), "-c", str(tmp / "edge.conf"),
                     "-g", "daemon off;"], log=tmp / "edge.log")  # fmt: skip
    wait_for_port(https_port, proc=daemon.proc, what="edge", log=daemon.log)
    return daemon, https_port


def _get(port: int, host: str, path: str) -> tuple[int, str]:
    """GET over TLS with SNI ``host`` (the edge refuses a handshake for any other name)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), 10) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        return resp.status, resp.read().decode(errors="replace")


@pytest.mark.parametrize(
    ("case", "names", "trusted"),
    [("verified", "DNS:app", True), ("another name", "DNS:not-app", True),
     ("another CA", "DNS:app", False)],
)  # fmt: skip
def test_the_edge_reaches_the_app_only_through_a_verified_tls_front(
    stacks: Callable[[str, str], RenderedStack],
    tls_pair: TlsPair,
    case: str,
    names: str,
    trusted: bool,
) -> None:
    stack = stacks("prod", "kubernetes")
    edge_conf = stack.file("proxy", EDGE_CONF)
    assert "proxy_ssl_verify on;" in edge_conf and "proxy_pass https://" in edge_conf
    tmp = Path(tempfile.mkdtemp(prefix="luna-edge-tls-"))
    tmp.chmod(0o755)
    with contextlib.ExitStack() as ctx:
        ctx.callback(shutil.rmtree, tmp, ignore_errors=True)
        (app,) = ctx.enter_context(standins(["app-0"]))
        front_tls = make_tls_pair(_dir(tmp, "front-tls"), common_name=names[4:], alt_names=names)
        other = make_tls_pair(_dir(tmp, "other-ca"), common_name="app", alt_names="DNS:app")
        front = start_front(stack, _dir(tmp, "front"), front_tls, app.address)
        ctx.callback(front.daemon.stop)
        ca = front_tls.cert if trusted else other.cert
        edge, port = _edge(stack, _dir(tmp, "edge"), tls_pair, front.port, ca)
        ctx.callback(edge.stop)
        status, body = _get(port, "luna-app.com", "/journal")
        reached = body.split()[:1] == ["app-0"]
        if case == "verified":
            assert status == 200 and reached, f"{case}: {status} {body[:200]}"
        else:
            assert status == 502 and not reached, f"{case}: {status} {body[:200]}"
            # Control: the same edge with verification off reaches the app, so the
            # refusal above is the verification's doing.
            edge.stop()
            loose, port = _edge(stack, _dir(tmp, "loose"), tls_pair, front.port, ca, verify=False)
            ctx.callback(loose.stop)
            control, body = _get(port, "luna-app.com", "/journal")
            assert control == 200 and body.split()[:1] == ["app-0"], f"control: {control}"
        print(f"edge -> TLS front ({case}): HTTP {status}, app reached: {reached}")


def test_the_tls_front_speaks_tls_only(
    stacks: Callable[[str, str], RenderedStack], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Plain HTTP to the front's port is no way around the certificate."""
    stack = stacks("prod", "kubernetes")
    tmp = Path(tempfile.mkdtemp(prefix="luna-front-"))
    tmp.chmod(0o755)
    with contextlib.ExitStack() as ctx:
        ctx.callback(shutil.rmtree, tmp, ignore_errors=True)
        (app,) = ctx.enter_context(standins(["app-0"]))
        pair = make_tls_pair(_dir(tmp, "tls"), common_name="app", alt_names="DNS:app")
        front = start_front(stack, _dir(tmp, "front"), pair, app.address)
        ctx.callback(front.daemon.stop)
        with socket.create_connection(("127.0.0.1", front.port), 5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
            answer = raw.recv(4096).decode(errors="replace")
        assert "400" in answer and "app-0" not in answer, answer

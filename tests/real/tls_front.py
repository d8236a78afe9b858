"""Run the rendered TLS front (Kubernetes' app sidecar) with real nginx, in
front of a stand-in app, and point the rendered edge at it.

The front's nginx.conf is the one the render ships in the app pod's ConfigMap
(components/platforms/kubernetes/tls_front.py); only its listen address, temp
paths, certificate paths and the app's loopback port are made local.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.real.support import Daemon, RenderedStack, free_port, substitute, wait_for_port
from tests.support.tls import TlsPair
from tests.support.tools import need

__all__ = ["FRONT_CONF", "Front", "edge_to_front", "start_front"]

FRONT_CONF = "/etc/luna/tls-front/nginx.conf"
EDGE_CA = "/etc/nginx/luna/tls/internal-ca.crt"


@dataclass
class Front:
    daemon: Daemon
    port: int


def start_front(stack: RenderedStack, tmp: Path, cert: TlsPair, app_address: str) -> Front:
    """The rendered front on a free loopback port, forwarding to ``app_address``."""
    conf = stack.file("app", FRONT_CONF)
    what = f"{stack.stack}: {FRONT_CONF}"
    port = free_port()
    conf = substitute(conf, " /tmp/", f" {tmp}/", count=6, what=what)
    conf = substitute(conf, "listen 3443 ssl;", f"listen 127.0.0.1:{port} ssl;", what=what)
    conf = substitute(conf, "/etc/luna/tls-front/tls.crt;", f"{cert.cert};", what=what)
    conf = substitute(conf, "/etc/luna/tls-front/tls.key;", f"{cert.key};", what=what)
    conf = substitute(conf, "server 127.0.0.1:3000;", f"server {app_address};", what=what)
    (tmp / "front.conf").write_text(conf)
    daemon = Daemon(
        [need("nginx"), "-e", "stderr", "-p", str(tmp), "-c", str(tmp / "front.conf"),
         "-g", "daemon off;"],
        log=tmp / "front.log",
    )  # fmt: skip
    wait_for_port(port, proc=daemon.proc, what=f"{stack.stack} TLS front", log=daemon.log)
    return Front(daemon, port)


def edge_to_front(conf: str, *, stack: str, ca: Path) -> str:
    """The edge's conf with the stack CA it verifies the app with made local."""
    old = f"proxy_ssl_trusted_certificate {EDGE_CA};"
    # Every proxied location verifies the app: as many as proxy_pass lines.
    count = conf.count("proxy_pass ")
    assert count >= 1, f"{stack}: no proxy_pass in the edge's nginx.conf"
    new = f"proxy_ssl_trusted_certificate {ca};"
    return substitute(conf, old, new, count=count, what=f"{stack}: edge nginx.conf")

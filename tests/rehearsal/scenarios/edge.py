"""Requests through the stack's edge as a client on the internet makes them: TLS to
the published port, SNI and Host the stack's name, the certificate verified
against the CA that issued it.
"""

from __future__ import annotations

import http.client
import socket
import ssl

from tests.rehearsal.session import Rehearsal

__all__ = ["EdgeConnection", "edge_request"]


class EdgeConnection(http.client.HTTPSConnection):
    """An HTTPS connection to ``ip``:``port`` (the edge's published loopback address)
    that presents and verifies ``host``."""

    def __init__(
        self, host: str, port: int, ca_pem: str, *, timeout: float = 15, ip: str = "127.0.0.1"
    ) -> None:
        ctx = ssl.create_default_context(cadata=ca_pem)
        super().__init__(host, port, context=ctx, timeout=timeout)
        self._ctx, self._ip = ctx, ip

    def connect(self) -> None:
        raw = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self.host)


def edge_conn(r: Rehearsal, *, ca_pem: str | None = None) -> EdgeConnection:
    """A connection to the edge, verified against ``ca_pem`` (default: the render's CA)."""
    port = int(str(r.render.output("httpsPort") or 443))
    ca = ca_pem or r.render.edge_ca
    return EdgeConnection(r.render.host, port, ca, ip=r.applier.loopback)


def edge_request(
    r: Rehearsal,
    method: str,
    path: str,
    body: str | None = None,
    *,
    conn: EdgeConnection | None = None,
) -> tuple[int, str]:
    """``(status, body)`` of one request; a new connection unless ``conn`` is given."""
    own = conn is None
    c = conn or edge_conn(r)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        response = c.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        if own:
            c.close()


__all__ += ["edge_conn"]

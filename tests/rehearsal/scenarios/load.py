"""Client load through the edge, for the deploy scenarios: GETs without pause,
counting successes, failures by kind and the longest single request.

Keep-alive clients (the default) reuse one TLS connection and so never see a
refused connect; ``fresh=True`` clients open a new TCP and TLS connection for
every request, so an edge that stops listening, even briefly, shows up as
``ConnectionRefusedError`` (or a reset) in :attr:`Load.failures`.
"""

from __future__ import annotations

import http.client
import time
from collections import Counter

from tests.rehearsal.scenarios.edge import EdgeConnection, edge_conn
from tests.rehearsal.session import Rehearsal
from tests.support.client_threads import ClientThreads

__all__ = ["Load"]

# How a kept-alive connection closed by the server shows when a request is sent on it.
_CLOSED_IDLE = frozenset({"RemoteDisconnected", "ConnectionResetError", "BrokenPipeError"})


class Load(ClientThreads):
    """Threads sending GETs of the health path through the edge.

    ``ca_pem``: the CA (or CAs, concatenated) clients verify the edge with; the
    render's by default. A certificate rotation to a new issuer needs both.
    ``retry_idle``: retry a GET once when a reused connection was closed under it.
    """

    def __init__(
        self,
        r: Rehearsal,
        *,
        threads: int = 4,
        path: str = "/api/health",
        fresh: bool = False,
        ca_pem: str | None = None,
        retry_idle: bool = False,
    ) -> None:
        self.r, self.path, self.fresh, self.ca_pem = r, path, fresh, ca_pem
        self.retry_idle = retry_idle
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        """Requests retried once on a new connection after the server closed a kept-alive
        one as they were sent (``retry_idle``); a failed retry is a failure."""
        self.longest_stall = 0.0
        self.window_stall = 0.0
        """The longest request since the last :meth:`mark`."""
        super().__init__(threads)

    @property
    def total(self) -> int:
        return self.ok + self.failed

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def mark(self) -> tuple[int, int]:
        """``(total, failed)`` now; the window's longest request starts again from 0."""
        with self._lock:
            self.window_stall = 0.0
            return self.total, self.failed

    def _get(self, conn: EdgeConnection) -> str:
        """One GET on ``conn``: ``""`` on a 200, else what went wrong."""
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
            response.read()
            return "" if response.status == 200 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return type(exc).__name__

    def _run(self) -> None:
        conn: EdgeConnection | None = None
        while self.running():
            reused = conn is not None
            conn = conn or edge_conn(self.r, ca_pem=self.ca_pem)
            start = time.monotonic()
            error = self._get(conn)
            retried = ""
            if error in _CLOSED_IDLE and reused and self.retry_idle:
                # The server closed the kept-alive connection as this request was sent
                # (nginx's old workers close idle ones on a reload): a client may retry
                # an idempotent request on a new connection (RFC 9112 9.3.1), as
                # browsers do (Chromium net/http/http_network_transaction.cc,
                # ShouldResendRequest). Counted in :attr:`retried`, never hidden.
                retried = error
                conn = edge_conn(self.r, ca_pem=self.ca_pem)
                error = self._get(conn)
            if error or self.fresh:
                conn.close()
                conn = None
            with self._lock:
                took = time.monotonic() - start
                self.longest_stall = max(self.longest_stall, took)
                self.window_stall = max(self.window_stall, took)
                if retried:
                    self.retried[retried] += 1
                if error:
                    self.failures[error] += 1
                else:
                    self.ok += 1

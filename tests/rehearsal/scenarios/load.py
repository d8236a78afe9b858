"""Client load through the edge, for the deploy scenarios: keep-alive GETs without
pause, counting successes, failures by kind and the longest single request."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter

from tests.rehearsal.scenarios.edge import EdgeConnection, edge_conn
from tests.rehearsal.session import Rehearsal

__all__ = ["Load"]


class Load:
    """Threads sending GETs of the health path through the edge, keep-alive."""

    def __init__(self, r: Rehearsal, *, threads: int = 4, path: str = "/api/health") -> None:
        self.r, self.path = r, path
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.longest_stall = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def total(self) -> int:
        return self.ok + sum(self.failures.values())

    def _run(self) -> None:
        conn: EdgeConnection | None = None
        while not self._stop.is_set():
            conn = conn or edge_conn(self.r)
            start = time.monotonic()
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                error = "" if response.status == 200 else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                conn.close()
                conn = None
            with self._lock:
                self.longest_stall = max(self.longest_stall, time.monotonic() - start)
                if error:
                    self.failures[error] += 1
                else:
                    self.ok += 1

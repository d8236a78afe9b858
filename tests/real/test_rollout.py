"""An image bump replayed under load through the real nginx: not one request fails.

The engine model (tests/engine) gives the steps ``pulumi up`` takes for a new
app image on a Docker stack, in the engine's order. This test replays the app
replicas' part of them against the rendered nginx.conf (the ``edge`` fixture of
test_nginx.py: real nginx, stand-in replicas, a stand-in of Docker's embedded
DNS), while client threads send requests through nginx without pause:

- create (a replacement replica): it joins the network, so the DNS lists it as
  soon as it starts, before it listens (Docker registers the alias at start);
  the engine moves on once the provider's ``wait`` sees it healthy;
- delete (an old replica, at the end of the update): its process exits on
  SIGTERM, then it leaves the network and the DNS (Docker's order).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter

import pytest

from tests.engine.scenarios import APP_IMAGE_NEXT, day2, snap
from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.support import StandIn, start_standin
from tests.real.test_nginx import Edge, replica_host
from tests.real.test_nginx import edge as edge  # the fixture, with its nginx

pytestmark = pytest.mark.slow

MIN_REQUESTS = 2000
SETTLE_S = 1.0
"""Load keeps running this long between steps, and after the last one."""
DOCKER = [p for p in FULL_STACK_PARAMS if p[1] == "docker"]


class Load:
    """Client threads sending GETs through nginx over keep-alive TLS connections."""

    def __init__(self, edge: Edge, threads: int = 4) -> None:
        self.edge = edge
        self.ok = 0
        self.failures: list[str] = []
        self.answers: Counter[str] = Counter()
        self.late: Counter[str] = Counter()
        self._late = False
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
        return self.ok + len(self.failures)

    def mark_late(self) -> None:
        """From now on, record who answers separately (after the rollout)."""
        self._late = True

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            conn = conn or self.edge.https_conn()
            try:
                status, _, body = self.edge.get("/api/mood", conn=conn)
                ok, who = status == 200, body.split()[0] if body.split() else "?"
                error = f"{status} {body[:80]!r}"
            except (OSError, http.client.HTTPException) as exc:
                ok, who, error = False, "?", repr(exc)
                conn.close()
                conn = None
            with self._lock:
                if ok:
                    self.ok += 1
                    (self.late if self._late else self.answers)[who] += 1
                else:
                    self.failures.append(error)
        if conn is not None:
            conn.close()


def _wait_healthy(app: StandIn, edge: Edge) -> None:
    """The provider's `wait`: the new replica answers its own health check."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection(app.host, app.port, timeout=2)
            c.request("GET", "/api/health")
            if c.getresponse().status == 200:
                c.close()
                return
            c.close()
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{edge.stack.stack}: {app.ident} never became healthy")


@pytest.mark.parametrize("edge", DOCKER, ids=stack_id, indirect=True)
def test_image_bump_replayed_under_load_fails_no_request(edge: Edge) -> None:
    stack = edge.stack.stack
    assert edge.dns is not None
    before = snap(stack, "docker")
    after = snap(stack, "docker", (("appImage", APP_IMAGE_NEXT),))
    result, timeline = day2(before, after)
    assert not result.errors, result.errors
    web = {u: r.name for u, r in {**before, **after}.items() if r.name.startswith("luna-app-web")}
    steps = [(event, web[urn]) for event, urn in result.events if urn in web]
    # Every replica is created anew, then every old one deleted: nothing else.
    assert [e for e, _ in steps] == ["create"] * len(edge.apps) + ["delete"] * len(edge.apps), steps
    by_name = {f"luna-app-web-{i}": app for i, app in enumerate(edge.apps)}
    if len(edge.apps) == 1:
        by_name = {"luna-app-web": edge.apps[0]}
    new: dict[str, StandIn] = {}
    try:
        with Load(edge) as load:
            time.sleep(SETTLE_S)
            for index, (event, name) in enumerate(steps):
                if event == "create":
                    host = replica_host(len(edge.apps) + index)
                    edge.dns.add("app", host)  # Docker: the alias exists from container start
                    new[name] = start_standin(f"new-{name}", host=host, port=edge.app_port)
                    _wait_healthy(new[name], edge)
                else:
                    old = by_name[name]
                    old.kill()  # SIGTERM: the process exits, then the endpoint leaves
                    edge.dns.remove("app", old.host)
                print(f"{stack}: {event} {name} after {load.total} requests")
                time.sleep(SETTLE_S)
            load.mark_late()
            deadline = time.monotonic() + 60
            while (load.total < MIN_REQUESTS or sum(load.late.values()) < 50) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.1)
    finally:
        for app in new.values():
            app.kill()
    print(
        f"{stack}: image bump under load: {load.total} requests, {len(load.failures)} failed; "
        f"answered by {dict(load.answers)}, after the rollout by {dict(load.late)}; "
        f"app replicas over the engine's steps {timeline}"
    )
    assert load.total >= MIN_REQUESTS, f"{stack}: only {load.total} requests"
    assert not load.failures, f"{stack}: {len(load.failures)} failed: {load.failures[:5]}"
    assert set(load.late) == {f"new-{n}" for n in new}, f"{stack}: after the rollout {load.late}"
    assert any(k.startswith("app-") for k in load.answers), "old replicas never served"

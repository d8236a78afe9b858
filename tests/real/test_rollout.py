"""An image bump replayed under load through the real nginx: not one request fails.

The engine model (tests/engine) gives the steps ``pulumi up`` takes for a new
app image on a Docker stack, in the engine's order. This test replays the app
replicas' part of them against the rendered nginx.conf (the ``edge`` fixture of
test_nginx.py: real nginx, stand-in replicas, a stand-in of Docker's embedded
DNS), while client threads send requests through nginx without pause:

- create (a replacement replica): it starts off the app network; the provider's
  ``wait`` sees it healthy, then the admission gate connects it under the name
  ``app`` (components/platforms/docker/gate.py), so the DNS lists it only then;
- partial (a replica that never turns healthy): it runs, never admitted;
- delete (an old replica, at the end of the update): ``docker stop`` sends
  SIGTERM, the app closes its listener and finishes what is in flight, then it
  exits and leaves the network and the DNS (Docker's order).

Each test reports the failed requests and the longest a request took (the
longest stall a user saw).
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from tests.engine.model import Plan, plan
from tests.engine.scenarios import APP_IMAGE_NEXT, day2, snap
from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.support import StandIn, start_standin
from tests.real.test_nginx import Edge, replica_host
from tests.real.test_nginx import edge as edge  # the fixture, with its nginx
from tests.support.client_threads import ClientThreads

pytestmark = pytest.mark.slow

MIN_REQUESTS = 2000
SETTLE_S = 1.0
"""Load keeps running this long between steps, and after the last one."""
DOCKER = [p for p in FULL_STACK_PARAMS if p[1] == "docker"]


class Load(ClientThreads):
    """Client threads sending GETs through nginx over keep-alive TLS connections."""

    def __init__(self, edge: Edge, threads: int = 4) -> None:
        self.edge = edge
        self.ok = 0
        self.failures: list[str] = []
        self.answers: Counter[str] = Counter()
        self.late: Counter[str] = Counter()
        self.longest = 0.0
        """Seconds of the slowest request: the longest stall a user saw."""
        self._late = False
        super().__init__(threads)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def mark_late(self) -> None:
        """From now on, record who answers separately (after the rollout)."""
        self._late = True

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while self.running():
            conn = conn or self.edge.https_conn()
            began = time.monotonic()
            try:
                status, _, body = self.edge.get("/api/mood", conn=conn)
                ok, who = status == 200, body.split()[0] if body.split() else "?"
                error = f"{status} {body[:80]!r}"
            except (OSError, http.client.HTTPException) as exc:
                ok, who, error = False, "?", repr(exc)
                conn.close()
                conn = None
            with self._lock:
                self.longest = max(self.longest, time.monotonic() - began)
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


class _Broken(http.server.BaseHTTPRequestHandler):
    """A bad image: it listens, fails its health check and answers 500 to everything."""

    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"broken")

    def log_message(self, *args: object) -> None:
        return


@contextmanager
def _broken(host: str, port: int) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer((host, port), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Replay:
    """Plays the app containers' part of a plan on real processes behind nginx.

    ``current`` is what the state holds per replica; ``replaced`` the old copies
    this update deletes at its end; ``pending`` what a failed update left for the
    next one (model.Plan.pending_deletes)."""

    def __init__(self, edge: Edge, stack: ExitStack) -> None:
        self.edge, self.stack = edge, stack
        names = [f"luna-app-web-{i}" for i in range(len(edge.apps))]
        if len(edge.apps) == 1:
            names = ["luna-app-web"]
        self.current: dict[str, tuple[object, str, bool]] = {
            n: (app, app.host, True) for n, app in zip(names, edge.apps, strict=True)
        }
        self.replaced: dict[str, tuple[object, str, bool]] = {}
        self.pending: dict[str, list[tuple[object, str, bool]]] = {}
        self.hosts = len(edge.apps)
        self.started: list[StandIn] = []

    def play(self, result: Plan, load: Load) -> None:
        assert self.edge.dns is not None
        for event, urn in result.events:
            name = urn.split("::")[-1]
            if not urn.split("::")[-2].endswith(":Container") or "luna-app-web" not in name:
                continue
            if event in ("create", "partial"):
                if name in self.current:
                    self.replaced[name] = self.current[name]
                self.current[name] = self._start(name, healthy=event == "create")
            elif event == "delete":
                self._stop(self.replaced.pop(name))
            elif event == "delete-pending":
                self._stop(self.pending[name].pop(0))
            else:
                continue
            print(f"{self.edge.stack.stack}: {event} {name} after {load.total} requests")
            time.sleep(SETTLE_S)
        if result.failed:
            # CreateStep.Apply marked the old copies Delete: the next update removes them.
            for name, copy in self.replaced.items():
                self.pending.setdefault(name, []).append(copy)
            self.replaced = {}

    def _start(self, name: str, *, healthy: bool) -> tuple[object, str, bool]:
        assert self.edge.dns is not None
        host = replica_host(self.hosts)
        self.hosts += 1
        if not healthy:
            server = self.stack.enter_context(_broken(host, self.edge.app_port))
            return (server, host, False)  # never admitted: the gate fails
        app = start_standin(f"new-{name}-{self.hosts}", host=host, port=self.edge.app_port)
        self.started.append(app)
        _wait_healthy(app, self.edge)
        self.edge.dns.add("app", host)  # the admission gate: healthy, then on the network
        return (app, host, True)

    def _stop(self, copy: tuple[object, str, bool]) -> None:
        assert self.edge.dns is not None
        thing, host, admitted = copy
        if isinstance(thing, StandIn):
            # docker stop: SIGTERM; the app closes its listener and finishes what is in flight.
            thing.proc.terminate()
            thing.proc.wait(timeout=20)
        elif isinstance(thing, http.server.ThreadingHTTPServer):
            thing.shutdown()
        if admitted:
            self.edge.dns.remove("app", host)  # the endpoint leaves once the process exited


def _finish(load: Load, stack: str) -> None:
    load.mark_late()
    deadline = time.monotonic() + 60
    while (load.total < MIN_REQUESTS or sum(load.late.values()) < 50) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)


@pytest.mark.parametrize("edge", DOCKER, ids=stack_id, indirect=True)
def test_image_bump_replayed_under_load_fails_no_request(edge: Edge) -> None:
    stack = edge.stack.stack
    assert edge.dns is not None
    before = snap(stack, "docker")
    after = snap(stack, "docker", (("appImage", APP_IMAGE_NEXT),))
    result, timeline = day2(before, after)
    assert not result.errors, result.errors
    with ExitStack() as stack_ctx:
        replay = Replay(edge, stack_ctx)
        try:
            with Load(edge) as load:
                time.sleep(SETTLE_S)
                replay.play(result, load)
                _finish(load, stack)
        finally:
            for app in replay.started:
                app.kill()
    print(
        f"{stack}: image bump under load: {load.total} requests, {len(load.failures)} failed, "
        f"longest request {load.longest:.2f}s; answered by {dict(load.answers)}, after the "
        f"rollout by {dict(load.late)}; app replicas over the engine's steps {timeline}"
    )
    assert load.total >= MIN_REQUESTS, f"{stack}: only {load.total} requests"
    assert not load.failures, f"{stack}: {len(load.failures)} failed: {load.failures[:5]}"
    assert load.late and all(k.startswith("new-") for k in load.late), load.late
    assert any(k.startswith("app-") for k in load.answers), "old replicas never served"


@pytest.mark.parametrize("edge", DOCKER, ids=stack_id, indirect=True)
def test_bad_image_up_again_and_rollback_under_load_fail_no_request(edge: Edge) -> None:
    """A new image that never turns healthy, `up` again, then the rollback: the old
    version serves throughout (the engine's steps from tests/engine)."""
    stack = edge.stack.stack
    bad = "ghcr.io/luna-app/luna-web:1.1.0-broken@sha256:" + "2" * 64
    base = snap(stack, "docker")
    broken = snap(stack, "docker", (("appImage", bad),))
    first = plan(base, broken, unhealthy={bad})
    assert first.failed and first.next is not None
    again = plan(first.next, broken, unhealthy={bad})
    assert again.failed and again.next is not None
    back = plan(again.next, base, unhealthy={bad})
    assert not back.errors and not back.failed, back.errors
    with ExitStack() as stack_ctx:
        replay = Replay(edge, stack_ctx)
        try:
            with Load(edge) as load:
                time.sleep(SETTLE_S)
                for result in (first, again, back):
                    replay.play(result, load)
                    time.sleep(SETTLE_S)
                _finish(load, stack)
        finally:
            for app in replay.started:
                app.kill()
    print(
        f"{stack}: bad image, up again, rollback under load: {load.total} requests, "
        f"{len(load.failures)} failed, longest request {load.longest:.2f}s; answered by "
        f"{dict(load.answers)}, after the rollback by {dict(load.late)}"
    )
    assert load.total >= MIN_REQUESTS, f"{stack}: only {load.total} requests"
    assert not load.failures, f"{stack}: {len(load.failures)} failed: {load.failures[:5]}"
    assert load.late and all(k.startswith("new-") for k in load.late), load.late
    assert not replay.pending.get("luna-app-web-0"), replay.pending

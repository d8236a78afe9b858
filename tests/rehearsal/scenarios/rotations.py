"""Rotations under traffic (issue #22): routine changes that must cut nobody off.

Client threads send requests through the edge without pause for the whole
scenario: keep-alive ones, and ones that open a new TCP and TLS connection per
request (the only kind that sees a refused connect). Meanwhile the applier runs
the engine model's steps for each change, rendered by the shipped program:

1. **interrupted**: ``dbPassword`` changed and the ``up`` killed just after its
   first new app replica started (the engine model's interrupt); then the config
   reverted and ``up`` again; then once more, which must plan 0 steps;
2. **secrets**: ``dbPassword`` and ``redisPassword`` rotated in one ``up``:
   PostgreSQL keeps its container and start time, no login fails in its log, a
   session held open across the rotation (a replica's pooled connection) keeps
   answering, every new replica logs in with its URL, and so does an old replica's
   URL (the previous login role, kept beside the new one) after the up; the cache is replaced with
   never two containers answering to ``cache`` (sampled every 0.2 s) and the new
   password is accepted by it;
3. **edge**: ``tlsCert``/``tlsKey`` renewed (a new key and certificate from the same
   issuer) and an nginx setting changed (``clientMaxBodyMb``): nginx keeps its container, the
   edge then serves the new certificate and enforces the new body limit;
4. **restore**: everything back to the stack's configuration in one ``up`` (the
   scenarios after this one render from it), with the same checks.

Every request must succeed; a breach fails the scenario with its evidence.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.rehearsal.applier import StepError
from tests.rehearsal.outcome import Outcome
from tests.rehearsal.pki import issue_pair
from tests.rehearsal.scenarios.edge import edge_conn
from tests.rehearsal.scenarios.load import Load
from tests.rehearsal.scenarios.probe import rerender
from tests.rehearsal.scenarios.watch import (
    CacheWatch,
    HeldConnection,
    app_env,
    app_urns,
    auth_failures,
    identity,
    login,
    redis_ping,
)
from tests.rehearsal.session import Rehearsal

__all__ = ["MIN_REQUESTS", "run"]

MIN_REQUESTS = 2000
BODY_MB = 2
"""``clientMaxBodyMb`` during the edge change (the stack's default is 10)."""
BODY_BYTES = BODY_MB * 2**20 + 2**19
"""Between the new limit and the stack's: 413 with the change, accepted without."""


@dataclass
class Watch:
    r: Rehearsal
    keep: Load
    fresh: Load
    cache: CacheWatch
    ca: str
    """The edge's CA, which clients verify it with."""
    secrets: tuple[tuple[str, str], ...]
    """The rotated ``dbPassword`` and ``redisPassword``."""
    new_edge: tuple[str, str, str]
    """The renewed edge pair: (CA, certificate, key), from the stack's issuer."""
    figures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def part(self, name: str, body: Callable[[Watch], str]) -> None:
        """Run one change; record its requests, failures, stall and what it measured."""
        k0, f0 = self.keep.mark(), self.fresh.mark()
        retried0 = sum(self.keep.retried.values())
        t0, wall0 = time.monotonic(), time.time()
        problems_before = len(self.problems)
        try:
            measured = body(self)
        except (StepError, AssertionError, OSError) as error:
            measured = "stopped"
            self.problems.append(f"{name}: {type(error).__name__}: {str(error)[:600]}")
        t1, wall1 = time.monotonic(), time.time()
        time.sleep(1)  # requests in flight when the up returned are counted here
        requests = self.keep.total - k0[0] + self.fresh.total - f0[0]
        failed = self.keep.failed - k0[1] + self.fresh.failed - f0[1]
        stall = max(self.keep.window_stall, self.fresh.window_stall)
        retried = sum(self.keep.retried.values()) - retried0
        most, gap, _ = self.cache.between(t0, t1)
        logins = auth_failures(self.r, wall0, wall1)
        if failed:
            self.problems.append(
                f"{name}: {failed} failed requests: keep-alive "
                f"{dict(self.keep.failures)}, new connections "
                f"{dict(self.fresh.failures)}"
            )
        if most > 1:
            self.problems.append(f"{name}: {most} containers answered to `cache` at once")
        if logins:
            self.problems.append(
                f"{name}: failed logins in PostgreSQL's log:\n" + "\n".join(logins[:5])
            )
        ok = len(self.problems) == problems_before
        self.figures.append(
            f"{name} ({t1 - t0:.0f} s, {'ok' if ok else 'FAILED'}): {requests} requests, "
            f"{failed} failed, {retried} retried on a new connection (a kept-alive one closed "
            f"by the edge), longest {stall:.1f} s; caches at once <= {most}, cache gap "
            f"{gap:.1f} s; {measured}"
        )


def _kept(w: Watch, service: str, before: tuple[str, str]) -> str:
    after = identity(w.r, service)
    if after != before:
        how = "replaced" if after[0] != before[0] else "restarted"
        w.problems.append(f"{service} {how}: {before} -> {after}")
        return f"{service} {how}"
    return f"{service} kept"


def _logins(w: Watch, name: str) -> str:
    """Every running replica logs in with its own DATABASE_URL."""
    urls = app_env(w.r, "DATABASE_URL")
    refused = {c: e for c, url in urls.items() if (e := login(w.r, url))}
    if refused or not urls:
        w.problems.append(f"{name}: replicas whose DATABASE_URL cannot log in: {refused or urls}")
    return f"{len(urls) - len(refused)}/{len(urls)} replicas log in"


def _previous_login(w: Watch, old_urls: dict[str, str]) -> str:
    """After the ``up`` that rotated ``dbPassword``: an old replica's DATABASE_URL
    (its own login role, luna_app_<suffix>, with the previous password) still opens a
    new connection beside the new replicas' login role, as it must while an ``up``
    replaces old replicas (components/configs/postgres.py, app_logins_sql)."""
    users = {unquote(urlsplit(u).username or "") for u in old_urls.values()}
    new_users = {unquote(urlsplit(u).username or "") for u in app_env(w.r, "DATABASE_URL").values()}
    refused = {c: e for c, url in old_urls.items() if (e := login(w.r, url))}
    if not old_urls or refused:
        w.problems.append(f"secrets: old replicas' DATABASE_URL refused after the up: {refused}")
    if users & new_users:
        w.problems.append(f"secrets: the rotation kept the login role {users & new_users}")
    return (
        f"old replicas' URL ({','.join(sorted(users))}) logs in after the up "
        f"{len(old_urls) - len(refused)}/{len(old_urls)} beside {','.join(sorted(new_users))}"
    )


def _stale_window(r: Rehearsal, first: int, *, opens: str) -> float:
    """Seconds from the step named ``…opens`` (the role job setting the new password,
    the old cache going) to the last old app replica's removal: meanwhile the old
    replicas hold the previous password (PostgreSQL: it stays valid, on the previous
    login role; Redis: the old server is gone and a new login of theirs is refused)."""
    apps = {u.split("::")[-1] for u in app_urns(r)}
    steps = r.applier.state.steps[first:]
    start = next((i for i, (_, n, _) in enumerate(steps) if n.endswith(opens)), None)
    last = max(
        (i for i, (op, n, _) in enumerate(steps) if op == "delete" and n in apps), default=None
    )
    if start is None or last is None:
        return 0.0
    return sum(t for _, _, t in steps[start + 1 : last + 1])


def _interrupted(w: Watch) -> str:
    r = w.r
    db = identity(r, "database")
    target = rerender(r, extra_secrets=(("dbPassword", secrets.token_hex(24)),))
    events = r.applier.preview(target.resources).events
    apps = app_urns(r)
    first_app = next(
        (i for i, (e, u) in enumerate(events) if e == "create" and u in apps), len(events) // 2
    )
    try:
        r.applier.up(target.resources, interrupt_after=first_app + 1)
        w.problems.append("interrupted: the up was not interrupted")
    except StepError as error:
        if "interrupt" not in str(error):
            raise
    pending = len(r.applier.model.pending)
    baseline = rerender(r)
    reverted = r.applier.up(baseline.resources)
    again = r.applier.up(baseline.resources)
    if again.events or again.changed():
        w.problems.append(f"interrupted: the up after the revert planned {again.events}")
    return (
        f"killed after {first_app + 1} of {len(events)} steps ({pending} old copies left "
        f"pending); the revert took {len(reverted.events)} steps, the next up "
        f"{len(again.events)}; {_kept(w, 'database', db)}; {_logins(w, 'interrupted')}"
    )


def _secrets(w: Watch) -> str:
    r = w.r
    db, cache = identity(r, "database"), identity(r, "cache")
    first = len(r.applier.state.steps)
    old_urls = app_env(r, "DATABASE_URL")  # what the replicas this up replaces hold
    rotated = rerender(r, extra_secrets=w.secrets)
    r.applier.up(rotated.resources)
    previous = _previous_login(w, old_urls)
    pongs = {c: redis_ping(r, url) for c, url in app_env(r, "REDIS_URL").items()}
    if not pongs or any(p != "PONG" for p in pongs.values()):
        w.problems.append(f"secrets: the new REDIS_URL on the cache: {pongs}")
    new_cache = identity(r, "cache")[0] != cache[0]
    if not new_cache:
        w.problems.append("secrets: the cache was not replaced: the rotation proved nothing")
    db_stale = _stale_window(r, first, opens="-roles")
    cache_stale = _stale_window(r, first, opens="cache-redis")
    return (
        f"{_kept(w, 'database', db)}; {_logins(w, 'secrets')} with the new password, old "
        f"replicas held the previous one {db_stale:.0f} s; {previous}; cache replaced "
        f"{'yes' if new_cache else 'no'}, its new password answered for "
        f"{sum(p == 'PONG' for p in pongs.values())}/{len(pongs)} replicas, old replicas held "
        f"the previous one {cache_stale:.0f} s"
    )


def _fingerprint(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex()


def _served(w: Watch) -> str:
    conn = edge_conn(w.r, ca_pem=w.ca)
    try:
        conn.connect()
        der = conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()
    return hashlib.sha256(der or b"").hexdigest()


def _body_limit(w: Watch) -> str:
    """What the edge answers to a request that announces a body of :data:`BODY_BYTES`:
    nginx compares Content-Length with ``client_max_body_size`` as soon as the
    headers arrive (ngx_http_core_module's find-config phase) and answers 413
    at once; within the limit it waits for the body ("waits")."""
    conn = edge_conn(w.r, ca_pem=w.ca)
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(3)
        head = (
            f"POST /rehearsal-body HTTP/1.1\r\nHost: {w.r.render.host}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {BODY_BYTES}\r\n\r\n"
        )
        conn.sock.sendall(head.encode())
        try:
            return conn.sock.recv(64).decode(errors="replace").split("\r\n")[0][9:12] or "closed"
        except TimeoutError:
            return "waits"
    finally:
        conn.close()


def _edge(w: Watch) -> str:
    r = w.r
    proxy = identity(r, "proxy")
    before, body_before = _served(w), _body_limit(w)
    changed = rerender(
        r, extra_secrets=w.secrets, edge=w.new_edge, overrides=(("clientMaxBodyMb", str(BODY_MB)),)
    )
    r.applier.up(changed.resources)
    time.sleep(1)  # nginx's new workers take over as the old ones finish
    after, body_after = _served(w), _body_limit(w)
    if after != _fingerprint(w.new_edge[1]):
        w.problems.append(
            f"edge: serves {after[:16]}…, not the new certificate "
            f"{_fingerprint(w.new_edge[1])[:16]}… (before: {before[:16]}…)"
        )
    if (body_before, body_after) != ("waits", "413"):
        w.problems.append(
            f"edge: a {BODY_BYTES}-byte body: {body_before} before and {body_after} after "
            f"clientMaxBodyMb={BODY_MB} (want: waits for it, then 413)"
        )
    return (
        f"{_kept(w, 'proxy', proxy)}; serves the new certificate "
        f"{'yes' if after == _fingerprint(w.new_edge[1]) else 'no'} ({after[:12]}…); "
        f"{BODY_BYTES // 2**10} KiB body: {body_before} -> {body_after}"
    )


def _restore(w: Watch) -> str:
    r = w.r
    db, proxy = identity(r, "database"), identity(r, "proxy")
    r.applier.up(rerender(r).resources)
    time.sleep(1)
    original = _served(w) == _fingerprint(r.render.edge[1])
    if not original:
        w.problems.append("restore: the edge does not serve the stack's certificate again")
    return (
        f"{_kept(w, 'database', db)}, {_kept(w, 'proxy', proxy)}; "
        f"{_logins(w, 'restore')}; original certificate {'yes' if original else 'no'}"
    )


def run(r: Rehearsal) -> Outcome:
    rotated = (("dbPassword", secrets.token_hex(24)), ("redisPassword", secrets.token_hex(24)))
    # A renewal: a new key and certificate from the same issuer, as ACME's. Clients
    # (and the blackbox exporter's edge probe) trust that issuer only.
    new_edge = issue_pair(r.render.host, issuer=r.render.edge_issuer)
    ca = r.render.edge_ca
    url = next(iter(app_env(r, "DATABASE_URL").values()), "")
    held = HeldConnection(r, url)
    try:
        with (
            Load(r, threads=2, ca_pem=ca, retry_idle=True) as keep,
            Load(r, threads=2, fresh=True, ca_pem=ca) as fresh,
            CacheWatch(r) as cache,
        ):
            w = Watch(r, keep, fresh, cache, ca, rotated, new_edge)
            time.sleep(2)
            for name, body in (
                ("interrupted", _interrupted),
                ("secrets", _secrets),
                ("edge", _edge),
                ("restore", _restore),
            ):
                w.part(name, body)
    finally:
        sent, answered, error = held.close()
    if sent == 0 or answered < sent:
        w.problems.append(
            f"the session held open across the rotations answered {answered} of "
            f"{sent} queries: {error}"
        )
    total, failed = keep.total + fresh.total, keep.failed + fresh.failed
    if total < MIN_REQUESTS:
        w.problems.append(f"only {total} requests (at least {MIN_REQUESTS} wanted)")
    figure = (
        f"{total} requests ({fresh.total} on new connections), {failed} failed, "
        f"{sum(keep.retried.values())} retried, longest "
        f"{max(keep.longest_stall, fresh.longest_stall):.1f} s; held session "
        f"{answered}/{sent}; cache samples {len(cache.samples)}"
    )
    detail = "\n".join([*w.figures, *w.problems, *cache.errors[:3]])
    return Outcome("rotations", not w.problems, figure, detail)

"""e. PHI: personal data sent through the edge never reaches a log.

Identifiers from tests/real/phi_corpus.py travel in paths, query strings and
JSON bodies: to the app (answered), to the rate-limited auth endpoints until
nginx answers 429, and while every app replica is stopped, so nginx answers 502
(its upstream fails). Then every container's ``docker logs`` (nginx's access and
error logs and PostgreSQL's log are its stdout/stderr in this stack) is searched
for each identifier, raw and URL-encoded.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import quote

from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios.edge import edge_request
from tests.rehearsal.scenarios.probe import wait_healthy
from tests.rehearsal.session import Rehearsal

__all__ = ["IDENTIFIERS", "run"]

# From tests/real/phi_corpus.py: an e-mail, a US phone, an SSN, an NHS number, a date
# of birth, a German health-insurance number.
IDENTIFIERS = ("jane.doe+therapy@example.com", "555-123-4567", "123-45-6789",
               "943 476 5919", "1985-03-12", "A123456780")  # fmt: skip


def _requests() -> list[tuple[str, str, str | None]]:
    """(method, path, body) carrying every identifier in each position."""
    out: list[tuple[str, str, str | None]] = []
    for ident in IDENTIFIERS:
        q = quote(ident, safe="")
        body = json.dumps({"email": ident, "note": f"call me on {ident}"})
        out += [
            ("GET", f"/api/users/{q}", None),
            ("GET", f"/api/journal?email={q}&dob={q}", None),
            ("POST", f"/api/journal?phone={q}", body),
            ("POST", f"/api/auth/signin?email={q}", body),
        ]
    return out


def _send(r: Rehearsal, statuses: Counter[int], rounds: int = 1) -> None:
    for _ in range(rounds):
        for method, path, body in _requests():
            status, _ = edge_request(r, method, path, body)
            statuses[status] += 1


def _app_replicas(r: Rehearsal) -> list[str]:
    return [n for n, service in r.applier.state.containers().items() if service == "app"]


def _leaks(r: Rehearsal) -> list[str]:
    forms = {f for i in IDENTIFIERS for f in (i, quote(i, safe=""), quote(i), i.replace(" ", "+"))}
    found = []
    for name in r.applier.state.containers():
        logs = r.host.docker("logs", name, check=False)
        text = logs.stdout + logs.stderr
        for line in text.splitlines():
            hits = [f for f in forms if f in line]
            if hits:
                found.append(f"{name}: {hits[0]!r} in {line[:300]}")
    return found


def run(r: Rehearsal) -> Outcome:
    statuses: Counter[int] = Counter()
    # Answered requests, then the auth endpoint well past its burst (429s).
    _send(r, statuses, rounds=2)
    replicas = _app_replicas(r)
    r.docker("stop", *replicas)
    try:
        _send(r, statuses)  # the upstream is gone: 502
    finally:
        r.docker("start", *replicas)
        for name in replicas:
            wait_healthy(r, name, timeout=120)
    time.sleep(2)  # let the daemons flush their last lines
    leaks = _leaks(r)
    problems = list(leaks[:15])
    for status in (429, 502):
        if not statuses[status]:
            problems.append(f"no {status} answer was provoked: {dict(statuses)}")
    figure = (f"{sum(statuses.values())} requests ({statuses[429]}x429, {statuses[502]}x502): "
              f"{len(leaks)} log lines with PHI")  # fmt: skip
    return Outcome("phi", not problems, figure, "\n".join(problems))

"""a. Up: the render applied, every container healthy (time taken), and the
pipeline's smoke and crisis checks (scripts/smoke_check.py, as shipped) passing
through the edge over TLS, verified against the CA that issued the stack's certificate.

The checker connects to the stack's own host name (``staging.luna-app.com``),
which this machine must resolve to the published loopback port: it runs in a
private mount namespace whose /etc/hosts says so (``unshare -m``), as
FACTS.md describes for nginx.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.rehearsal.applier import StepError
from tests.rehearsal.outcome import Outcome
from tests.rehearsal.session import Rehearsal
from tests.support.tools import REPO, need

__all__ = ["SETTLE_S", "health", "run", "through_edge"]

SETTLE_S = 120


def health(r: Rehearsal) -> dict[str, str]:
    """Container name -> ``healthy``/``unhealthy``/``starting``/``running``/other state."""
    out = {}
    for name in r.applier.state.containers():
        fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
        out[name] = r.docker("inspect", "-f", fmt, name, check=False).strip() or "gone"
    return out


def through_edge(
    r: Rehearsal,
    argv: list[str],
    *,
    timeout: float = 120,
    hosts: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` where the stack's host name is the edge's published loopback address
    (a private /etc/hosts), with the extra ``hosts`` lines."""
    file = r.root / "hosts"
    names = ("127.0.0.1 localhost", f"{r.applier.loopback} {r.render.host}", *hosts)
    file.write_text("\n".join(names) + "\n")
    script = f'mount --bind {file} /etc/hosts && exec "$@"'
    return subprocess.run([need("unshare"), "-m", "sh", "-c", script, "sh", *argv],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=env)  # fmt: skip


def smoke_check(r: Rehearsal) -> subprocess.CompletedProcess[str]:
    """The pipeline's post-deploy smoke check (scripts/smoke_check.py) through the edge."""
    ca = r.root / "edge-ca.pem"
    ca.write_text(r.render.edge_ca)
    port = r.render.output("httpsPort") or 443
    url = f"https://{r.render.host}" + (f":{port}" if str(port) != "443" else "")
    checker = str(Path(REPO) / "scripts" / "smoke_check.py")
    return through_edge(r, [sys.executable, checker, "check", "--url", url, "--cafile", str(ca)])


def run(r: Rehearsal) -> Outcome:
    start = time.monotonic()
    try:
        r.applier.up(r.render.resources)
    except StepError as error:
        return Outcome("up", False, f"apply failed after {time.monotonic() - start:.0f} s",
                       str(error))  # fmt: skip
    r.figures["applied"] = time.monotonic() - start
    # A container created before what it talks to (the engine orders only declared
    # dependencies) may restart a few times under its restart policy: give it time.
    deadline = time.monotonic() + SETTLE_S
    while True:
        states = health(r)
        bad = {n: s for n, s in states.items() if s not in ("healthy", "running")}
        if not bad or time.monotonic() > deadline:
            break
        time.sleep(3)
    took = time.monotonic() - start
    for name in bad:
        logs = r.host.docker("logs", "--tail", "3", name, check=False)
        bad[name] += ": " + (logs.stdout + logs.stderr).strip().replace("\n", " | ")[-300:]
    smoke = smoke_check(r)
    healthy = len(states) - len(bad)
    figure = (
        f"{healthy}/{len(states)} containers healthy in {took:.0f} s; smoke exit {smoke.returncode}"
    )
    skipped = sorted({u.split("::")[-1] for u in r.applier.state.skipped})
    detail = (
        (f"not healthy: {bad}\n" if bad else "")
        + smoke.stdout[-2500:] + smoke.stderr[-800:]
        + f"\nskipped (no stand-in): {', '.join(skipped)}"
        + "\nnotes: " + "; ".join(r.applier.state.notes)
    )  # fmt: skip
    ok = not bad and smoke.returncode == 0
    if ok:
        r.figures["up"] = took
    return Outcome("up", ok, figure, detail)

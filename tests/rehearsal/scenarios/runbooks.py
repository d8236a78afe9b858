"""d. The runbooks, verbatim: their Docker commands run against the stack.

The commands are read from docs/runbooks/*.md at run time, never copied here.
Only placeholders are substituted (``<stack>``, ``<db>`` and a container name
written as ``luna-<stack>-database-<digest>``, the example target time, ``…``
for a value the operator chooses), with container names taken from the applied
stack. A ``pulumi config set`` + ``pulumi up`` becomes a render with that value
and the applier's ``up`` (no Pulumi CLI here). Commands that need a terminal
(``docker exec -it``) get one from ``script``.

- backup-restore.md, "Point-in-time recovery on a Docker host": rows committed
  before T and after it; the block runs; exactly the rows committed by T remain.
- rotation.md, the database password: the steps in order; right after the block
  the app's leaked ``DATABASE_URL`` is refused, the ``up`` succeeds, every new
  replica logs in with its new URL, and the app serves through the edge.
- rollback.md, the app: ``appImage`` back to the previous tag; the plan touches
  the migration and the app only (what its ``pulumi preview`` line expects) and
  the app serves the previous image.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.engine.scenarios import APP_IMAGE_NEXT
from tests.rehearsal.applier import StepError
from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios.edge import edge_request
from tests.rehearsal.scenarios.probe import (
    luna_schema,
    poll,
    psql,
    release,
    rerender,
    wait_healthy,
)
from tests.rehearsal.scenarios.watch import app_env, login
from tests.rehearsal.session import Rehearsal
from tests.support.tools import REPO

__all__ = ["docker_blocks", "run"]

RUNBOOKS = Path(REPO) / "docs" / "runbooks"
# The engine model's next tag, without its (made-up) digest: a tag made on this daemon.
NEXT = APP_IMAGE_NEXT.split("@")[0]
EXAMPLE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+00")


def docker_blocks(markdown: str, heading: str) -> list[str]:
    """The ```sh/```bash blocks of the section whose heading contains ``heading``."""
    sections: list[list[str]] = [[]]
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            sections.append([])
        sections[-1].append(line)
    body = next(("\n".join(s) for s in sections if s and heading in s[0]), "")
    return re.findall(r"```(?:sh|bash)\n(.*?)```", body, flags=re.S)


def _bash(r: Rehearsal, script: str, *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-o", "pipefail", "-c", script], env=r.host.env,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def _pitr(r: Rehearsal) -> tuple[bool, str]:
    blocks = docker_blocks((RUNBOOKS / "backup-restore.md").read_text(),
                           "Point-in-time recovery on a Docker host")  # fmt: skip
    if not blocks:
        return False, "backup-restore.md: no Docker PITR command block"
    # A restore needs a base backup: the first one, as the backup scenario waits for it.
    poll("a base backup to restore", lambda: any("backup.manifest" in k for k in
         r.world.s3.keys(r.render.bucket)), timeout=240)  # fmt: skip
    luna_schema(r)  # the block's check counts Luna's "User" table
    psql(r, "CREATE TABLE IF NOT EXISTS rehearsal_pitr (id int primary key, at timestamptz "
            "DEFAULT clock_timestamp())")  # fmt: skip
    psql(r, "INSERT INTO rehearsal_pitr (id) SELECT generate_series(1, 100)")
    time.sleep(2)
    target = datetime.now(UTC)
    time.sleep(2)
    psql(r, "INSERT INTO rehearsal_pitr (id) SELECT generate_series(101, 150)")
    psql(r, "SELECT pg_switch_wal()")
    stamp = target.strftime("%Y-%m-%d %H:%M:%S") + "+00"
    script = _placeholders(r, blocks[0]).replace("<T>", stamp)
    script = EXAMPLE_TIME.sub(stamp, script)
    proc = _bash(r, "set -e\n" + script)
    # Whatever the block left stopped (it stops the app and the database) is started again.
    db = _database_container(r)
    apps = [n for n, s in r.applier.state.containers().items() if s == "app"]
    r.docker("start", db, *apps, check=False)
    for name in (db, *apps):
        wait_healthy(r, name, timeout=180)
    out = (proc.stdout + proc.stderr)[-1200:]
    if proc.returncode != 0:
        return False, f"PITR block exited {proc.returncode} at T={stamp}:\n{out}"
    rows = psql(r, "SELECT count(*) FROM rehearsal_pitr", check=False)
    ok = rows == "100"
    return ok, f"PITR to {stamp}: {rows} rows (100 committed by T, 150 in all)"


def _database_container(r: Rehearsal) -> str:
    """The stack output ``database_container`` where the program exports it."""
    return str(r.render.output("database_container") or r.container("database"))


def _placeholders(r: Rehearsal, text: str) -> str:
    db = _database_container(r)
    return text.replace("<stack>", r.stack).replace("<database_container>", db).replace("<db>", db)


def _rotation(r: Rehearsal) -> tuple[bool, str]:
    text = (RUNBOOKS / "rotation.md").read_text()
    block = next((b for b in re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.S)
                  if "ALTER ROLE" in b and "docker exec" in b), None)  # fmt: skip
    if block is not None:
        return _rotation_block(r, block)
    order = text[text.find("For the database, the safe order is:") :]
    order = order[: order.find("\n\n", order.find("3."))]
    codes = re.findall(r"`([^`]+)`", order)
    exec_cmd = next((c for c in codes if c.startswith("docker exec")), None)
    sql = next((c for c in codes if c.upper().startswith("ALTER ROLE")), None)
    if not exec_cmd or not sql:
        return False, f"rotation.md: no docker exec / ALTER ROLE step in {codes}"
    new = secrets.token_hex(24)
    db = r.container("database")
    command = re.sub(r"luna-\w+-database-<digest>", db, exec_cmd)
    statement = sql.replace("…", new)
    # `-it` wants a terminal: `script` gives it one and types the statement into it.
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], input=f"{statement};\n\\q\n",
                          env=r.host.env, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    # The terminal echoes the typed statement: the report never shows the password.
    out = (proc.stdout + proc.stderr).replace(new, "<new password>").strip()[-600:]
    if proc.returncode != 0 or "ERROR" in out or "FATAL" in out:
        return False, f"step 2 `{command}` with `{sql}`: exit {proc.returncode}\n{out}"
    again = rerender(r, extra_secrets=(("dbPassword", new),))
    try:
        r.applier.up(again.resources)
    except StepError as error:
        return False, f"step 3 (pulumi up): {str(error)[:600]}"
    status, _ = edge_request(r, "GET", "/api/health")
    return status == 200, f"rotated; the app answers {status} through the edge"


def _rotation_block(r: Rehearsal, block: str) -> tuple[bool, str]:
    """The block's shell lines run as written; its `pulumi config set` + `pulumi up` become
    a render with that secret and the applier's up."""
    shell = [ln for ln in block.splitlines() if not ln.strip().startswith("pulumi ")]
    new = secrets.token_hex(24)
    script = "set -e\n" + _placeholders(r, "\n".join(shell))
    script = script.replace("new=$(openssl rand -hex 24)", f"new={new}")
    leaked = app_env(r, "DATABASE_URL")  # the URLs whose password leaked
    if not leaked or any(login(r, url) for url in leaked.values()):
        return False, f"before the block, the app's URLs do not log in: {sorted(leaked)}"
    proc = _bash(r, script)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).replace(new, "<new password>")[-600:]
        return False, f"the block exited {proc.returncode}:\n{out}"
    # The leaked credential stops working at once, before the up.
    still = [c for c, url in leaked.items() if not login(r, url)]
    if still:
        return False, f"after the block, the leaked DATABASE_URL of {still} still logs in"
    again = rerender(r, extra_secrets=(("dbPassword", new),))
    try:
        r.applier.up(again.resources)
    except StepError as error:
        return False, f"pulumi up: {str(error)[:600]}"
    fresh = app_env(r, "DATABASE_URL")
    refused = {c: e for c, url in fresh.items() if (e := login(r, url))}
    if not fresh or refused or set(fresh.values()) & set(leaked.values()):
        return False, f"after the up, the new replicas' DATABASE_URL: refused {refused}"
    status, _ = edge_request(r, "GET", "/api/health")
    return status == 200, (
        f"the leaked URL refused right after the block ({len(leaked)} replicas); after the "
        f"up {len(fresh)}/{len(fresh)} new replicas log in; the app answers {status} "
        "through the edge"
    )


def _rollback(r: Rehearsal) -> tuple[bool, str]:
    text = (RUNBOOKS / "rollback.md").read_text()
    block = next(iter(docker_blocks(text, "The app")), "")
    m = re.search(r"pulumi config set luna:appImage (\S+)", block)
    if not m or "pulumi up" not in block:
        return False, "rollback.md: no `pulumi config set luna:appImage` / `pulumi up` block"
    previous = str(r.render.output("app_image"))  # the image the stack was first applied with
    # The deploy being rolled back: the next tag (same content, a new image reference).
    release(r, previous, NEXT)
    bumped = rerender(r, overrides=(("appImage", NEXT),), images=(NEXT,))
    r.applier.up(bumped.resources)
    again = rerender(r, overrides=(("appImage", previous),))
    try:
        result = r.applier.up(again.resources)
    except StepError as error:
        return False, f"rollback up: {str(error)[:600]}"
    touched = {u.split("::")[-1] for u, s in result.changed().items()}
    others = {t for t in touched if "app" not in t and "migrate" not in t}
    status, _ = edge_request(r, "GET", "/api/health")
    images = {r.docker("inspect", "-f", "{{.Config.Image}}", n).strip()
              for n, s in r.applier.state.containers().items() if s == "app"}  # fmt: skip
    ok = not others and status == 200 and images == {previous}
    return ok, (f"rolled back to {previous}: changed {sorted(touched)}"
                f"{'; also ' + str(sorted(others)) if others else ''}; app images {images}; "
                f"edge {status}")  # fmt: skip


SIDECAR_STOP_WITHIN_S = 5


def _minor_bump(r: Rehearsal) -> tuple[bool, str]:
    """backup-restore.md, the PostgreSQL minor image bump: the database's one restart,
    measured from the old container's stop to the new one passing its health check."""
    block = next(iter(docker_blocks((RUNBOOKS / "backup-restore.md").read_text(),
                                    "A PostgreSQL minor image bump")), "")  # fmt: skip
    m = re.search(r"pulumi config set luna:postgresImage (\S+)", block)
    if not m or "pulumi up" not in block:
        return False, "backup-restore.md: no `pulumi config set luna:postgresImage` block"
    current = next(ref for ref in r.render.images() if "/luna-postgres:" in ref)
    # A new minor stands in as a release of the same image with its own ID (the
    # stand-in's PostgreSQL is Debian's either way): the block's digest dropped.
    bumped = m.group(1).split("@")[0]
    release(r, current, bumped)
    again = rerender(r, overrides=(("postgresImage", bumped),), images=(bumped,))
    first = len(r.applier.state.steps)
    try:
        r.applier.up(again.resources)
    except StepError as error:
        return False, f"pulumi up: {str(error)[:600]}"
    try:
        return _bumped(r, first, current, bumped)
    finally:
        # Back to the stack's configured image: the scenarios after this one render
        # from the stack's config, which this bump did not change; without this,
        # their first `up` would replace the database back mid-scenario.
        baseline = rerender(r)
        r.applier.up(baseline.resources)


def _bumped(r: Rehearsal, first: int, current: str, bumped: str) -> tuple[bool, str]:
    db = r.container("database")
    # The server's container (delete-before-replace: one instance on its volume).
    steps = [(op, n, t) for op, n, t in r.applier.state.steps[first:]
             if n == "luna-database-postgres"]  # fmt: skip
    gap = sum(t for _, _, t in steps)
    # The backup and drill loops are replaced with it; each old copy must stop on its
    # stop signal, not wait out its 15 s grace for a SIGKILL (ServiceSpec.stop_signal).
    stops = [(n, t) for op, n, t in r.applier.state.steps[first:]
             if op == "delete" and n.endswith(("-postgres-backup", "-postgres-drill"))]  # fmt: skip
    slow = [f"{n} took {t:.1f} s" for n, t in stops if t >= SIDECAR_STOP_WITHIN_S]
    status, _ = edge_request(r, "GET", "/api/health")
    image = r.docker("inspect", "-f", "{{.Config.Image}}", db).strip()
    ok = bool(steps) and status == 200 and bool(stops) and not slow
    return ok, (f"{current} -> {bumped}: database down {gap:.1f} s "
                f"({', '.join(f'{op} {t:.1f} s' for op, _, t in steps)}); now {image}; "
                f"edge {status}; old backup and drill stopped in "
                f"{', '.join(f'{t:.1f} s' for _, t in stops) or 'none'}"
                f"{'; too slow: ' + ', '.join(slow) if slow else ''}")  # fmt: skip


def run(r: Rehearsal) -> Outcome:
    results = {}
    took: dict[str, float] = {}
    # The runbooks that need the object store first; then the outage may begin
    # (Rehearsal.release_store) while the rotation and the rollback, which need
    # only the daemon, run.
    steps = (("PITR", _pitr), ("minor bump", _minor_bump), ("rotation", _rotation),
             ("rollback", _rollback))  # fmt: skip
    for name, step in steps:
        if name == "rotation":
            r.release_store()
        t0 = time.monotonic()
        try:
            results[name] = step(r)
        except Exception as error:
            results[name] = (False, f"{type(error).__name__}: {error}")
        took[name] = time.monotonic() - t0
    ok = all(v[0] for v in results.values())
    figure = ", ".join(f"{k} {'ok' if v[0] else 'FAILED'}" for k, v in results.items())
    return Outcome("runbooks", ok, figure, "\n".join(f"{k} ({took[k]:.0f} s): {v[1]}"
                                                      for k, v in results.items()))  # fmt: skip

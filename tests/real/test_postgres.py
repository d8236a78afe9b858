"""The rendered backup script and the documented restore, against a real PostgreSQL.

The server runs as the ``postgres`` user (initdb refuses root) on a free port
of 127.0.0.1, started with the server flags the database container gets in
the render. The backup script is the rendered one, run with ``sh`` and the
libpq environment the backup container gets, with two asserted
substitutions: its backup directory (a temp dir) and its Pushgateway URL (a
stand-in that records the pushed metrics). The restore commands are read
from docs/runbooks/backup-restore.md and run as written there.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.support import Daemon, RenderedStack, free_port, substitute, wait_for_port
from tests.support.tools import REPO, need

pytestmark = pytest.mark.slow

BACKUP_SH = "/opt/luna/backup.sh"
BACKUP_DIR = "/var/lib/postgresql/backups"
PUSH_URL = "http://pushgateway:9091/metrics/job/luna-backup"
RUNBOOK = REPO / "docs" / "runbooks" / "backup-restore.md"
PASSWORD = "luna-test-pg-Pa55word"
STAMP_RE = re.compile(r"luna-\d{8}T\d{6}Z\.dump")


@dataclass
class Server:
    port: int
    root: Path
    bindir: Path

    def env(self) -> dict[str, str]:
        """What the backup container gets (PGHOST etc.), pointed at this server."""
        return {
            "PATH": f"{self.root}/shim:{self.bindir}:/usr/bin:/bin",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": "luna",
            "PGDATABASE": "luna",
            "PGPASSWORD": PASSWORD,
        }

    def sql(self, query: str) -> str:
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, f"psql {query!r}: {result.stderr}"
        return result.stdout.strip()


def _flags(stack: RenderedStack) -> list[str]:
    """The server flags of the rendered database container (``-c key=value`` pairs)."""
    (db,) = [
        c for c in stack.records("docker:index/container:Container") if c["hostname"] == "database"
    ]
    flags: list[str] = db["command"]
    assert flags and flags[0] == "-c", f"{stack.stack}: database command is {flags}"
    return flags


@pytest.fixture(scope="module")
def server(stacks: Callable[[str, str], RenderedStack]) -> Iterator[Server]:
    initdb = Path(need("initdb")).resolve()  # /usr/local/bin may hold a symlink
    need("pg_ctl")
    bindir = initdb.parent
    flags = _flags(stacks("staging", "docker"))
    assert _flags(stacks("prod", "docker")) == flags, "stacks differ in PostgreSQL flags"
    # Not tmp_path: the postgres user must own the data dir and reach it.
    root = Path(tempfile.mkdtemp(prefix="luna-pg-"))
    root.chmod(0o755)
    data, pwfile = root / "data", root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    shutil.chown(root, "postgres")
    shutil.chown(pwfile, "postgres")
    port = free_port()
    daemon: Daemon | None = None
    try:
        # As the image's entrypoint does with POSTGRES_USER=luna and
        # POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256.
        subprocess.run(
            [
                str(initdb),
                "-D",
                str(data),
                "-U",
                "luna",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            check=True,
            capture_output=True,
            timeout=60,
            user="postgres",
            cwd=root,
        )
        daemon = Daemon(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={root}",
                *flags,
            ],
            log=root / "postgres.log",
            user="postgres",
            cwd=root,
        )
        wait_for_port(port, proc=daemon.proc, what="postgres", log=daemon.log)
        srv = Server(port=port, root=root, bindir=bindir)
        # An open port is not a ready server: until startup finishes PostgreSQL
        # answers "the database system is starting up" (pg_isready exits 1).
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            if ready.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ready.returncode == 0, f"postgres not ready: {ready.stdout}{daemon.log.read_text()}"
        created = subprocess.run(
            [str(bindir / "createdb"), "luna"],
            env=srv.env(), capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert created.returncode == 0, f"createdb: {created.stderr}{daemon.log.read_text()}"
        yield srv
    finally:
        if daemon:
            # SIGINT is PostgreSQL's fast shutdown: no waiting for idle sessions.
            daemon.stop(signal.SIGINT)
        shutil.rmtree(root, ignore_errors=True)


class _Pushgateway:
    """Records every body POSTed, as the backup script pushes its metrics."""

    def __init__(self) -> None:
        pushes: list[tuple[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                pushes.append((self.path, body.decode()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.pushes = pushes
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/metrics/job/luna-backup"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class Backups:
    stack: RenderedStack
    server: Server
    dir: Path
    script: Path
    pushgateway: _Pushgateway

    def run(self, stamp: str) -> str:
        """One scheduled run; ``stamp`` is what ``date -u`` says (see the shim)."""
        env = {**self.server.env(), "LUNA_TEST_STAMP": stamp}
        result = subprocess.run(
            ["sh", str(self.script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{self.stack.stack}: {BACKUP_SH}: {result.stderr}"
        assert "metric push failed" not in result.stderr, result.stderr
        return result.stdout

    def dumps(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir())


@pytest.fixture(params=FULL_STACK_PARAMS, ids=stack_id)
def backups(
    request: pytest.FixtureRequest, stacks: Callable[[str, str], RenderedStack], server: Server
) -> Iterator[Backups]:
    need("wget")  # the script pushes with wget, as busybox's in the image
    stack = stacks(*request.param)
    what = f"{stack.stack}: {BACKUP_SH}"
    work = Path(tempfile.mkdtemp(prefix="luna-backup-"))
    pushgateway = _Pushgateway()
    try:
        script = stack.file("database-backup", BACKUP_SH)
        script = substitute(script, f'dir="{BACKUP_DIR}"', f'dir="{work}/backups"', what=what)
        script = substitute(script, f'"{PUSH_URL}"', f'"{pushgateway.url}"', what=what)
        (work / "backup.sh").write_text(script)
        # Runs happen hours apart in production; the shim lets ``date -u`` say
        # so, since two runs in one second would share a file name.
        shim = server.root / "shim"
        shim.mkdir(exist_ok=True)
        (shim / "date").write_text(
            '#!/bin/sh\nif [ "$1" = "-u" ] && [ -n "${LUNA_TEST_STAMP:-}" ]; then\n'
            '  echo "$LUNA_TEST_STAMP"\nelse\n  exec /bin/date "$@"\nfi\n'
        )
        (shim / "date").chmod(0o755)
        server.sql(
            "DROP TABLE IF EXISTS journal_entries; CREATE TABLE journal_entries "
            "(id serial PRIMARY KEY, mood int NOT NULL, body text NOT NULL); "
            "INSERT INTO journal_entries (mood, body) "
            "SELECT i % 10, 'entry ' || i FROM generate_series(1, 500) AS i;"
        )
        yield Backups(
            stack=stack,
            server=server,
            dir=work / "backups",
            script=work / "backup.sh",
            pushgateway=pushgateway,
        )
    finally:
        pushgateway.close()
        shutil.rmtree(work, ignore_errors=True)


def _stamp(i: int) -> str:
    return f"2026010{1 + i // 24}T{i % 24:02d}0000Z"


def test_backup_writes_a_restorable_dump_and_pushes_its_metric(backups: Backups) -> None:
    stack = backups.stack.stack
    out = backups.run(_stamp(0))
    assert backups.dumps() == [f"luna-{_stamp(0)}.dump"], f"{stack}: {backups.dumps()} ({out})"
    dump = backups.dir / backups.dumps()[0]
    assert dump.stat().st_mode & 0o077 == 0, f"{stack}: the dump is readable by others"
    listing = subprocess.run(
        [str(backups.server.bindir / "pg_restore"), "--list", str(dump)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "TABLE DATA public journal_entries" in listing, f"{stack}: dump lacks the table data"
    assert len(backups.pushgateway.pushes) == 1, f"{stack}: pushes {backups.pushgateway.pushes}"
    path, body = backups.pushgateway.pushes[0]
    assert path == "/metrics/job/luna-backup", f"{stack}: pushed to {path}"
    metrics = dict(line.split(" ", 1) for line in body.strip().splitlines())
    assert int(metrics["luna_backup_size_bytes"]) == dump.stat().st_size, f"{stack}: {body}"
    assert int(metrics["luna_backup_last_success_timestamp_seconds"]) > 1_700_000_000, body


def _runbook_restore() -> str:
    text = RUNBOOK.read_text()
    match = re.search(r"<!-- restore-procedure:[^>]*-->\s*```sh\n(.*?)```", text, re.S)
    assert match, f"{RUNBOOK}: no restore-procedure block"
    return match.group(1)


def test_documented_restore_brings_a_dropped_table_back(backups: Backups) -> None:
    stack = backups.stack.stack
    backups.run(_stamp(0))
    backups.server.sql("INSERT INTO journal_entries (mood, body) VALUES (1, 'after backup')")
    backups.server.sql("DROP TABLE journal_entries")
    procedure = substitute(
        _runbook_restore(), BACKUP_DIR, str(backups.dir), what=f"{RUNBOOK.name} restore procedure"
    )
    result = subprocess.run(
        ["sh", "-c", procedure],
        env=backups.server.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{stack}: the documented restore failed: {result.stderr}"
    assert backups.server.sql("SELECT count(*) FROM journal_entries") == "500", stack
    assert backups.server.sql("SELECT body FROM journal_entries WHERE id = 42") == "entry 42"
    # The sequence came back too: new rows do not collide with restored ids.
    backups.server.sql("INSERT INTO journal_entries (mood, body) VALUES (5, 'new')")
    assert backups.server.sql("SELECT max(id) FROM journal_entries") == "501", stack


@pytest.mark.parametrize("backups", [("staging", "docker")], ids=stack_id, indirect=True)
def test_retention_keeps_exactly_the_newest_dumps(backups: Backups) -> None:
    # staging only: prod's script is the same template with a larger number
    # (42), and 44 real dumps would cost seconds for no extra proof.
    stack = backups.stack.stack
    keep = int(backups.stack.setting("backupRetention"))
    stamps = [_stamp(i) for i in range(keep + 2)]
    for stamp in stamps:
        backups.run(stamp)
    expected = sorted(f"luna-{s}.dump" for s in stamps[-keep:])
    assert backups.dumps() == expected, (
        f"{stack}: retention {keep} left {len(backups.dumps())} dumps: "
        f"missing {sorted(set(expected) - set(backups.dumps()))}, "
        f"extra {sorted(set(backups.dumps()) - set(expected))}"
    )
    assert all(STAMP_RE.fullmatch(name) for name in backups.dumps()), backups.dumps()


def test_failed_dump_leaves_nothing_behind_and_reports_no_success(backups: Backups) -> None:
    env = {**backups.server.env(), "PGDATABASE": "no_such_db", "LUNA_TEST_STAMP": _stamp(0)}
    result = subprocess.run(
        ["sh", str(backups.script)], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    stack = backups.stack.stack
    assert result.returncode != 0, f"{stack}: a failed pg_dump exited 0"
    left = sorted(p.name for p in backups.dir.iterdir()) if backups.dir.exists() else []
    assert not left, f"{stack}: a failed backup left {left}"
    assert not backups.pushgateway.pushes, f"{stack}: a failed backup reported success"

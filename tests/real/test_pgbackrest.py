"""Continuous, encrypted, off-site archiving with the real archiver.

PostgreSQL 15 and pgBackRest 2.45 from Debian, against a local S3 behind TLS
(tests/real/s3.py). pgBackRest verifies it against the test CA
(``repo1-storage-ca-file``).

Everything runs on 127.0.0.1. What comes from the generated configuration:
the server flags (``server_flags``), pgbackrest.conf (``pgbackrest_conf``), the
secret environment (``pgbackrest_env``) and the drill script (``drill_script``).
Substitutions, each asserted: the paths of this host and ``archive_timeout``
(5 s instead of the container's 60 s, so the kill -9 test needs seconds, not
minutes; the claim measured is "every commit older than archive_timeout is
recoverable", whatever its value).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components.configs import postgres as pg
from tests.real.pg import PgServer, bindir, initdb, postgres_owned_dir
from tests.real.s3 import ACCESS_KEY, SECRET_KEY, LocalS3, local_s3
from tests.real.support import free_port, substitute
from tests.support.tools import need

pytestmark = pytest.mark.slow

BUCKET = "luna-backups-test"
CIPHER = "cipher-pass-for-tests-0123456789abcdef"
MARKER = "LUNA-MARKER-a8f3e2b1-only-in-plaintext"
ARCHIVE_TIMEOUT_S = 5


@dataclass
class Rig:
    root: Path
    env: dict[str, str]
    server: PgServer
    s3: LocalS3
    pushed: list[str]
    push_url: str

    def backrest(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [need("pgbackrest"), f"--stanza={pg.STANZA}", *args],
            capture_output=True, text=True, errors="replace", timeout=300, check=False,
            user="postgres", env=self.env, cwd=self.root,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"pgbackrest {args}: {result.stdout}{result.stderr}"
        return result

    def restore(self, name: str, *args: str) -> PgServer:
        data = self.root / name
        data.mkdir(mode=0o700)
        shutil.chown(data, "postgres", "postgres")
        self.backrest(f"--pg1-path={data}", *args, "restore")
        flags = ("-c", "archive_mode=off", "-c", f"hba_file={self.root}/local_hba.conf")
        server = PgServer(data, flags, env=self.env).start()
        # A hot standby answers queries while it still replays the archive.
        deadline = time.monotonic() + 300
        while server.local("SELECT pg_is_in_recovery()").stdout.strip() != "f":
            assert time.monotonic() < deadline, "recovery did not finish"
            time.sleep(0.2)
        return server


class _Push(BaseHTTPRequestHandler):
    bodies: list[str]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.bodies.append(self.rfile.read(length).decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = postgres_owned_dir("luna-pgbr-")
    servers: list[PgServer] = []
    httpd: ThreadingHTTPServer | None = None
    stack = contextlib.ExitStack()
    try:
        s3 = stack.enter_context(local_s3(tmp_path_factory.mktemp("s3"), buckets=(BUCKET,)))
        shutil.copy(s3.ca, root / "s3-ca.crt")
        store = pg.ObjectStore(
            bucket=BUCKET, endpoint=s3.tls_endpoint, region="us-east-1",
            path="/luna-test", retention_days=14, uri_style="path",
            ca_file=str(root / "s3-ca.crt"),
        )  # fmt: skip
        data = root / "data"
        conf = pg.pgbackrest_conf(store, pgdata="/var/lib/postgresql/data/pgdata")
        conf = substitute(conf, "pg1-path=/var/lib/postgresql/data/pgdata", f"pg1-path={data}",
                          what="pgbackrest.conf")  # fmt: skip
        conf = substitute(conf, "pg1-socket-path=/var/run/postgresql",
                          f"pg1-socket-path={root}", what="pgbackrest.conf")  # fmt: skip
        conf = substitute(conf, "lock-path=/tmp/pgbackrest", f"lock-path={root}/lock",
                          what="pgbackrest.conf")  # fmt: skip
        (root / "pgbackrest.conf").write_text(conf)
        (root / "local_hba.conf").write_text("local all all peer\n")
        (root / "pg_hba.conf").write_text(pg.pg_hba())
        (root / "pg_ident.conf").write_text(pg.pg_ident())
        for f in root.iterdir():
            if f.is_file():
                shutil.chown(f, "postgres", "postgres")
        pg_port = free_port()
        path = f"{bindir()}:{Path(need('pgbackrest')).parent}:/usr/bin:/bin"
        env = {
            "PATH": path,
            "PGBACKREST_CONFIG": str(root / "pgbackrest.conf"),
            # This host's port; the container's server listens on 5432, pgBackRest's default.
            "PGBACKREST_PG1_PORT": str(pg_port),
            **pg.pgbackrest_env(
                access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, cipher_pass=CIPHER
            ),
        }
        initdb(data)
        flags = pg.server_flags(tls_dir=None, hba_file=str(root / "pg_hba.conf"), archive=True,
                                archive_timeout_s=ARCHIVE_TIMEOUT_S)  # fmt: skip
        server = PgServer(data, flags, env=env, port=pg_port).start()
        servers.append(server)
        server.local(f"CREATE DATABASE {pg.DATABASE}")
        variables = [f"--variable={v}=Pa55word-{v}-0123456789" for v in
                     pg.ROLE_PASSWORD_VARS.values()]  # fmt: skip
        (root / "roles.sql").write_text(pg.roles_sql())
        server.local("SELECT 1", db=pg.DATABASE, extra=[*variables, "-f", str(root / "roles.sql")])

        pushed: list[str] = []
        handler = type("Push", (_Push,), {"bodies": pushed})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        push_url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics/job/luna-restore-drill"
        rig = Rig(root, env, server, s3, pushed, push_url)
        # The backup role (not the superuser) runs every pgBackRest command that
        # talks to PostgreSQL: pg1-user in the generated configuration.
        rig.backrest("stanza-create")
        rig.backrest("--type=full", "backup")
        yield rig
    finally:
        if httpd:
            httpd.shutdown()
            httpd.server_close()
        for s in servers:
            s.stop()
        stack.close()
        if not os.environ.get("LUNA_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def _wait_archived(rig: Rig, server: PgServer) -> None:
    # `check` switches the WAL segment and waits until the archive holds it.
    rig.backrest("check")


def test_point_in_time_recovery_to_t(rig: Rig) -> None:
    s = rig.server
    # pgBackRest records a backup's stop time in whole seconds and restores to T from
    # a backup that stopped before T: keep T clear of the fixture's backup.
    time.sleep(1.5)
    s.local("CREATE TABLE journal (id int PRIMARY KEY, body text)", db=pg.DATABASE)
    s.local("INSERT INTO journal SELECT g, 'before' FROM generate_series(1, 250) g",
            db=pg.DATABASE)  # fmt: skip
    t = s.local("SELECT clock_timestamp()").stdout.strip()
    time.sleep(1.2)
    s.local("INSERT INTO journal SELECT g, 'after' FROM generate_series(251, 400) g",
            db=pg.DATABASE)  # fmt: skip
    s.local("DROP TABLE journal", db=pg.DATABASE)
    _wait_archived(rig, s)

    restored = rig.restore("pitr", "--type=time", f"--target={t}", "--target-action=promote")
    try:
        rows = restored.local(
            "SELECT count(*), min(id), max(id), count(*) FILTER (WHERE body = 'after') "
            "FROM journal", db=pg.DATABASE,
        ).stdout.strip()  # fmt: skip
    finally:
        restored.stop()
    print(f"\nPITR to {t}: rows (count|min|max|later) = {rows}")
    assert rows == "250|1|250|0", f"restore to T gave {rows}, expected exactly rows 1..250"


def test_rpo_after_kill_9_under_steady_writes(rig: Rig) -> None:
    s = rig.server
    s.local(
        "CREATE TABLE beat (id bigserial PRIMARY KEY, at timestamptz NOT NULL);"
        "CREATE PROCEDURE write_beats() LANGUAGE plpgsql AS $$ BEGIN LOOP "
        "INSERT INTO beat (at) VALUES (clock_timestamp()); COMMIT; PERFORM pg_sleep(0.02); "
        "END LOOP; END $$",
        db=pg.DATABASE,
    )
    _wait_archived(rig, s)
    writer = subprocess.Popen(
        [str(bindir() / "psql"), "-X", "-h", str(rig.root), "-p", str(s.port), "-d", pg.DATABASE,
         "-c", "CALL write_beats()"],
        user="postgres", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=rig.root,
    )  # fmt: skip
    time.sleep(2.4 * ARCHIVE_TIMEOUT_S)
    assert s.daemon is not None
    killed_at = time.time()
    os.kill(s.daemon.proc.pid, signal.SIGKILL)
    s.daemon.proc.wait(timeout=30)
    writer.wait(timeout=30)
    # Children of a SIGKILLed postmaster exit on their own; wait for the data dir to be free.
    time.sleep(1)

    from_archive = rig.restore("rpo", "--type=default")
    try:
        archived = from_archive.local(
            "SELECT count(*), coalesce(extract(epoch FROM max(at)), 0) FROM beat", db=pg.DATABASE
        ).stdout.strip()
    finally:
        from_archive.stop()
    # The truth: the primary's own disk after crash recovery holds every commit.
    s.daemon.stop()
    s.daemon = None
    s.start()
    committed = s.local(
        "SELECT count(*), extract(epoch FROM max(at)) FROM beat", db=pg.DATABASE
    ).stdout.strip()
    n_archived, last_archived = archived.split("|")
    n_committed, last_committed = committed.split("|")
    old_enough = s.local(
        f"SELECT count(*) FROM beat WHERE at < to_timestamp({killed_at - ARCHIVE_TIMEOUT_S})",  # noqa: S608
        db=pg.DATABASE,
    ).stdout.strip()
    rpo = killed_at - float(last_archived)
    print(
        f"\nRPO after kill -9: {rpo:.1f} s (archive_timeout {ARCHIVE_TIMEOUT_S} s); "
        f"committed {n_committed}, recoverable from the archive {n_archived}, "
        f"committed more than archive_timeout before the kill {old_enough}"
    )
    assert int(n_committed) > 100, "the write load did not run"
    assert int(n_archived) >= int(old_enough), (
        f"only {n_archived} rows recoverable; {old_enough} were committed more than "
        f"{ARCHIVE_TIMEOUT_S} s before the kill"
    )
    assert rpo <= ARCHIVE_TIMEOUT_S + 2, f"RPO {rpo:.1f} s exceeds archive_timeout"
    assert float(last_committed) >= float(last_archived)


def test_no_bucket_object_holds_plaintext(rig: Rig) -> None:
    """Client-side encryption: the marker's text reaches the bucket only as ciphertext."""
    rig.server.local(f"CREATE TABLE secret_note AS SELECT '{MARKER}'::text AS body",
                     db=pg.DATABASE)  # fmt: skip
    # The archived WAL carries the new row's text; the backups hold the rest.
    _wait_archived(rig, rig.server)
    s3 = rig.s3.client()
    plain = []
    keys = rig.s3.keys(BUCKET)
    assert len(keys) > 10, f"the bucket holds only {keys}"
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        # OpenSSL's salted format: what pgBackRest writes for aes-256-cbc.
        if not body.startswith(b"Salted__") or MARKER.encode() in body:
            plain.append(key)
    print(f"\n{len(keys)} bucket objects, {len(plain)} not encrypted")
    assert not plain, f"objects not encrypted client-side: {plain[:5]}"


def test_drill_restores_100mb_checks_it_and_pushes_metrics(rig: Rig) -> None:
    s = rig.server
    load = (
        "CREATE TABLE note (id int PRIMARY KEY, body text);"
        "INSERT INTO note SELECT g, repeat(md5(g::text), 12) FROM generate_series(1, 220000) g;"
        # Its own second key table: xdist may run this test in a worker of its own,
        # where no other test of this module created anything.
        "CREATE TABLE drill_tag AS SELECT 1 AS id;"
    )
    s.local(
        load + "INSERT INTO note VALUES (0, '" + MARKER + "')",  # noqa: S608 - a test constant
        db=pg.DATABASE,
    )
    size = int(s.local(f"SELECT pg_database_size('{pg.DATABASE}')").stdout.strip())
    assert size >= 100 * 1024 * 1024, f"database is {size / 2**20:.0f} MB, not >= 100 MB"
    started = time.monotonic()
    rig.backrest("--type=full", "backup")
    backup_s = time.monotonic() - started
    _wait_archived(rig, s)

    scratch = rig.root / "drill"
    scratch.mkdir()
    shutil.chown(scratch, "postgres", "postgres")
    script = pg.drill_script(key_tables=("note", "drill_tag"),
                             push_url=rig.push_url, scratch=str(scratch))  # fmt: skip
    (rig.root / "drill.sh").write_text(script)
    started = time.monotonic()
    run = subprocess.run(
        ["/bin/sh", str(rig.root / "drill.sh")], capture_output=True, text=True, timeout=600,
        check=False, user="postgres", env={**rig.env, "PATH": rig.env["PATH"]}, cwd=rig.root,
    )  # fmt: skip
    drill_s = time.monotonic() - started
    assert run.returncode == 0, f"drill failed:\n{run.stdout}\n{run.stderr}"
    (body,) = rig.pushed
    metrics = dict(
        line.rsplit(" ", 1) for line in body.strip().splitlines() if not line.startswith("#")
    )
    print(
        f"\nDatabase {size / 2**20:.0f} MB: full backup {backup_s:.1f} s; drill (restore, "
        f"start, pg_amcheck, counts) {drill_s:.1f} s; pushed {metrics}"
    )
    assert metrics["luna_restore_drill_success"] == "1"
    # After the 100 MB backup too, every object starts with the cipher's header.
    s3 = rig.s3.client()
    plain = [k for k in rig.s3.keys(BUCKET)
             if s3.get_object(Bucket=BUCKET, Key=k, Range="bytes=0-7")["Body"].read()
             != b"Salted__"]  # fmt: skip
    assert not plain, f"objects not encrypted client-side: {plain[:5]}"
    assert metrics['luna_restore_drill_rows{table="note"}'] == "220001"
    assert metrics['luna_restore_drill_rows{table="drill_tag"}'] == "1"
    assert int(metrics["luna_restore_drill_duration_seconds"]) >= 0


def test_drill_failure_pushes_success_0(rig: Rig) -> None:
    """A drill that cannot decrypt the repository (a lost cipher pass) reports 0 and fails."""
    scratch = rig.root / "drill-bad"
    scratch.mkdir()
    shutil.chown(scratch, "postgres", "postgres")
    script = pg.drill_script(key_tables=("note",), push_url=rig.push_url, scratch=str(scratch))
    (rig.root / "drill-bad.sh").write_text(script)
    rig.pushed.clear()
    wrong = {**rig.env, "PGBACKREST_REPO1_CIPHER_PASS": "not-the-cipher-pass"}
    run = subprocess.run(
        ["/bin/sh", str(rig.root / "drill-bad.sh")], capture_output=True, text=True,
        errors="replace", timeout=600, check=False, user="postgres", env=wrong, cwd=rig.root,
    )  # fmt: skip
    assert run.returncode != 0, run.stdout
    assert "drill: FAILED: pgbackrest restore" in run.stderr, run.stderr
    (body,) = rig.pushed
    assert "luna_restore_drill_success 0" in body, body

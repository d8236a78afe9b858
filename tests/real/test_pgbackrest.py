"""Continuous, encrypted, off-site archiving with the real archiver.

PostgreSQL 15 and pgBackRest 2.45 from Debian, against a local S3 behind TLS
(tests/real/s3.py). pgBackRest verifies it against the test CA
(``repo1-storage-ca-file``).

Everything runs on 127.0.0.1. What comes from the generated configuration:
the server flags (``server_flags``, with pgaudit preloaded as on every stack),
pgbackrest.conf (``pgbackrest_conf``), the secrets include file
(``secrets_conf``), the backup loop (``backup_script``) and the drill script
(``drill_script``), run as generated. Arguments that differ from the
container's: this host's paths, and ``archive_timeout`` (5 s instead of 60 s,
so the kill -9 test needs seconds, not minutes; the claim measured is "every
commit older than archive_timeout is recoverable", whatever its value).
"""

from __future__ import annotations

import contextlib
import os
import re
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

from components.configs import pgbackrest as br
from components.configs import postgres as pg
from components.platforms.docker.postgres import roles_script
from tests.real.pg import PgServer, bindir, initdb, postgres_owned_dir
from tests.real.s3 import ACCESS_KEY, SECRET_KEY, LocalS3, local_s3
from tests.real.support import free_port
from tests.support.tools import need

pytestmark = pytest.mark.slow

BUCKET = "luna-backups-test"
CIPHER = "cipher-pass-for-tests-0123456789abcdef"
MARKER = "LUNA-MARKER-a8f3e2b1-only-in-plaintext"
SECRETS = br.secrets_conf(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
                          cipher_pass=CIPHER)  # fmt: skip
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
        store = br.ObjectStore(
            bucket=BUCKET, endpoint=s3.tls_endpoint, region="us-east-1",
            path="/luna-test", retention_days=14, uri_style="path",
            ca_file=str(root / "s3-ca.crt"),
        )  # fmt: skip
        data = root / "data"
        conf = br.pgbackrest_conf(store, pgdata=str(data), socket_dir=str(root),
                                  lock_path=f"{root}/lock", queue_max_mb=1024)  # fmt: skip
        (root / "pgbackrest.conf").write_text(conf)
        (root / "secrets.conf").write_text(SECRETS)
        (root / "local_hba.conf").write_text("local all all peer\n")
        (root / "pg_hba.conf").write_text(pg.pg_hba())
        (root / "pg_ident.conf").write_text(pg.pg_ident())
        for f in root.iterdir():
            if f.is_file():
                shutil.chown(f, "postgres", "postgres")
        # What the containers' scripts do first: the secrets, 0600, into the include dir.
        subprocess.run(["/bin/sh", "-c", br.install_secrets(str(root / "secrets.conf"),
                        str(root / "include"))], check=True, user="postgres")  # fmt: skip
        pg_port = free_port()
        path = f"{bindir()}:{Path(need('pgbackrest')).parent}:/usr/bin:/bin"
        env = {
            "PATH": path,
            "PGBACKREST_CONFIG": str(root / "pgbackrest.conf"),
            "PGBACKREST_CONFIG_INCLUDE_PATH": str(root / "include"),
            # This host's port; the container's server listens on 5432, pgBackRest's default.
            "PGBACKREST_PG1_PORT": str(pg_port),
            # psql and pg_isready in the scripts reach this host's port too.
            "PGPORT": str(pg_port),
        }
        initdb(data)
        flags = pg.server_flags(tls_dir=None, hba_file=str(root / "pg_hba.conf"), archive=True,
                                archive_timeout_s=ARCHIVE_TIMEOUT_S, audit=True)  # fmt: skip
        server = PgServer(data, flags, env=env, port=pg_port).start()
        servers.append(server)
        server.local(f"CREATE DATABASE {pg.DATABASE}")
        _apply_roles(root, env)
        logins = server.local(
            "SELECT count(*) FROM pg_roles WHERE rolcanlogin AND rolname LIKE 'luna_%'"
        ).stdout.strip()
        # Each password's role logs in; the app's through its login role, not the group.
        assert logins == str(len(pg.ROLE_PASSWORD_VARS)), "the role job set no roles"

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


def _apply_roles(root: Path, env: dict[str, str]) -> None:
    """The generated role job, as the database-roles container runs it: passwords in files."""
    roles = root / "roles"
    roles.mkdir()
    for var in pg.ROLE_PASSWORD_VARS.values():
        (roles / var).write_text(f"Pa55word-{var}-0123456789")
    (roles / pg.APP_LOGIN_VAR).write_text(pg.app_login_role("key", "Pa55word-app_password"))
    (root / "roles.sql").write_text(pg.roles_sql(audit=True))
    script = roles_script(run_dir=str(root), roles_dir=str(roles), sql=str(root / "roles.sql"))
    (root / "roles.sh").write_text(script)
    for f in (*roles.iterdir(), roles, root / "roles.sql", root / "roles.sh"):
        shutil.chown(f, "postgres", "postgres")
    run = subprocess.run(["/bin/sh", str(root / "roles.sh")], capture_output=True, text=True,
                         timeout=120, check=False, user="postgres", env=env, cwd=root)  # fmt: skip
    assert run.returncode == 0, f"role job failed: {run.stdout}{run.stderr}"
    assert "Pa55word" not in run.stdout + run.stderr


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


def _drill(
    rig: Rig,
    name: str,
    *,
    key_tables: tuple[str, ...] = ("note",),
    secrets: str = SECRETS,
    without_verify: bool = False,
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the generated drill as the image runs it: its own secrets file, pgaudit preloaded.

    ``without_verify`` cuts the ``pgbackrest verify`` step out, to prove that the
    end-point check alone catches a broken chain.
    """
    scratch = rig.root / name
    scratch.mkdir()
    shutil.chown(scratch, "postgres", "postgres")
    secrets_file = rig.root / f"{name}-secrets.conf"
    secrets_file.write_text(secrets)
    shutil.chown(secrets_file, "postgres", "postgres")
    script = br.drill_script(
        key_tables=key_tables, push_url=rig.push_url, scratch=str(scratch),
        secrets_file=str(secrets_file), include_dir=str(rig.root / f"{name}-include"),
        preload=pg.AUDIT_SETTINGS["shared_preload_libraries"],
    )  # fmt: skip
    if without_verify:
        start = script.index("pgbackrest --stanza=luna --output=text --verbose verify")
        end = script.index('|| fail "pgbackrest verify reported errors"\n')
        script = (
            script[:start] + script[end + len('|| fail "pgbackrest verify reported errors"\n') :]
        )
        assert "verify" not in script.split("last=$(")[0].split("cat ")[-1]
    (rig.root / f"{name}.sh").write_text(script)
    rig.pushed.clear()
    run = subprocess.run(
        ["/bin/sh", str(rig.root / f"{name}.sh")], capture_output=True, text=True,
        errors="replace", timeout=900, check=False, user="postgres",
        env={k: v for k, v in rig.env.items() if k != "PGPORT"}, cwd=rig.root,
    )  # fmt: skip
    (body,) = rig.pushed
    metrics = dict(
        line.rsplit(" ", 1) for line in body.strip().splitlines() if not line.startswith("#")
    )
    return run, metrics


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

    started = time.monotonic()
    run, metrics = _drill(rig, "drill", key_tables=("note", "drill_tag"))
    drill_s = time.monotonic() - started
    assert run.returncode == 0, f"drill failed:\n{run.stdout}\n{run.stderr}"
    print(
        f"\nDatabase {size / 2**20:.0f} MB: full backup {backup_s:.1f} s; drill (verify, "
        f"restore, start with pgaudit, end point, pg_amcheck, counts) {drill_s:.1f} s; "
        f"pushed {metrics}"
    )
    assert "replayed to 0000000" in run.stdout, run.stdout
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


def test_drill_fails_on_a_wrong_cipher_pass(rig: Rig) -> None:
    wrong = SECRETS.replace(CIPHER, "not-the-cipher-pass")
    assert wrong != SECRETS
    run, metrics = _drill(rig, "drill-cipher", key_tables=("beat",), secrets=wrong)
    assert run.returncode != 0, run.stdout
    assert "drill: FAILED" in run.stderr, run.stderr
    assert metrics["luna_restore_drill_success"] == "0"


@contextlib.contextmanager
def _corrupted(rig: Rig, key: str) -> Iterator[None]:
    """Flip bytes in the middle of one bucket object; put it back afterwards."""
    s3 = rig.s3.client()
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    middle = len(body) // 2
    broken = (
        body[:middle] + bytes(b ^ 0xFF for b in body[middle : middle + 64]) + body[middle + 64 :]
    )
    s3.put_object(Bucket=BUCKET, Key=key, Body=broken)
    try:
        yield
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def test_drill_fails_on_a_corrupted_wal_segment(rig: Rig) -> None:
    """One archived segment after the newest backup is broken: recovery would stop there."""
    s = rig.server
    s.local("CREATE TABLE IF NOT EXISTS chain (id int)", db=pg.DATABASE)
    rig.backrest("--type=full", "backup")
    s.local("INSERT INTO chain SELECT generate_series(1, 200000)", db=pg.DATABASE)
    _wait_archived(rig, s)
    s.local("INSERT INTO chain SELECT generate_series(1, 1000)", db=pg.DATABASE)
    _wait_archived(rig, s)
    wal = sorted(k for k in rig.s3.keys(BUCKET) if "/archive/" in k and k.endswith(".zst"))
    info = rig.backrest("info", "--output=json").stdout
    stop = re.findall(r'"archive":\{"start":"[0-9A-F]{24}","stop":"([0-9A-F]{24})"', info)[-1]
    after = [k for k in wal if k.rsplit("/", 1)[1][:24] > stop]
    assert len(after) >= 2, f"need two segments after the backup's {stop}: {after}"
    with _corrupted(rig, after[0]):
        run, metrics = _drill(rig, "drill-wal", key_tables=("chain",))
        # The second line of defence on its own: the replay must reach the newest segment.
        alone, alone_metrics = _drill(rig, "drill-wal-end", key_tables=("chain",),
                                      without_verify=True)  # fmt: skip
    print(f"\ncorrupted {after[0]}: drill said {run.stderr.strip().splitlines()[-1:]}; "
          f"without verify: {alone.stderr.strip().splitlines()[-1:]}")  # fmt: skip
    assert run.returncode != 0, run.stdout
    assert "drill: FAILED" in run.stderr, run.stderr
    assert metrics["luna_restore_drill_success"] == "0"
    assert alone.returncode != 0, alone.stdout
    assert "drill: FAILED: recovery stopped before" in alone.stderr, alone.stderr
    assert alone_metrics["luna_restore_drill_success"] == "0"


def test_drill_fails_on_a_corrupted_backup_file(rig: Rig) -> None:
    s = rig.server
    s.local("CREATE TABLE IF NOT EXISTS chain (id int)", db=pg.DATABASE)
    rig.backrest("--type=full", "backup")
    info = rig.backrest("info", "--output=json").stdout
    label = re.findall(r'"label":"([0-9F_-]+)"', info)[-1]
    files = [k for k in rig.s3.keys(BUCKET) if f"/backup/{pg.STANZA}/{label}/" in k
             and "backup.manifest" not in k]  # fmt: skip
    biggest = max(files, key=lambda k: rig.s3.client().head_object(Bucket=BUCKET, Key=k)[
        "ContentLength"])  # fmt: skip
    with _corrupted(rig, biggest):
        run, metrics = _drill(rig, "drill-file", key_tables=("chain",))
    print(f"\ncorrupted {biggest}: drill said {run.stderr.strip().splitlines()[-1:]}")
    assert run.returncode != 0, run.stdout
    assert "drill: FAILED" in run.stderr, run.stderr
    assert metrics["luna_restore_drill_success"] == "0"

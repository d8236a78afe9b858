"""An object-store outage and the backup loop, with the real archiver and the generated scripts.

PostgreSQL 15 (pgaudit preloaded) archives through pgBackRest 2.45 to the
local S3 (tests/real/s3.py) via a switchable TCP relay: ``up`` forwards,
``down`` accepts connections and never answers, which is what a blackholed or
hung endpoint looks like to a client (the kernel completes the handshake; no
byte comes back). The server uses the shipped ``archive_timeout`` (60 s) and
the generated ``backup_script`` runs beside it as the ``database-backup``
container runs it, heartbeat included.

Figures printed (``-s``): how long one archive-push takes to fail against the
dead endpoint, when the age of the last archived WAL crosses the alert's
threshold, pg_wal's growth over a 6-minute outage, and the archive catching up
with nothing lost afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.configs import pgbackrest as br
from components.configs import postgres as pg
from components.configs.rules import WAL_ARCHIVE_MAX_AGE_S
from tests.real.pg import PgServer, bindir, initdb, postgres_owned_dir
from tests.real.s3 import ACCESS_KEY, SECRET_KEY, local_s3
from tests.real.support import free_port
from tests.support.tools import need

pytestmark = [
    pytest.mark.slow,
    # The local stand-in servers (S3 relay, DNS, hooks) leave sockets to the garbage
    # collector when a peer drops mid-connection; Python reports them as unraisable
    # ResourceWarnings, which filterwarnings=error would turn into this test's error.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

BUCKET = "luna-outage-test"
OUTAGE_S = 360


class Relay:
    """127.0.0.1:<port> to ``target``; :attr:`up` False holds new connections silent."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.up = True
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                self.held.append(client)  # never read, never answered
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()
        for s in self.held:
            s.close()


@dataclass
class Outage:
    root: Path
    env: dict[str, str]
    server: PgServer
    relay: Relay

    def sql(self, text: str) -> str:
        return self.server.local(text, db=pg.DATABASE).stdout.strip()

    def backrest(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [need("pgbackrest"), f"--stanza={pg.STANZA}", *args], capture_output=True,
            text=True, timeout=600, check=False, user="postgres", env=self.env, cwd=self.root,
        )  # fmt: skip


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    root = postgres_owned_dir("luna-outage-")
    stack = contextlib.ExitStack()
    server: PgServer | None = None
    relay: Relay | None = None
    try:
        s3 = stack.enter_context(local_s3(tmp_path_factory.mktemp("s3"), buckets=(BUCKET,)))
        relay = Relay(s3.tls_port)
        shutil.copy(s3.ca, root / "s3-ca.crt")
        store = br.ObjectStore(
            bucket=BUCKET, endpoint=f"localhost:{relay.port}", region="us-east-1",
            path="/luna-outage", retention_days=14, uri_style="path",
            ca_file=str(root / "s3-ca.crt"),
        )  # fmt: skip
        data = root / "data"
        # The bound a 1 GiB volume gets (a quarter of it), as the platform computes it.
        conf = br.pgbackrest_conf(store, pgdata=str(data), socket_dir=str(root),
                                  lock_path=f"{root}/lock", queue_max_mb=256)  # fmt: skip
        (root / "pgbackrest.conf").write_text(conf)
        secrets = br.secrets_conf(
            access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
            cipher_pass="outage-cipher-pass-0123456789",
        )  # fmt: skip
        (root / "secrets.conf").write_text(secrets)
        (root / "pg_hba.conf").write_text(pg.pg_hba())
        (root / "pg_ident.conf").write_text(pg.pg_ident())
        for f in root.iterdir():
            shutil.chown(f, "postgres", "postgres")
        subprocess.run(["/bin/sh", "-c", br.install_secrets(str(root / "secrets.conf"),
                        str(root / "include"))], check=True, user="postgres")  # fmt: skip
        port = free_port()
        env = {
            "PATH": f"{bindir()}:{Path(need('pgbackrest')).parent}:/usr/bin:/bin",
            "PGBACKREST_CONFIG": str(root / "pgbackrest.conf"),
            "PGBACKREST_CONFIG_INCLUDE_PATH": str(root / "include"),
            "PGBACKREST_PG1_PORT": str(port),
            "PGPORT": str(port),
        }
        initdb(data)
        # The shipped archive_timeout: the alert's threshold is built on it.
        flags = pg.server_flags(tls_dir=None, hba_file=str(root / "pg_hba.conf"),
                                archive=True, audit=True)  # fmt: skip
        server = PgServer(data, flags, env=env, port=port).start()
        server.local(f"CREATE DATABASE {pg.DATABASE}")
        variables = [f"--variable={v}=Pa55word-{v}-0123456789"
                     for v in pg.ROLE_PASSWORD_VARS.values()]  # fmt: skip
        variables.append(f"--variable={pg.APP_LOGIN_VAR}={pg.app_login_role('k', 'p')}")
        (root / "roles.sql").write_text(pg.roles_sql(audit=True))
        server.local("SELECT 1", db=pg.DATABASE, extra=[*variables, "-f", str(root / "roles.sql")])
        yield Outage(root, env, server, relay)
    finally:
        if server:
            server.stop()
        if relay:
            relay.close()
        stack.close()
        shutil.rmtree(root, ignore_errors=True)


def _loop(o: Outage, name: str, **kw: int | str | None) -> subprocess.Popen[str]:
    """The generated backup loop, started as the database-backup container starts it."""
    script = br.backup_script(
        secrets_file=str(o.root / "secrets.conf"), include_dir=str(o.root / f"{name}-include"),
        socket_dir=str(o.root), **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    (o.root / f"{name}.sh").write_text(script)
    return subprocess.Popen(
        ["/bin/sh", str(o.root / f"{name}.sh")], user="postgres", env=o.env, cwd=o.root,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[str]) -> str:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def _pg_wal_mb(o: Outage) -> float:
    return float(o.sql("SELECT coalesce(sum(size), 0) / 1048576.0 FROM pg_ls_waldir()"))


def _age(o: Outage) -> float:
    value = o.sql(
        "SELECT coalesce(extract(epoch FROM now() - last_archived_time), -1) FROM pg_stat_archiver"
    )
    return float(value)


def test_backup_loop_survives_a_dead_store_without_touching_sessions(outage: Outage) -> None:
    o = outage
    postmaster = o.server.daemon.proc.pid if o.server.daemon else 0
    session = subprocess.Popen(
        [str(bindir() / "psql"), "-X", "-h", str(o.root), "-p", str(o.server.port),
         "-d", pg.DATABASE, "-c", "SELECT pg_sleep(150)"],
        user="postgres", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    # A metric push to a dead port must change nothing either.
    loop = _loop(o, "loop", interval_s=10, retry_s=5, heartbeat_s=5,
                 push_url="http://127.0.0.1:9/metrics/job/luna-backup")  # fmt: skip
    deadline = time.monotonic() + 240
    info = ""
    while time.monotonic() < deadline and '"type":"full"' not in info:
        time.sleep(3)
        info = o.backrest("info", "--output=json").stdout
    assert '"type":"full"' in info, "the loop took no first (full) backup"
    labels = set(re.findall(r'"label":"([^"]+)"', info))
    o.relay.up = False
    time.sleep(100)
    o.relay.up = True
    # Future backups go on: the next attempt after the store returns succeeds.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(5)
        info = o.backrest("info", "--output=json").stdout
        if set(re.findall(r'"label":"([^"]+)"', info)) - labels:
            break
    out = _stop(loop)
    print(f"\nbackup loop, store down 100 s then back:\n{out}")
    assert "metric push failed" in out, out
    assert "backup: FAILED; next attempt" in out, "no attempt failed while the store was down"
    assert set(re.findall(r'"label":"([^"]+)"', info)) - labels, "no backup after the outage"
    said, _ = session.communicate(timeout=120)
    assert session.returncode == 0, f"a session was cut: {said}"
    assert o.server.daemon and o.server.daemon.proc.pid == postmaster
    log = o.server.daemon.output()
    assert "terminating any other active server processes" not in log, "crash recovery ran"


def test_dead_store_fails_each_push_fast_alerts_and_loses_nothing(outage: Outage) -> None:
    o = outage
    assert o.backrest("stanza-create").returncode == 0
    assert o.backrest("--type=full", "backup").returncode == 0
    assert o.backrest("check").returncode == 0, "the archive does not work before the outage"
    o.sql("CREATE TABLE IF NOT EXISTS during (id serial, at timestamptz DEFAULT now())")
    loop = _loop(o, "heartbeat", interval_s=86400, retry_s=86400, heartbeat_s=30, push_url=None)
    try:
        time.sleep(70)
        assert _age(o) < WAL_ARCHIVE_MAX_AGE_S, "archiving is stale before the outage"
        wal_before = _pg_wal_mb(o)
        o.relay.up = False
        down = time.monotonic()
        crossed: float | None = None
        rows = 0
        while time.monotonic() - down < OUTAGE_S:
            o.sql("INSERT INTO during DEFAULT VALUES")
            rows += 1
            if crossed is None and _age(o) > WAL_ARCHIVE_MAX_AGE_S:
                crossed = time.monotonic() - down
            time.sleep(5)
        wal_peak = _pg_wal_mb(o)
        waiting = int(
            o.sql("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")
        )
        failed = int(o.sql("SELECT failed_count FROM pg_stat_archiver"))
        o.relay.up = True
        back = time.monotonic()
        target = o.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        while o.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < target:
            assert time.monotonic() - back < 600, "the archive never caught up"
            time.sleep(2)
        caught_up = time.monotonic() - back
    finally:
        _stop(loop)
    log = o.server.daemon.output() if o.server.daemon else ""
    pushes = _failed_push_durations(log)
    assert pushes, f"no failed archive-push in the server log:\n{log[-3000:]}"
    print(
        f"\nstore down {OUTAGE_S} s: {len(pushes)} failed archive-push, each "
        f"{min(pushes):.1f}-{max(pushes):.1f} s; failed_count {failed}; "
        f"last-archive age crossed {WAL_ARCHIVE_MAX_AGE_S} s at +{crossed} s; "
        f"pg_wal {wal_before:.0f} MB -> {wal_peak:.0f} MB ({waiting} segments waiting to be "
        f"archived; PostgreSQL recycles the rest); caught up {caught_up:.0f} s after"
    )
    assert max(pushes) < 60, f"an archive-push took {max(pushes):.0f} s against a dead store"
    assert failed > 0
    # The alert fires `for` 1m after the threshold, plus a scrape and an evaluation.
    assert crossed is not None and crossed + 60 + 30 <= 300, f"detected at +{crossed} s"
    assert "dropped WAL file" not in log, "WAL was dropped below the queue bound"
    assert o.backrest("check").returncode == 0
    dropped = _restored_rows(o)
    assert dropped >= rows, f"{rows} rows written during the outage, {dropped} restored"


def _failed_push_durations(log: str) -> list[float]:
    """Seconds from each archive-push's begin to its abort (pgBackRest's console log)."""

    def seconds(line: str) -> float:
        h, m, sec = line.split(" ")[1].split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)

    durations: list[float] = []
    begun: float | None = None
    for line in log.splitlines():
        if "archive-push command begin" in line:
            begun = seconds(line)
        elif "archive-push command end: aborted" in line and begun is not None:
            durations.append(seconds(line) - begun)
            begun = None
    return durations


def test_pg_wal_is_bounded_by_the_archive_queue(outage: Outage) -> None:
    """Past archive-push-queue-max, pgBackRest drops WAL instead of filling the disk."""
    o = outage
    o.relay.up = False
    try:
        for _ in range(24):
            o.sql("CREATE TABLE IF NOT EXISTS filler (x int); INSERT INTO filler VALUES (1)")
            o.sql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 240
        log = ""
        while "dropped WAL file" not in log:
            assert time.monotonic() < deadline, f"nothing dropped:\n{log[-2000:]}"
            time.sleep(5)
            log = o.server.daemon.output() if o.server.daemon else ""
        o.sql("CHECKPOINT")
        ready = int(
            o.sql("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")
        )
        print(f"\nqueue bound 256 MiB: {ready} segments still waiting after the drop; "
              f"pg_wal {_pg_wal_mb(o):.0f} MB")  # fmt: skip
        assert ready * 16 <= 256, f"{ready} segments wait: pg_wal is not bounded"
    finally:
        o.relay.up = True


def _restored_rows(o: Outage) -> int:
    data = o.root / "restored"
    data.mkdir(mode=0o700)
    shutil.chown(data, "postgres", "postgres")
    run = o.backrest(f"--pg1-path={data}", "--type=default", "restore")
    assert run.returncode == 0, run.stderr + run.stdout
    (o.root / "local_hba.conf").write_text("local all all peer\n")
    flags = ("-c", "archive_mode=off", "-c", f"hba_file={o.root}/local_hba.conf",
             "-c", "shared_preload_libraries=pgaudit,pg_stat_statements")  # fmt: skip
    restored = PgServer(data, flags, env=o.env).start()
    try:
        deadline = time.monotonic() + 300
        while restored.local("SELECT pg_is_in_recovery()").stdout.strip() != "f":
            assert time.monotonic() < deadline, "recovery did not finish"
            time.sleep(0.5)
        return int(restored.local("SELECT count(*) FROM during", db=pg.DATABASE).stdout.strip())
    finally:
        restored.stop()

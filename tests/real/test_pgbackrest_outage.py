"""An object-store outage and the backup loop, with the real archiver and the generated scripts.

PostgreSQL 15 (pgaudit preloaded) archives through pgBackRest 2.45 to the
local S3 (tests/real/s3.py) via a switchable TCP relay: ``up`` forwards,
``down`` accepts connections and never answers, which is what a blackholed or
hung endpoint looks like to a client (the kernel completes the handshake; no
byte comes back). The server uses the shipped ``archive_timeout`` (60 s) and
the generated ``backup_script`` runs beside it as the ``database-backup``
container runs it, heartbeat included.

Figures printed (``-s``): the backup loop's passes while the store is dark, and
pg_wal past ``archive-push-queue-max``. The 6-minute outage with the shipped
timings (each push failing fast, the alert reaching the pager, pg_wal bounded,
the archive catching up with no segment missing) is the rehearsal's
(tests/rehearsal/scenarios/alerts.py), on the shipped containers.
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

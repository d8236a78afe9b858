"""PostgreSQL 15 with pgaudit (Debian's postgresql-15-pgaudit), the rendered flags and audit SQL.

The server runs as the ``postgres`` user on a free port of 127.0.0.1 with the
``-c`` flags the database container gets in the render (less the ones that
name the container's TLS files, pg_hba and archiver: tests/real/test_postgres_tls.py
and tests/real/test_pgbackrest.py run those); the audit setup is the rendered
``roles.sql`` the container runs with psql on every start, and the tables the
migrations make are made by the owner role, as the migration job makes them.
Then the server log, the only thing an operator ships, is read back.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.configs import postgres as pg
from components.platforms.docker.postgres import CONF_DIR
from tests.real.support import Daemon, RenderedStack, free_port, wait_for_port
from tests.support.tools import need

pytestmark = pytest.mark.slow

ROLES_SQL = f"{CONF_DIR}/roles.sql"
# Flags that name the container's files or its archiver; the rest run here as rendered.
CONTAINER_ONLY = ("ssl", "ssl_cert_file", "ssl_key_file", "hba_file", "ident_file",
                  "archive_mode", "archive_command")  # fmt: skip
PASSWORD = "luna-test-pg-Pa55word"
PHI_EMAIL = "jane.doe+therapy@example.com"
PHI_PHONE = "+44 20 7946 0958"


@dataclass
class Server:
    port: int
    root: Path
    bindir: Path
    daemon: Daemon

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bindir}:/usr/bin:/bin",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": "luna",
            "PGDATABASE": "luna",
            "PGPASSWORD": PASSWORD,
        }

    def psql(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"psql {args}: {result.stderr}"
        return result

    def sql(self, query: str) -> str:
        return self.psql("-c", query).stdout.strip()

    def log(self) -> str:
        return self.daemon.output()


def _flags(stack: RenderedStack) -> list[str]:
    (db,) = [
        c for c in stack.records("docker:index/container:Container") if c["hostname"] == "database"
    ]
    flags: list[str] = db["command"]
    assert flags and flags[0] == "-c", f"{stack.stack}: database command is {flags}"
    pairs = list(zip(flags[::2], flags[1::2], strict=True))
    return [
        part
        for c, setting in pairs
        if setting.split("=", 1)[0] not in CONTAINER_ONLY
        for part in (c, setting)
    ]


@pytest.fixture(scope="module")
def audited(stacks: Callable[[str, str], RenderedStack]) -> Iterator[Server]:
    initdb = Path(need("initdb")).resolve()
    bindir = initdb.parent
    pgaudit = bindir.parent / "lib" / "pgaudit.so"
    if not pgaudit.exists():
        need("pgaudit (postgresql-15-pgaudit)")
    stack = stacks("prod", "docker")
    flags = _flags(stack)
    # Memory follows each stack's postgresMemoryMb; every other flag is shared.
    sized = ("shared_buffers=", "effective_cache_size=")
    same = [f for f in flags if not f.startswith(sized)]
    staging = [f for f in _flags(stacks("staging", "docker")) if not f.startswith(sized)]
    assert staging == same, "stacks differ in PostgreSQL flags"
    root = Path(tempfile.mkdtemp(prefix="luna-pgaudit-"))
    root.chmod(0o755)
    (root / "pw").write_text(PASSWORD + "\n")
    shutil.chown(root, "postgres")
    shutil.chown(root / "pw", "postgres")
    port = free_port()
    daemon: Daemon | None = None
    try:
        subprocess.run(
            [str(initdb), "-D", str(root / "data"), "-U", "luna", f"--pwfile={root / 'pw'}",
             "--auth-local=trust", "--auth-host=scram-sha-256"],
            check=True, capture_output=True, timeout=60, user="postgres", cwd=root,
        )  # fmt: skip
        daemon = Daemon(
            [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}", *flags],
            log=root / "postgres.log", user="postgres", cwd=root,
        )  # fmt: skip
        wait_for_port(port, proc=daemon.proc, what="postgres", log=daemon.log)
        srv = Server(port=port, root=root, bindir=bindir, daemon=daemon)
        deadline = time.monotonic() + 30
        while srv.psql("-d", "postgres", "-c", "SELECT 1", check=False).returncode != 0:
            assert time.monotonic() < deadline, f"postgres not ready: {daemon.output()}"
            time.sleep(0.1)
        srv.psql("-d", "postgres", "-c", "CREATE DATABASE luna")
        # A table the migrations made before the audit job first ran ...
        srv.sql("CREATE TABLE patients (id serial PRIMARY KEY, email text, phone text)")
        srv.sql(f"INSERT INTO patients (email, phone) VALUES ('{PHI_EMAIL}', '{PHI_PHONE}')")  # noqa: S608
        # ... the rendered roles.sql, run as the container runs it (psql -X -f, the
        # role passwords as psql variables) ...
        sql = root / "roles.sql"
        sql.write_text(stack.file("database", ROLES_SQL))
        variables = [f"--variable={v}=Pa55word-{v}-0123456789" for v in
                     pg.ROLE_PASSWORD_VARS.values()]  # fmt: skip
        variables.append(f"--variable={pg.APP_LOGIN_VAR}={pg.app_login_role('k', 'p')}")
        srv.psql("-q", *variables, "-f", str(sql))
        srv.psql("-q", *variables, "-f", str(sql))  # every start runs it again
        # ... and one a later migration makes, as the owner role the migrations run as.
        srv.sql(
            f"SET ROLE {pg.OWNER_ROLE}; "
            "CREATE TABLE journal_entries (id serial PRIMARY KEY, patient int, mood int, body text)"
        )
        srv.sql("INSERT INTO journal_entries (patient, mood, body) VALUES (1, 3, 'hard day')")
        yield srv
    finally:
        if daemon:
            daemon.stop(signal.SIGINT)
        shutil.rmtree(root, ignore_errors=True)


def _audit_lines(log: str, marker: str) -> list[str]:
    return [line for line in log.splitlines() if "AUDIT: OBJECT," in line and marker in line]


def test_select_and_update_on_patient_tables_write_audit_lines(audited: Server) -> None:
    audited.sql("SELECT mood FROM journal_entries WHERE patient = 1")
    audited.sql("UPDATE patients SET phone = '+1 555 010 9999' WHERE id = 1")
    log = audited.log()
    reads = _audit_lines(log, ",READ,SELECT,TABLE,public.journal_entries,")
    writes = _audit_lines(log, ",WRITE,UPDATE,TABLE,public.patients,")
    print(f"\npgaudit: {len(reads)} READ line(s), {len(writes)} WRITE line(s); e.g. {writes[:1]}")
    assert reads, f"no AUDIT line for the SELECT on journal_entries:\n{log}"
    assert writes, f"no AUDIT line for the UPDATE on patients:\n{log}"
    for line in reads + writes:
        # Who (prefix), which object, and no statement text or parameters.
        assert "user=luna db=luna" in line, line
        assert line.endswith("<not logged>,<not logged>"), line
        assert "555 010 9999" not in line, line


def test_slow_query_with_a_phi_literal_leaves_no_trace_and_is_normalised(audited: Server) -> None:
    audited.sql("SELECT pg_stat_statements_reset()")
    started = time.monotonic()
    # Literals on purpose (constants): the point is that they never reach the log.
    audited.sql(
        f"SELECT count(*), pg_sleep(1.2) FROM patients WHERE email = '{PHI_EMAIL}'"  # noqa: S608
        f" OR phone = '{PHI_PHONE}'"
    )
    elapsed = time.monotonic() - started
    # A failing statement (the default logs it as STATEMENT:) and a prepared one.
    bad = f"SELECT * FROM patients WHERE email = '{PHI_EMAIL}' AND no_such_column = 1"  # noqa: S608
    failed = audited.psql("-c", bad, check=False)
    assert failed.returncode != 0
    prepared = "PREPARE q(text) AS SELECT id FROM patients WHERE email = $1; "
    audited.sql(prepared + f"EXECUTE q('{PHI_EMAIL}')")
    log = audited.log()
    for literal in (PHI_EMAIL, PHI_PHONE, "jane.doe", "7946 0958"):
        assert literal not in log, f"the server log holds {literal!r}:\n{log}"
    rows = audited.sql(
        "SELECT calls, round(mean_exec_time), query FROM pg_stat_statements "
        "WHERE query LIKE '%pg_sleep%' AND query NOT LIKE '%pg_stat_statements%'"
    )
    print(f"\nslow query took {elapsed:.2f}s; pg_stat_statements: {rows}")
    assert rows, "pg_stat_statements did not record the slow query"
    calls, mean_ms, query = rows.splitlines()[0].split("|", 2)
    assert int(calls) == 1 and float(mean_ms) >= 1000, rows
    assert PHI_EMAIL not in query and PHI_PHONE not in query, query
    assert "email = $" in query and "phone = $" in query, f"not normalised: {query}"

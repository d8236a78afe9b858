"""PostgreSQL 15 (Debian) with the generated flags, pg_hba, roles and a CA-signed certificate.

The server runs the flags, ``pg_hba.conf``, ``pg_ident.conf`` and roles script
that components/configs/postgres.py generates for the database container. The
client is libpq's psql given what Prisma's URL asks for: quaint reads
``sslmode=require`` + ``sslaccept=strict`` + ``sslcert=<CA>`` as "TLS, verify the
chain against this root, check the host name" (prisma-engines
quaint/src/connector/postgres/url.rs and native/mod.rs), which is libpq's
``sslmode=verify-full sslrootcert=<CA>``.

The server archives WAL as a stack with backups does (``archive=True``); no
repository is reachable here, so every attempt fails, which is what the
exporter test below reads.

The server runs under an OpenSSL configuration that allows every protocol version
(Debian's default, ``SECLEVEL=2``, would refuse TLS 1.1 on its own): what refuses an
old protocol here is the generated ``ssl_min_protocol_version``, as it must be in
any image, whatever its OpenSSL defaults.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from components.configs import postgres as pg
from tests.real.pg import PgServer, bindir, initdb, postgres_owned_dir, server_files
from tests.real.support import Daemon, free_port, render_stack, substitute, wait_for_port
from tests.support.tls import CaSignedPair, make_ca_signed_pair
from tests.support.tools import need

pytestmark = [
    pytest.mark.slow,
    # The local stand-in servers (S3 relay, DNS, hooks) leave sockets to the garbage
    # collector when a peer drops mid-connection; Python reports them as unraisable
    # ResourceWarnings, which filterwarnings=error would turn into this test's error.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

PASSWORDS = {
    pg.OWNER_ROLE: "owner-Pa55word-0123456789",
    # Every character a URL or SQL would trip on.
    pg.APP_ROLE: "app p@ss:w/rd#?&%'\"\\-0123456789",
    pg.MONITOR_ROLE: "monitor-Pa55word-0123456789",
    pg.BACKUP_ROLE: "backup-Pa55word-0123456789",
}
APP_LOGIN = pg.app_login_role("login-key", PASSWORDS[pg.APP_ROLE])
"""The app logs in as this member of the NOLOGIN group luna_app (database.py)."""


def libpq_from_prisma(url: str) -> str:
    """The libpq URL with the same verification as Prisma's (see the module docstring)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert query["sslmode"] == ["require"], f"Prisma URL does not require TLS: {url}"
    assert query["sslaccept"] == ["strict"], f"Prisma URL accepts invalid certificates: {url}"
    (ca,) = query["sslcert"]
    return f"{parts.scheme}://{parts.netloc}{parts.path}?sslmode=verify-full&sslrootcert={ca}"


# Every protocol version and cipher allowed, for the server and for the old client.
PERMISSIVE_OPENSSL = """openssl_conf = luna_test
[luna_test]
ssl_conf = ssl_section
[ssl_section]
system_default = system_default_section
[system_default_section]
MinProtocol = TLSv1
CipherString = DEFAULT@SECLEVEL=0
"""


def psql(url: str, sql: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bindir() / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **env} if env else None,
    )  # fmt: skip


class Stack:
    def __init__(
        self, server: PgServer, pair: CaSignedPair, other: CaSignedPair, openssl_conf: Path
    ) -> None:
        self.server, self.pair, self.other = server, pair, other
        self.openssl_env = {"OPENSSL_CONF": str(openssl_conf)}

    def url(self, role: str, *, ca: Path | None = None, host: str = "localhost") -> str:
        user = APP_LOGIN if role == pg.APP_ROLE else role
        prisma = pg.prisma_url(
            user=user, password=PASSWORDS.get(role, "x"), host=host, ca_file=str(ca or self.pair.ca)
        ).replace(":5432/", f":{self.server.port}/")
        return libpq_from_prisma(prisma)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    certs = tmp_path_factory.mktemp("pg-tls")
    pair = make_ca_signed_pair(certs, common_name="localhost", alt_names="DNS:localhost")
    other_dir = tmp_path_factory.mktemp("pg-other-ca")
    other = make_ca_signed_pair(other_dir, common_name="localhost", alt_names="DNS:localhost")
    root = postgres_owned_dir("luna-pg-tls-")
    conf, tls = server_files(root, pair.cert, pair.key)
    openssl_conf = root / "openssl.cnf"
    openssl_conf.write_text(PERMISSIVE_OPENSSL)
    openssl_conf.chmod(0o644)
    initdb(root / "data")
    flags = pg.server_flags(
        tls_dir=str(tls), hba_file=str(conf / "pg_hba.conf"), archive=True, audit=True
    )
    server = PgServer(root / "data", flags, env={"OPENSSL_CONF": str(openssl_conf)}).start()
    try:
        server.local(f"CREATE DATABASE {pg.DATABASE}")
        script = root / "roles.sql"
        script.write_text(pg.roles_sql())
        variables = [f"--variable={pg.ROLE_PASSWORD_VARS[r]}={p}" for r, p in PASSWORDS.items()]
        variables.append(f"--variable={pg.APP_LOGIN_VAR}={APP_LOGIN}")
        for _ in range(2):  # idempotent: the container runs it on every start
            server.local("SELECT 1", db=pg.DATABASE, extra=[*variables, "-f", str(script)])
        yield Stack(server, pair, other, openssl_conf)
    finally:
        server.stop()
        log = server.daemon.log.read_text() if server.daemon else ""
        shutil.rmtree(root, ignore_errors=True)
        # No role password reached the server log (log_statement is off while roles are set).
        for password in PASSWORDS.values():
            assert password not in log, "a role password reached the server log"


def test_verified_client_connects_over_tls(stack: Stack) -> None:
    result = psql(
        stack.url(pg.APP_ROLE), "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("t|TLSv1."), result.stdout


def test_plaintext_is_refused(stack: Stack) -> None:
    url = stack.url(pg.APP_ROLE).split("?")[0] + "?sslmode=disable"
    result = psql(url, "SELECT 1")
    assert result.returncode != 0
    assert "no encryption" in result.stderr, result.stderr


def test_client_trusting_another_ca_is_refused(stack: Stack) -> None:
    result = psql(stack.url(pg.APP_ROLE, ca=stack.other.ca), "SELECT 1")
    assert result.returncode != 0
    assert "certificate verify failed" in result.stderr, result.stderr


def test_wrong_host_name_is_refused(stack: Stack) -> None:
    result = psql(stack.url(pg.APP_ROLE, host="127.0.0.1"), "SELECT 1")
    assert result.returncode != 0
    assert "does not match host name" in result.stderr, result.stderr


def test_superuser_never_logs_in_over_the_network(stack: Stack) -> None:
    stack.server.local("ALTER ROLE postgres PASSWORD 'super-Pa55word-0123456789'")
    url = stack.url("postgres").replace("postgres:x@", "postgres:super-Pa55word-0123456789@")
    result = psql(url, "SELECT 1")
    assert result.returncode != 0
    assert 'rejects connection for host "127.0.0.1", user "postgres"' in result.stderr, (
        result.stderr
    )


def test_backup_role_never_logs_in_over_the_network(stack: Stack) -> None:
    """pgBackRest connects as luna_backup over the local socket only (pg_ident maps the OS
    user); with its right password, over verified TLS, the network still refuses it."""
    result = psql(stack.url(pg.BACKUP_ROLE), "SELECT 1")
    assert result.returncode != 0, "luna_backup logged in over TCP"
    assert 'rejects connection for host "127.0.0.1", user "luna_backup"' in result.stderr, (
        result.stderr
    )


def test_a_client_below_tls_12_is_refused(stack: Stack) -> None:
    """A real libpq handshake capped at TLS 1.1 fails; the same client at 1.2 connects, so
    the refusal is the server's (HIPAA/NIST SP 800-52r2: TLS 1.2 or later)."""
    url = stack.url(pg.APP_ROLE)
    sql = "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    # libpq's own floor is TLS 1.2 (ssl_min_protocol_version's default): lowered here.
    old_client = f"{url}&ssl_min_protocol_version=TLSv1&ssl_max_protocol_version=TLSv1.1"
    old = psql(old_client, sql, stack.openssl_env)
    print(f"\nTLS 1.1 client: {old.stderr.strip()}")
    assert old.returncode != 0, f"a TLS 1.1 client connected: {old.stdout}"
    assert "alert protocol version" in old.stderr, old.stderr
    current = psql(f"{url}&ssl_min_protocol_version=TLSv1", sql, stack.openssl_env)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() in ("TLSv1.2", "TLSv1.3"), current.stdout


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("CREATE TABLE evil (id int)", "permission denied for schema public"),
        ("SELECT rolpassword FROM pg_authid", "permission denied for table pg_authid"),
        ("COPY (SELECT 1) TO PROGRAM 'id'", "pg_execute_server_program"),
        ("SELECT pg_read_file('/etc/passwd')", "permission denied for function pg_read_file"),
        ("CREATE ROLE evil", "permission denied to create role"),
    ],
)
def test_app_role_is_refused(stack: Stack, sql: str, error: str) -> None:
    result = psql(stack.url(pg.APP_ROLE), sql)
    assert result.returncode != 0, f"the app role may run {sql!r}"
    assert error in result.stderr, result.stderr


def test_owner_migrates_and_app_reads_and_writes(stack: Stack) -> None:
    owner = psql(
        stack.url(pg.OWNER_ROLE),
        'CREATE TABLE IF NOT EXISTS "Journal" (id serial PRIMARY KEY, body text)',
    )
    assert owner.returncode == 0, owner.stderr
    app = psql(
        stack.url(pg.APP_ROLE),
        """INSERT INTO "Journal" (body) VALUES ('x') RETURNING id""",
    )
    assert app.returncode == 0, f"default privileges do not reach the app: {app.stderr}"
    drop = psql(stack.url(pg.APP_ROLE), 'DROP TABLE "Journal"')
    assert "must be owner" in drop.stderr, drop.stderr


def test_monitoring_role_reads_statistics(stack: Stack) -> None:
    result = psql(
        stack.url(pg.MONITOR_ROLE),
        f"SELECT count(*) FROM pg_stat_database WHERE datname = '{pg.DATABASE}'",  # noqa: S608
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    write = psql(stack.url(pg.MONITOR_ROLE), "CREATE TABLE t (id int)")
    assert write.returncode != 0


def test_no_role_but_the_superuser_is_privileged(stack: Stack) -> None:
    rows = stack.server.local(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE 'luna%' AND "
        "(rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls "
        "OR pg_has_role(rolname, 'pg_execute_server_program', 'MEMBER') "
        "OR pg_has_role(rolname, 'pg_read_server_files', 'MEMBER') "
        "OR pg_has_role(rolname, 'pg_write_server_files', 'MEMBER'))"
    )
    assert rows.stdout.strip() == "", f"privileged roles: {rows.stdout}"


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"^(\w+)(?:\{[^}]*\})? (\S+)$", text, re.M)}


def test_exporter_gives_the_wal_alert_its_metric_as_the_monitoring_role(stack: Stack) -> None:
    """Docker's ``LunaWalArchivingFailing`` reads a metric a real exporter exposes.

    Debian's postgres_exporter 0.11.1 exports ``pg_stat_archiver_*`` from the same
    legacy default metric map as the pinned 0.15.0
    (cmd/postgres_exporter/postgres_exporter.go, ``"pg_stat_archiver"``; 0.20
    moves it to collector/pg_stat_archiver.go under the same names). It connects
    as the generated monitoring role with the generated DSN (verified TLS).
    """
    rules = render_stack("staging").file("prometheus", "rules/luna-alerts.yml")
    (expr,) = re.findall(r"alert: LunaWalArchivingFailing\n\s+expr: (.+)", rules)
    (metric,) = re.findall(r"increase\((\w+)\{", expr)
    s = stack.server
    s.local("CREATE TABLE wal_note AS SELECT 1 AS id; SELECT pg_switch_wal()", db=pg.DATABASE)
    deadline = time.monotonic() + 60
    while s.local("SELECT failed_count FROM pg_stat_archiver").stdout.strip() == "0":
        assert time.monotonic() < deadline, "the archiver never attempted (and failed) a segment"
        time.sleep(0.2)
    dsn = pg.libpq_dsn(host="localhost", ca_file=str(stack.pair.ca))
    port = free_port()
    exporter = Daemon(
        [need("prometheus-postgres-exporter"), f"--web.listen-address=127.0.0.1:{port}"],
        log=stack.pair.ca.parent / "exporter.log",
        env={
            "PATH": "/usr/bin:/bin",
            "DATA_SOURCE_URI": substitute(dsn, ":5432/", f":{s.port}/", what="exporter DSN"),
            "DATA_SOURCE_USER": pg.MONITOR_ROLE,
            "DATA_SOURCE_PASS": PASSWORDS[pg.MONITOR_ROLE],
        },
    )
    try:
        wait_for_port(port, proc=exporter.proc, what="postgres_exporter", log=exporter.log)
        metrics = _scrape(port)
    finally:
        exporter.stop()
    print(f"\n{expr}: {metric} = {metrics.get(metric)}, pg_up = {metrics.get('pg_up')}")
    assert metrics.get("pg_up") == 1, f"the exporter could not connect:\n{exporter.output()}"
    assert metrics.get(metric, 0) > 0, f"{metric} missing or 0: {sorted(metrics)[:40]}"

"""PostgreSQL as data: server flags, pg_hba, roles, audit, URLs, pgBackRest, the drill.

Pure functions only. The Docker platform ships their output into the hardened
PostgreSQL container (components/platforms/docker/postgres.py); the real-program
tests (tests/real/test_postgres*.py) run the same text against Debian's
PostgreSQL 15 and pgBackRest 2.45.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from components.urls import userinfo

__all__ = [
    "APP_ROLE",
    "AUDITOR_ROLE",
    "AUDIT_SETTINGS",
    "BACKUP_ROLE",
    "DATABASE",
    "LOG_SETTINGS",
    "MONITOR_ROLE",
    "OWNER_ROLE",
    "ROLE_PASSWORD_VARS",
    "STANZA",
    "ObjectStore",
    "drill_script",
    "libpq_dsn",
    "pg_hba",
    "pg_ident",
    "pgbackrest_conf",
    "pgbackrest_env",
    "prisma_url",
    "roles_sql",
    "server_flags",
]

DATABASE = "luna"
OWNER_ROLE = "luna_owner"
"""Owns the database and schema; the migration job runs DDL as this role."""
APP_ROLE = "luna_app"
"""The app: DML on the owner's tables, nothing else."""
MONITOR_ROLE = "luna_monitor"
"""The postgres exporter: ``pg_monitor``."""
BACKUP_ROLE = "luna_backup"
"""The archiver (pgBackRest) connects as this role over the local socket."""
ROLE_PASSWORD_VARS = {
    OWNER_ROLE: "owner_password",
    APP_ROLE: "app_password",
    MONITOR_ROLE: "monitor_password",
    BACKUP_ROLE: "backup_password",
}
"""psql variables :func:`roles_sql` reads each role's password from."""
STANZA = "luna"
AUDITOR_ROLE: Final = "luna_auditor"
"""Never logs in; its privileges on a table make pgaudit log every access to it."""

# The server log is an operational log: it must never hold what a statement
# carried. Statement text has literals and bind parameters (a patient's
# e-mail in a WHERE clause), and error DETAIL lines echo key values.
LOG_SETTINGS: Final = {
    # No statement is ever logged for its duration (slow queries come from
    # pg_stat_statements, normalised), nor for its kind (ALTER ROLE ... PASSWORD
    # is DDL), nor when it fails (the default logs the failing STATEMENT).
    "log_min_duration_statement": "-1",
    "log_statement": "none",
    "log_duration": "off",
    "log_min_error_statement": "panic",
    "log_parameter_max_length": "0",
    "log_parameter_max_length_on_error": "0",
    # terse drops DETAIL ("Key (email)=(jane@...) already exists"), HINT,
    # QUERY and CONTEXT.
    "log_error_verbosity": "terse",
    # Who and from where, on every line, audit lines included.
    "log_line_prefix": "%m [%p] user=%u db=%d app=%a client=%h ",
    "log_connections": "on",
    "log_disconnections": "on",
}

# pgaudit object auditing: a statement is audited when the auditor role holds
# a privilege on the object it touches (pgaudit README, "Object Audit
# Logging"). Statement text and parameters are never written; the object,
# the command, the user (prefix) and the time are.
AUDIT_SETTINGS: Final = {
    "shared_preload_libraries": "pgaudit,pg_stat_statements",
    "pgaudit.role": AUDITOR_ROLE,
    # Session auditing only for role and privilege changes and schema changes.
    "pgaudit.log": "role,ddl",
    "pgaudit.log_catalog": "off",
    "pgaudit.log_relation": "on",
    "pgaudit.log_statement": "off",
    "pgaudit.log_parameter": "off",
    "pgaudit.log_client": "off",
    "pgaudit.log_level": "log",
    # Normalised statements ($1 for literals) with their timings.
    "pg_stat_statements.track": "top",
    "pg_stat_statements.max": "5000",
}


@dataclass(frozen=True)
class ObjectStore:
    """An S3-compatible bucket off the host; credentials travel as environment, not here."""

    bucket: str
    endpoint: str
    """``host`` or ``host:port`` (no scheme: pgBackRest always speaks TLS)."""
    region: str
    path: str
    """Prefix inside the bucket, one per stack."""
    retention_days: int
    uri_style: str = "host"
    """``host`` (AWS) or ``path`` (MinIO and most self-hosted stores)."""
    ca_file: str | None = None
    """A private CA for the endpoint's certificate; ``None``: the system's trust store."""


def server_flags(
    *,
    tls_dir: str | None,
    hba_file: str | None,
    archive: bool,
    archive_timeout_s: int = 60,
    audit: bool = False,
    max_connections: int = 100,
    shared_buffers_mb: int = 128,
) -> tuple[str, ...]:
    """``-c key=value`` flags: SCRAM, TLS only, continuous archiving, no data in the log, audit.

    ``hba_file`` names ``…/pg_hba.conf``; ``pg_ident.conf`` sits beside it.
    """
    if archive and not 1 <= archive_timeout_s <= 60:
        raise ValueError("archive_timeout must be 1..60 s: it bounds the recovery point")
    flags = {
        "password_encryption": "scram-sha-256",
        "max_connections": str(max_connections),
        "shared_buffers": f"{shared_buffers_mb}MB",
        **LOG_SETTINGS,
    }
    if tls_dir:
        flags |= {
            "ssl": "on",
            "ssl_cert_file": f"{tls_dir}/server.crt",
            "ssl_key_file": f"{tls_dir}/server.key",
            "ssl_min_protocol_version": "TLSv1.2",
        }
    if hba_file:
        flags["hba_file"] = hba_file
        flags["ident_file"] = hba_file.replace("pg_hba.conf", "pg_ident.conf")
    if archive:
        flags |= {
            "wal_level": "replica",
            "archive_mode": "on",
            # pgBackRest pushes each WAL segment, encrypted, to the object store; a
            # segment is closed at least every archive_timeout, which bounds the
            # recovery point of a host that is lost with its disk.
            "archive_command": f"pgbackrest --stanza={STANZA} archive-push %p",
            "archive_timeout": f"{archive_timeout_s}s",
        }
    if audit:
        # pgaudit (who touched which patient table) and pg_stat_statements (slow
        # queries, normalised): the only statement records, and neither has a literal.
        flags |= AUDIT_SETTINGS
    args: list[str] = []
    for key, value in flags.items():
        args += ["-c", f"{key}={value}"]
    return tuple(args)


def pg_hba() -> str:
    """TLS and SCRAM for every network client; the superuser only over the local socket."""
    roles = ",".join((OWNER_ROLE, APP_ROLE, MONITOR_ROLE))
    return f"""# Generated by components/configs/postgres.py
# TYPE    DATABASE  USER      ADDRESS  METHOD
# Inside the container: the entrypoint and the archiver, as their OS user.
local     all       postgres           peer
local     all       {BACKUP_ROLE}        peer map=backup
local     all       all                reject
# No plaintext, ever: refused before authentication.
hostnossl all       all       all      reject
# The superuser and the backup role never log in over the network.
hostssl   all       postgres  all      reject
hostssl   {DATABASE}      {roles}  all  scram-sha-256
hostssl   all       all       all      reject
"""


def pg_ident() -> str:
    """The OS user ``postgres`` (the archiver) may log in as the backup role."""
    return f"backup postgres {BACKUP_ROLE}\n"


def roles_sql(*, audit: bool = False) -> str:
    """Idempotent roles and grants, run by psql as the superuser over the local socket.

    Passwords arrive as psql variables (``-v app_password=…``) and are quoted by
    psql's ``:'var'``, so no password text is ever part of this file, and any
    character is safe. ``log_statement`` is off for this session so that no
    ``ALTER ROLE … PASSWORD`` reaches the log.

    With ``audit`` (the server preloads :data:`AUDIT_SETTINGS`' libraries), every
    table in ``public`` holds patient data (Luna is a mental-health app), so the
    auditor role gets SELECT/INSERT/UPDATE/DELETE on all of them, and by default
    on every table the owner's migrations create later. The role cannot log in
    and has no members: its grants only steer pgaudit. One statement a line:
    CloudNativePG's bootstrap reuses the grants (components/platforms/kubernetes/postgres.py).
    """
    lines = [
        "-- Generated by components/configs/postgres.py",
        "\\set ON_ERROR_STOP on",
        "SET log_statement = 'none';",
        # A placeholder setting when pgaudit is not loaded; accepted either way.
        "SET pgaudit.log = 'none';",
    ]
    for role in (OWNER_ROLE, APP_ROLE, MONITOR_ROLE, BACKUP_ROLE):
        lines.append(
            f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS "  # noqa: S608 - constant names
            f"(SELECT FROM pg_roles WHERE rolname = '{role}') \\gexec"
        )
        lines.append(
            f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            f"NOREPLICATION NOBYPASSRLS PASSWORD :'{ROLE_PASSWORD_VARS[role]}';"
        )
    lines += [
        f"ALTER DATABASE {DATABASE} OWNER TO {OWNER_ROLE};",
        f"ALTER SCHEMA public OWNER TO {OWNER_ROLE};",
        # Nothing by default: every right below is granted by name.
        f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC;",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
        f"GRANT CONNECT ON DATABASE {DATABASE} TO {APP_ROLE}, {MONITOR_ROLE}, {BACKUP_ROLE};",
        f"GRANT USAGE ON SCHEMA public TO {APP_ROLE};",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE};",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE};",
        # Tables the migrations create later get the same rights.
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE};",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public "
        f"GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {APP_ROLE};",
        f"GRANT pg_monitor TO {MONITOR_ROLE};",
        # What pgBackRest calls to start and stop a backup and close a segment.
        f"GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO {BACKUP_ROLE};",
        f"GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO {BACKUP_ROLE};",
        f"GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {BACKUP_ROLE};",
        f"GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO {BACKUP_ROLE};",
        f"GRANT pg_read_all_settings, pg_checkpoint TO {BACKUP_ROLE};",
    ]
    if audit:
        lines += [
            "CREATE EXTENSION IF NOT EXISTS pgaudit;",
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;",
            f"SELECT 'CREATE ROLE {AUDITOR_ROLE}' WHERE NOT EXISTS "  # noqa: S608 - constant
            f"(SELECT FROM pg_roles WHERE rolname = '{AUDITOR_ROLE}') \\gexec",
            f"ALTER ROLE {AUDITOR_ROLE} WITH NOLOGIN NOINHERIT;",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
            f"TO {AUDITOR_ROLE};",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {AUDITOR_ROLE};",
        ]
    return "\n".join(line for line in lines if line) + "\n"


def prisma_url(
    *, user: str, password: str, host: str, ca_file: str, connection_limit: int = 10
) -> str:
    """A Prisma ``DATABASE_URL`` that verifies the server's certificate and name.

    Prisma's PostgreSQL driver (prisma-engines quaint/src/connector/postgres/url.rs)
    knows ``sslmode`` disable/prefer/require only, and accepts any certificate
    unless ``sslaccept=strict``; ``sslcert`` is the CA it adds as a root
    (quaint/src/connector/postgres/native/mod.rs, ``add_root_certificate``;
    native-tls checks the host name unless told otherwise). The three together
    are libpq's ``sslmode=verify-full sslrootcert=…``.
    """
    return (
        f"postgresql://{userinfo(user, password)}@{host}:5432/{DATABASE}"
        f"?schema=public&sslmode=require&sslaccept=strict&sslcert={quote(ca_file, safe='/')}"
        f"&connection_limit={connection_limit}"
    )


def libpq_dsn(*, host: str, ca_file: str) -> str:
    """A libpq URL without credentials (the exporter reads user and password apart)."""
    return f"{host}:5432/{DATABASE}?sslmode=verify-full&sslrootcert={quote(ca_file, safe='/')}"


def pgbackrest_conf(
    store: ObjectStore, *, pgdata: str, socket_dir: str = "/var/run/postgresql"
) -> str:
    """pgBackRest's configuration; the keys and the cipher pass come from the environment.

    Client-side AES-256: every file is encrypted before it leaves the host, so
    the object store (and whoever reads the bucket) holds ciphertext only.
    """
    host, _, port = store.endpoint.partition(":")
    lines = [
        "# Generated by components/configs/postgres.py",
        "[global]",
        "repo1-type=s3",
        f"repo1-path={store.path}",
        f"repo1-s3-bucket={store.bucket}",
        f"repo1-s3-endpoint={host}",
        f"repo1-s3-region={store.region}",
        f"repo1-s3-uri-style={store.uri_style}",
        "repo1-cipher-type=aes-256-cbc",
        "repo1-retention-full-type=time",
        f"repo1-retention-full={store.retention_days}",
        "compress-type=zst",
        # Small files travel bundled: a few objects per backup instead of one per file.
        "repo1-bundle=y",
        "process-max=2",
        "start-fast=y",
        "log-level-console=info",
        "log-level-file=off",
        "lock-path=/tmp/pgbackrest",
    ]
    if port:
        lines.append(f"repo1-storage-port={port}")
    if store.ca_file:
        lines.append(f"repo1-storage-ca-file={store.ca_file}")
    lines += [
        "",
        f"[{STANZA}]",
        f"pg1-path={pgdata}",
        f"pg1-socket-path={socket_dir}",
        f"pg1-user={BACKUP_ROLE}",
        f"pg1-database={DATABASE}",
    ]
    return "\n".join(lines) + "\n"


def pgbackrest_env(
    *, access_key_id: str, secret_access_key: str, cipher_pass: str
) -> dict[str, str]:
    """The secret half of pgBackRest's configuration, as its environment variables."""
    return {
        "PGBACKREST_REPO1_S3_KEY": access_key_id,
        "PGBACKREST_REPO1_S3_KEY_SECRET": secret_access_key,
        "PGBACKREST_REPO1_CIPHER_PASS": cipher_pass,
    }


_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def drill_script(*, key_tables: tuple[str, ...], push_url: str | None, scratch: str) -> str:
    """A POSIX sh restore drill: restore the latest backup into ``scratch``, check it, report.

    It restores with pgBackRest (which replays the archive to its end), starts a
    private server on a socket only, runs ``pg_amcheck`` and counts the rows of
    ``key_tables``, then pushes success, duration and row counts to the
    Pushgateway. A failure pushes success 0, so the drill alert fires.
    """
    for table in key_tables:
        if not _TABLE.fullmatch(table):
            raise ValueError(f"drill: {table!r} is not a plain table name")
    # Table names are checked above; nothing else reaches the SQL text.
    counts = "\n".join(
        f'n=$(psql -h "$sock" -p 5499 -d {DATABASE} -XAtc \'SELECT count(*) FROM "{t}"\') '  # noqa: S608
        f'|| fail "cannot count {t}"\n'
        f'rows="$rows"\'luna_restore_drill_rows{{table="{t}"}} \'"$n"\'\\n\''
        for t in key_tables
    )
    push = ""
    if push_url:
        push = f"""
  printf "$rows"'luna_restore_drill_success %s\\n''luna_restore_drill_duration_seconds %s\\n'\\
'luna_restore_drill_last_run_timestamp_seconds %s\\n' \\
    "$1" "$(( $(date +%s) - start ))" "$(date +%s)" > "$scratch/metrics"
  wget -q -O /dev/null --post-file="$scratch/metrics" {shlex.quote(push_url)} \\
    || echo "drill: metric push failed" >&2"""
    return f"""#!/bin/sh
# Generated by components/configs/postgres.py: the scheduled restore drill.
set -u
scratch={shlex.quote(scratch)}
data="$scratch/pgdata"
sock="$scratch"
start=$(date +%s)
rows=''
report() {{{push}
  :
}}
stop() {{ pg_ctl -D "$data" -m immediate stop >/dev/null 2>&1 || true; }}
fail() {{ echo "drill: FAILED: $*" >&2; stop; report 0; rm -rf "$data"; exit 1; }}
rm -rf "$data" && mkdir -p "$data" && chmod 700 "$data" || fail "cannot prepare $data"
printf 'local all all peer\\n' > "$scratch/pg_hba.conf" || fail "cannot write pg_hba.conf"
pgbackrest --stanza={STANZA} --pg1-path="$data" --type=default restore || fail "pgbackrest restore"
# A private server: no TCP, no archiving (it must never push into the real archive).
pg_ctl -D "$data" -w -t 600 -l "$scratch/postgres.log" -o "-c listen_addresses='' \\
  -c unix_socket_directories=$sock -p 5499 -c archive_mode=off -c hba_file=$scratch/pg_hba.conf \\
  -c ssl=off -c shared_preload_libraries=''" start || fail "restored server did not start"
# pg_ctl returns once queries are accepted; a hot standby accepts them mid-replay.
i=0
until [ "$(psql -h "$sock" -p 5499 -d {DATABASE} -XAtc 'SELECT pg_is_in_recovery()')" = f ]; do
  i=$((i + 1)); [ "$i" -lt 3000 ] || fail "recovery did not finish"; sleep 0.2
done
pg_amcheck -h "$sock" -p 5499 -d {DATABASE} --install-missing --heapallindexed \\
  || fail "pg_amcheck found corruption"
{counts}
stop
report 1
rm -rf "$data"
echo "drill: OK in $(( $(date +%s) - start )) s"
"""

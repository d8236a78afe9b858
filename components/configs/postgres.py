"""PostgreSQL as data: server flags, pg_hba, roles, audit, URLs.

Pure functions only. The Docker platform ships their output into the hardened
PostgreSQL container (components/platforms/docker/postgres.py); the real-program
tests (tests/real/test_postgres*.py) run the same text against Debian's
PostgreSQL 15. pgBackRest's configuration, the backup loop and the drill are in
components/configs/pgbackrest.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final
from urllib.parse import quote

from components.urls import userinfo

__all__ = [
    "APP_LOGIN_VAR",
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
    "app_login_role",
    "libpq_dsn",
    "pg_hba",
    "pg_ident",
    "prisma_url",
    "roles_sql",
    "server_flags",
]

DATABASE = "luna"
OWNER_ROLE = "luna_owner"
"""Owns the database and schema; the migration job runs DDL as this role."""
APP_ROLE = "luna_app"
"""The app's group: DML on the owner's tables, nothing else. It never logs in
(NOLOGIN); the app logs in as a member, :func:`app_login_role`, which inherits it."""
APP_LOGIN_VAR = "app_login"
"""The psql variable :func:`roles_sql` reads the app's current login role from."""
APP_LOGIN_RE = re.compile(r"^luna_app_[0-9a-f]{8}$")
MONITOR_ROLE = "luna_monitor"
"""The postgres exporter: ``pg_monitor``."""
BACKUP_ROLE = "luna_backup"
"""The archiver (pgBackRest) connects as this role over the local socket."""
ROLE_PASSWORD_VARS = {  # APP_ROLE's: the password of its current login role
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


def server_flags(
    *,
    tls_dir: str | None,
    hba_file: str | None,
    archive: bool,
    archive_timeout_s: int = 60,
    audit: bool = False,
    max_connections: int = 100,
    memory_mb: int = 512,
) -> tuple[str, ...]:
    """``-c key=value`` flags: SCRAM, TLS only, continuous archiving, no data in the log, audit.

    ``hba_file`` names ``…/pg_hba.conf``; ``pg_ident.conf`` sits beside it.
    ``memory_mb`` is the container's limit: shared_buffers takes 25 % of it and
    effective_cache_size (a planner hint, nothing allocated) 75 %, the ratios
    PostgreSQL's documentation suggests for a dedicated server (runtime-config-resource).
    """
    if archive and not 1 <= archive_timeout_s <= 60:
        raise ValueError("archive_timeout must be 1..60 s: it bounds the recovery point")
    flags = {
        "password_encryption": "scram-sha-256",
        "max_connections": str(max_connections),
        "shared_buffers": f"{memory_mb // 4}MB",
        "effective_cache_size": f"{memory_mb * 3 // 4}MB",
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
    # "+luna_app": the group's members, i.e. the app's login roles (and the group
    # itself, which is NOLOGIN); PostgreSQL 15 has no regular expressions here.
    roles = ",".join((OWNER_ROLE, f"+{APP_ROLE}", MONITOR_ROLE))
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


def app_login_role(key: str, password: str) -> str:
    """The app's login role for ``password``: ``luna_app_`` and 8 hex digits of
    HMAC-SHA256(key, password).

    It changes when the password changes, and only then, and a reverted password
    gets its old name back (a rotation undone, or an interrupted ``up`` reverted,
    finds its replicas' role still there). A random suffix (pulumi-random's
    ``RandomId`` with the password as a keeper) would draw a new name on a revert:
    keepers force a replacement, and a replacement draws new bytes
    (terraform-provider-random ``internal/provider/resource_id.go``). The key
    (a generated secret) keeps the name from being an oracle for the password:
    role names are visible to every database user and in the server log.
    """
    digest = hmac.new(key.encode(), password.encode(), hashlib.sha256).hexdigest()
    return f"{APP_ROLE}_{digest[:8]}"


def app_logins_sql() -> list[str]:
    """The app's login roles (psql, as the superuser): the current one, with the
    current password, plus exactly one previous one; older ones are dropped.

    PostgreSQL gives a role one password. Old app replicas hold the previous
    password until an ``up`` has replaced them (create-before-delete), and they
    open new connections meanwhile: so each password has its own login role,
    ``:app_login``, a member of the NOLOGIN group :data:`APP_ROLE` that holds
    every privilege (INHERIT). The previous credential is the login that was
    current most recently before (its ``COMMENT`` records when it last was);
    the legacy ``luna_app`` LOGIN of a stack set up before the group counts as
    the oldest, so the first ``up`` with this code keeps it for the replicas it
    replaces, and the next rotation takes its LOGIN and password away. Login
    roles own nothing and hold no grant but the membership, so DROP ROLE cannot
    fail on a dependency.
    """
    login = f":'{APP_LOGIN_VAR}'"
    others = f"FROM pg_roles WHERE rolname ~ '{APP_LOGIN_RE.pattern}' AND rolname <> {login}"
    stamp = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    return [
        # A name that is not ours stops the job before any change.
        f"SELECT {login} ~ '{APP_LOGIN_RE.pattern}' AS app_login_ok \\gset",
        "\\if :app_login_ok",
        "\\else",
        "DO $$ BEGIN RAISE EXCEPTION 'roles: app_login is not luna_app_<8 hex digits>'; END $$;",
        "\\endif",
        f"SELECT format('CREATE ROLE %I', {login}) WHERE NOT EXISTS "  # noqa: S608
        f"(SELECT FROM pg_roles WHERE rolname = {login}) \\gexec",
        f'ALTER ROLE :"{APP_LOGIN_VAR}" WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB '
        f"NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'{ROLE_PASSWORD_VARS[APP_ROLE]}';",
        f"SELECT format('GRANT {APP_ROLE} TO %I', {login}) WHERE NOT pg_has_role("
        f"{login}, '{APP_ROLE}', 'MEMBER') \\gexec",
        f"SELECT format('COMMENT ON ROLE %I IS %L', {login}, 'luna app login, current at ' "
        f"|| {stamp}) \\gexec",
        # The previous credential: the newest other login; the legacy LOGIN group last.
        "SELECT coalesce((SELECT rolname FROM ("  # noqa: S608 - constants, psql variables
        f"SELECT rolname, 1 AS kind, coalesce(shobj_description(oid, 'pg_authid'), '') AS at "
        f"{others} UNION ALL SELECT rolname, 0, '' FROM pg_roles "
        f"WHERE rolname = '{APP_ROLE}' AND rolcanlogin"
        ") c ORDER BY kind DESC, at DESC LIMIT 1), '') AS app_previous \\gset",
        f"SELECT format('DROP ROLE %I', rolname) {others} "
        "AND rolname <> :'app_previous' ORDER BY rolname \\gexec",
        f"SELECT 'ALTER ROLE {APP_ROLE} WITH NOLOGIN PASSWORD NULL' "
        f"WHERE :'app_previous' <> '{APP_ROLE}' \\gexec",
    ]


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
        if role != APP_ROLE:  # the group's LOGIN is app_logins_sql's to decide
            lines.append(
                f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"NOREPLICATION NOBYPASSRLS PASSWORD :'{ROLE_PASSWORD_VARS[role]}';"
            )
    lines += [
        f"ALTER ROLE {APP_ROLE} WITH NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
        "NOBYPASSRLS;",
        *app_logins_sql(),
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

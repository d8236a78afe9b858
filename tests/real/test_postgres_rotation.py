"""The app's alternating login roles on a real PostgreSQL 15, through the shipped role job.

The server runs the generated flags and pg_hba (TLS, SCRAM, ``+luna_app``); the
shipped ``database-roles`` script (components/platforms/docker/postgres.py,
``roles_script``) applies the generated roles.sql as the container does, with
the passwords and the login role's name in files. It runs three times with the
names ``database.py`` derives (``pg.app_login_role``): the first ``up``, then
two ``dbPassword`` rotations. After each, a client logs in over verified TLS
with each URL an app replica may hold: the current one and the previous one
must log in, anything older must be refused, and the app's privileges reach it
through the group.

A fourth run starts from a stack set up before the group existed (``luna_app``
LOGIN with its password): the old replicas' URL keeps working through the
upgrade's own rollout, and the next rotation takes it away.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.configs import postgres as pg
from components.platforms.docker.postgres import roles_script
from tests.real.pg import PgServer, bindir, initdb, postgres_owned_dir, server_files
from tests.support.tls import CaSignedPair, make_ca_signed_pair

pytestmark = pytest.mark.slow

KEY = "login-key-Pa55word-0123456789"
OTHER = {
    pg.OWNER_ROLE: "owner-Pa55word-0123456789",
    pg.MONITOR_ROLE: "monitor-Pa55word-0123456789",
    pg.BACKUP_ROLE: "backup-Pa55word-0123456789",
}
APP_PASSWORDS = ("first p@ss:w/rd#?&%'-0", "second-Pa55word-1", "third-Pa55word-2")


@dataclass
class Rig:
    root: Path
    server: PgServer
    pair: CaSignedPair
    runs: int = 0

    def url(self, user: str, password: str) -> str:
        prisma = pg.prisma_url(user=user, password=password, host="localhost",
                               ca_file=str(self.pair.ca))  # fmt: skip
        base = prisma.split("?")[0].replace(":5432/", f":{self.server.port}/")
        return f"{base}?sslmode=verify-full&sslrootcert={self.pair.ca}"

    def psql(self, url: str, sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bindir() / "psql"), "-X", "-Atq", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def role_job(self, app_password: str, *, login: str | None = None, wait_s: int = 30) -> str:
        """The shipped role job, as the database-roles container runs it; the login name."""
        login = login or pg.app_login_role(KEY, app_password)
        self.runs += 1
        run_dir = self.root / f"job-{self.runs}"
        roles = run_dir / "roles"
        roles.mkdir(parents=True)
        files = {pg.ROLE_PASSWORD_VARS[r]: p for r, p in OTHER.items()}
        files |= {pg.ROLE_PASSWORD_VARS[pg.APP_ROLE]: app_password, pg.APP_LOGIN_VAR: login}
        for var, value in files.items():
            (roles / var).write_text(value)
        (run_dir / "roles.sql").write_text(pg.roles_sql(audit=False))
        sql = str(run_dir / "roles.sql")
        script = roles_script(wait_s=wait_s, run_dir=str(self.root), roles_dir=str(roles), sql=sql)
        (run_dir / "roles.sh").write_text(script)
        for f in (run_dir, roles, *roles.iterdir(), *run_dir.iterdir()):
            shutil.chown(f, "postgres", "postgres")
        job = subprocess.run(
            ["/bin/sh", str(run_dir / "roles.sh")], capture_output=True, text=True, timeout=120,
            check=False, user="postgres", cwd=self.root,
            env={"PATH": f"{bindir()}:/usr/bin:/bin", "PGPORT": str(self.server.port)},
        )  # fmt: skip
        assert job.returncode == 0, f"role job {self.runs} failed: {job.stdout}{job.stderr}"
        assert "Pa55word" not in job.stdout + job.stderr, "a password in the job's output"
        return login

    def logs_in(self, user: str, password: str) -> bool:
        result = self.psql(self.url(user, password), "SELECT current_user")
        if result.returncode == 0:
            assert result.stdout.strip() == user, result.stdout
            return True
        # A dropped login role is no member of the group: pg_hba refuses it first.
        refused = ("password authentication failed", "pg_hba.conf rejects connection")
        assert any(r in result.stderr for r in refused), result.stderr
        return False

    def session(self, user: str, password: str) -> subprocess.Popen[str]:
        """A client connection held open (an app replica's pool), once the server has it."""
        url = self.url(user, password)
        proc = subprocess.Popen(
            [str(bindir() / "psql"), "-X", "-Atq", "-v", "ON_ERROR_STOP=1", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        sql = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"  # noqa: S608
        deadline = time.monotonic() + 30
        while self.server.local(sql).stdout.strip() != "1":
            assert proc.poll() is None, f"the session of {user} ended: {proc.communicate()}"
            assert time.monotonic() < deadline, f"no session of {user} after 30 s"
            time.sleep(0.2)
        return proc

    def app_logins(self) -> list[str]:
        rows = self.server.local(
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper "  # noqa: S608
            f"AND rolname <> '{pg.APP_ROLE}' AND pg_has_role(rolname, '{pg.APP_ROLE}', 'MEMBER') "
            "ORDER BY rolname",
            db=pg.DATABASE,
        )
        return rows.stdout.split()


@pytest.fixture
def rig() -> Iterator[Rig]:
    root = postgres_owned_dir("luna-pg-rotation-")
    (root / "pki").mkdir()
    pair = make_ca_signed_pair(root / "pki", common_name="localhost", alt_names="DNS:localhost")
    conf, tls = server_files(root, pair.cert, pair.key)
    initdb(root / "data")
    flags = pg.server_flags(tls_dir=str(tls), hba_file=str(conf / "pg_hba.conf"), archive=False)
    server = PgServer(root / "data", flags).start()
    try:
        server.local(f"CREATE DATABASE {pg.DATABASE}")
        yield Rig(root, server, pair)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _migrate(rig: Rig) -> None:
    """What the migration does as the owner: a table the app must reach via the group."""
    owner = rig.psql(
        rig.url(pg.OWNER_ROLE, OTHER[pg.OWNER_ROLE]),
        'CREATE TABLE IF NOT EXISTS "Journal" (id serial PRIMARY KEY, body text)',
    )
    assert owner.returncode == 0, owner.stderr


def test_two_rotations_keep_the_previous_login_and_drop_the_older(rig: Rig) -> None:
    first, second, third = APP_PASSWORDS
    a = rig.role_job(first)
    _migrate(rig)
    assert rig.app_logins() == [a], rig.app_logins()
    assert rig.logs_in(a, first)
    assert not rig.logs_in(pg.APP_ROLE, first), "the group itself logs in"
    held = rig.session(a, first)  # an old replica's pooled connection

    b = rig.role_job(second)  # rotation 1
    # The connection opened before the rotation keeps working, with the group's rights.
    out, err = held.communicate(
        """INSERT INTO "Journal" (body) VALUES ('held') RETURNING current_user;\n""", timeout=30
    )
    assert held.returncode == 0 and out.strip() == a, f"the held session of {a} broke: {err}"
    assert b != a
    assert rig.logs_in(b, second), "the new replicas' URL is refused"
    assert rig.logs_in(a, first), "the old replicas' URL is refused during the rollout"
    assert sorted(rig.app_logins()) == sorted([a, b]), rig.app_logins()

    c = rig.role_job(third)  # rotation 2
    assert rig.logs_in(c, third)
    assert rig.logs_in(b, second), "the previous login was dropped"
    assert not rig.logs_in(a, first), "the login two rotations old still logs in"
    assert sorted(rig.app_logins()) == sorted([b, c]), rig.app_logins()

    # The same up again (another role's rotation reruns the job): nothing is dropped.
    assert rig.role_job(third) == c
    assert rig.logs_in(b, second) and rig.logs_in(c, third)

    # The app's rights come through the group, for a table created after the grants.
    app = rig.url(c, third)
    insert = rig.psql(app, """INSERT INTO "Journal" (body) VALUES ('x') RETURNING id""")
    assert insert.returncode == 0, f"the login role cannot write: {insert.stderr}"
    assert rig.psql(app, 'SELECT count(*) FROM "Journal"').stdout.strip() == "2"
    drop = rig.psql(app, 'DROP TABLE "Journal"')
    assert "must be owner" in drop.stderr, drop.stderr
    create = rig.psql(app, "CREATE TABLE evil (id int)")
    assert "permission denied for schema public" in create.stderr, create.stderr


def test_a_reverted_rotation_finds_its_login_again(rig: Rig) -> None:
    """An interrupted rotation reverted: the original name comes back, and both the
    original replicas and the one the interrupted up started keep logging in."""
    first, second, _ = APP_PASSWORDS
    a = rig.role_job(first)
    b = rig.role_job(second)  # the interrupted up ran the job
    assert rig.role_job(first) == a  # the revert
    assert rig.logs_in(a, first) and rig.logs_in(b, second)
    assert sorted(rig.app_logins()) == sorted([a, b]), f"the revert made a role: {rig.app_logins()}"
    current = rig.server.local(
        "SELECT rolname FROM pg_roles WHERE rolname ~ '^luna_app_' "
        "ORDER BY shobj_description(oid, 'pg_authid') DESC LIMIT 1"
    )
    assert current.stdout.strip() == a, f"the reverted login is not the current one: {current}"
    c = rig.role_job(APP_PASSWORDS[2])  # the next rotation keeps the reverted one, drops b
    assert rig.logs_in(a, first) and rig.logs_in(c, APP_PASSWORDS[2])
    assert not rig.logs_in(b, second), "the login the revert left behind survived a rotation"


def test_upgrade_from_the_login_group_keeps_the_old_replicas_in(rig: Rig) -> None:
    """A stack set up before the group: ``luna_app`` logged in with the app password."""
    first, second, _ = APP_PASSWORDS
    rig.server.local(f"CREATE ROLE {pg.APP_ROLE} LOGIN PASSWORD 'legacy-Pa55word-9'")
    assert rig.logs_in(pg.APP_ROLE, "legacy-Pa55word-9")
    a = rig.role_job(first)  # the first up with the group: old replicas still use luna_app
    assert rig.logs_in(pg.APP_ROLE, "legacy-Pa55word-9"), "the upgrade cut the old replicas off"
    assert rig.logs_in(a, first)
    b = rig.role_job(second)  # the next rotation: luna_app stops logging in
    assert rig.logs_in(a, first) and rig.logs_in(b, second)
    assert not rig.logs_in(pg.APP_ROLE, "legacy-Pa55word-9"), "the legacy login survived"
    can_login = rig.server.local(
        "SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid "  # noqa: S608 - a constant
        f"WHERE rolname = '{pg.APP_ROLE}'"
    )
    assert can_login.stdout.strip() == "f|t", can_login.stdout


def test_a_name_that_is_not_a_login_role_stops_the_job(rig: Rig) -> None:
    with pytest.raises(AssertionError, match="role job 1 failed"):
        rig.role_job(APP_PASSWORDS[0], login="luna_owner", wait_s=2)
    assert rig.app_logins() == [], "the job changed roles before refusing the name"


def _runbook_sql(marker: str, **shell: str) -> str:
    """The SQL a docs/runbooks/rotation.md block pipes into psql: its ``printf`` run by bash."""
    text = (Path(__file__).parents[2] / "docs" / "runbooks" / "rotation.md").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("printf ") and marker in ln]
    assigns = "".join(f"{k}={v}\n" for k, v in shell.items())
    out = subprocess.run(["bash", "-c", assigns + line.split(" | ")[0]], capture_output=True,
                         text=True, check=True, timeout=30)  # fmt: skip
    return out.stdout


def _superuser_stdin(rig: Rig, sql: str) -> None:
    """psql as the superuser over the socket with ``sql`` on its standard input, as the
    runbook's ``docker exec -i <db> psql ...`` does."""
    proc = subprocess.run(
        [str(bindir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
         str(rig.server.data.parent), "-p", str(rig.server.port), "-U", "postgres", "-d",
         pg.DATABASE],
        input=sql, capture_output=True, text=True, timeout=60, check=False, user="postgres",
        cwd=rig.server.data.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_the_runbooks_emergency_and_prune_sql(rig: Rig) -> None:
    """rotation.md's emergency block takes every app login away at once (the leaked one
    too), the next job's login works; its Kubernetes prune drops all but the current."""
    first, second, third = APP_PASSWORDS
    a = rig.role_job(first)
    b = rig.role_job(second)
    _superuser_stdin(rig, _runbook_sql("| docker exec -i <db> psql"))
    assert not rig.logs_in(a, first) and not rig.logs_in(b, second), "a leaked login still works"
    superusers = rig.server.local("SELECT count(*) FROM pg_roles WHERE rolsuper AND rolcanlogin")
    assert superusers.stdout.strip() != "0", "the emergency took the superuser's login away"
    c = rig.role_job(third)  # the up with the new password
    assert rig.logs_in(c, third)
    assert not rig.logs_in(b, second), "the up gave the disabled login its LOGIN back"
    _superuser_stdin(rig, _runbook_sql("| kubectl -n luna-<stack> exec -i", login=c))
    left = rig.server.local(
        "SELECT string_agg(rolname, ' ') FROM pg_roles WHERE rolname ~ '^luna_app_'"
    )
    assert left.stdout.strip() == c, f"the prune left {left.stdout}"
    assert rig.logs_in(c, third)

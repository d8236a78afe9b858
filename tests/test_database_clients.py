"""Every PostgreSQL client in every render verifies the server and logs in as its own role.

Scans every resource input of each stack on both platforms (secrets unwrapped):
each ``postgresql://`` URL is Prisma's verified form (``sslmode=require``,
``sslaccept=strict``, ``sslcert`` = the shipped CA; see
components/configs/postgres.py ``prisma_url``), each exporter DSN is libpq's
``verify-full``; and no client names the superuser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from components.configs import postgres as pg
from components.database import CA_FILE
from infra.mocks import unwrap
from tests.conftest import PLATFORMS, STACKS, rendered

URL = re.compile(r"postgres(?:ql)?://[^\s\"']+")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("stack", STACKS)
def test_connection_strings_verify_tls_and_never_use_the_superuser(
    stack: str, platform: str
) -> None:
    r = rendered(stack, platform)
    urls: list[tuple[str, str]] = []
    dsns: list[tuple[str, str]] = []
    users: list[tuple[str, str]] = []
    for rec in r.monitor.records.values():
        texts = list(_strings(unwrap(rec.inputs)))
        for text in texts:
            urls += [(rec.name, u) for u in URL.findall(text)]
            for m in re.finditer(r"DATA_SOURCE_URI=?(\S+:5432/\S+)", text):
                dsns.append((rec.name, m.group(1)))
            users += [(rec.name, u) for u in re.findall(r"DATA_SOURCE_USER=(\S+)", text)]
        env = unwrap(rec.inputs).get("stringData") or {}
        if "DATA_SOURCE_URI" in env:
            dsns.append((rec.name, env["DATA_SOURCE_URI"]))
        if "DATA_SOURCE_USER" in env:
            users.append((rec.name, env["DATA_SOURCE_USER"]))
        for container in _containers(unwrap(rec.inputs)):
            for e in container.get("env", []):
                if e.get("name") == "DATA_SOURCE_URI" and "value" in e:
                    dsns.append((rec.name, e["value"]))
                if e.get("name") == "DATA_SOURCE_USER" and "value" in e:
                    users.append((rec.name, e["value"]))
    if stack == "dev":
        assert not urls and not dsns, f"dev (SQLite) names PostgreSQL: {urls} {dsns}"
        return
    assert urls, f"{stack}/{platform}: no PostgreSQL URL found (the scan is blind)"
    assert dsns and users, f"{stack}/{platform}: no exporter DSN found (the scan is blind)"
    for name, url in urls:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert query.get("sslmode") == ["require"], f"{name}: {parts.query}"
        assert query.get("sslaccept") == ["strict"], f"{name}: accepts any certificate"
        assert query.get("sslcert") == [CA_FILE], f"{name}: verifies against {query}"
        user = unquote(parts.username or "")
        login = pg.APP_LOGIN_RE.match(user)
        assert user == pg.OWNER_ROLE or login, f"{name}: connects as {user!r}"
    for name, dsn in dsns:
        query = parse_qs(urlsplit("x://" + dsn).query)
        assert query.get("sslmode") == ["verify-full"], f"{name}: {dsn}"
        assert query.get("sslrootcert") == [CA_FILE], f"{name}: {dsn}"
    for name, user in users:
        assert user == pg.MONITOR_ROLE, f"{name}: the exporter logs in as {user!r}"
    roles = {unquote(urlsplit(u).username or "") for _, u in urls}
    assert len(roles) == 2 and pg.OWNER_ROLE in roles, f"{stack}/{platform}: roles {roles}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_app_url_user_is_the_login_role_the_server_gets(platform: str) -> None:
    """The app's DATABASE_URL names the login role (a member of the NOLOGIN group
    luna_app) that the Docker role job or CloudNativePG creates with its password."""
    r = rendered("staging", platform)
    users: set[tuple[str, str]] = set()
    created: set[str] = set()
    secret_user = ""
    for rec in r.monitor.records.values():
        inputs = unwrap(rec.inputs)
        for text in _strings(inputs):
            for url in URL.findall(text):
                user = unquote(urlsplit(url).username or "")
                if user != pg.OWNER_ROLE:
                    users.add((rec.name, user))
        if rec.name.endswith("postgres-roles"):  # Docker: the role job's app_login file
            env = inputs["environment"]
            created |= {v for k, v in env.items() if k.startswith("LUNA_FILE_") and
                        pg.APP_LOGIN_RE.match(v)}  # fmt: skip
        if rec.type.endswith(":Cluster"):  # Kubernetes: the operator's managed roles
            managed = inputs["spec"]["managed"]["roles"]
            created |= {m["name"] for m in managed if pg.APP_ROLE in m.get("inRoles", [])}
        if rec.name.endswith("postgres-app"):  # Kubernetes: CloudNativePG checks the username
            secret_user = inputs["stringData"]["username"]
    assert users, f"{platform}: no app URL found (the scan is blind)"
    names = {u for _, u in users}
    assert len(names) == 1 and pg.APP_LOGIN_RE.match(next(iter(names))), users
    assert created == names, f"{platform}: the app logs in as {names}, the server has {created}"
    if platform == "kubernetes":
        assert {secret_user} == names, f"the app role's Secret names {secret_user}, not {names}"


def _containers(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "containers" in value and isinstance(value["containers"], list):
            yield from value["containers"]
        for v in value.values():
            yield from _containers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _containers(v)

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
        assert user in (pg.OWNER_ROLE, pg.APP_ROLE), f"{name}: connects as {user!r}"
    for name, dsn in dsns:
        query = parse_qs(urlsplit("x://" + dsn).query)
        assert query.get("sslmode") == ["verify-full"], f"{name}: {dsn}"
        assert query.get("sslrootcert") == [CA_FILE], f"{name}: {dsn}"
    for name, user in users:
        assert user == pg.MONITOR_ROLE, f"{name}: the exporter logs in as {user!r}"
    roles = {unquote(urlsplit(u).username or "") for _, u in urls}
    assert roles == {pg.OWNER_ROLE, pg.APP_ROLE}, f"{stack}/{platform}: roles {roles}"


def _containers(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "containers" in value and isinstance(value["containers"], list):
            yield from value["containers"]
        for v in value.values():
            yield from _containers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _containers(v)

"""Every stack, both platforms: clients of internal services ask for verified TLS,
each as its own least-privileged user (never a shared or superuser identity).

PostgreSQL's clients (DATABASE_URL, the postgres exporter) are another change's.
"""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

import pytest

from components.app import INTERNAL_CA_FILE
from components.cache import TLS
from components.monitoring import REDIS_EXPORTER_CA
from components.platforms.kubernetes import FILES_ANNOTATION
from infra.mocks import unwrap
from infra.render import render
from tests.conftest import PLATFORMS, rendered
from tests.support.inventory import service_env, services

CACHE_STACKS = [(s, p) for s in ("staging", "prod") for p in PLATFORMS]


def _shipped(stack: str, platform: str, path: str) -> set[str]:
    """Contents (secrets in clear) of every file shipped at ``path``."""
    found: set[str] = set()
    for rec in rendered(stack, platform).monitor.records.values():
        inputs = unwrap(rec.inputs)
        if rec.type == "docker:index/container:Container":
            found |= {u["content"] for u in inputs.get("uploads") or [] if u["file"] == path}
        elif rec.type in ("kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:Secret"):
            note = (inputs["metadata"].get("annotations") or {}).get(FILES_ANNOTATION)
            data = inputs.get("data") or inputs.get("stringData") or {}
            found |= {data[k] for k, p in json.loads(note or "{}").items() if p == path}
    assert found, f"{stack}/{platform}: {path} is not shipped"
    return found


@pytest.mark.parametrize(("stack", "platform"), CACHE_STACKS, ids=lambda v: str(v))
def test_redis_clients_use_tls_verified_against_the_ca_as_their_own_users(
    stack: str, platform: str
) -> None:
    r = rendered(stack, platform)
    what = f"{stack}/{platform}"
    assert "cache" in services(r), f"{what}: no cache"
    app = service_env(r, "app")
    url = urlsplit(app["REDIS_URL"])
    assert url.scheme == "rediss", f"{what}: the app's REDIS_URL is {url.scheme}://, not TLS"
    assert (url.hostname, url.port, url.username) == ("cache", 6380, "app"), f"{what}: {url}"
    # Node verifies TLS by default; the stack's CA is added to its roots.
    assert app.get("NODE_EXTRA_CA_CERTS") == INTERNAL_CA_FILE, f"{what}: the app lacks the CA"
    exporter = service_env(r, "redis-exporter")
    assert exporter["REDIS_ADDR"] == "rediss://cache:6380", f"{what}: {exporter['REDIS_ADDR']}"
    assert exporter["REDIS_USER"] == "exporter", f"{what}: the exporter is {exporter['REDIS_USER']}"
    assert exporter["REDIS_EXPORTER_TLS_CA_CERT_FILE"] == REDIS_EXPORTER_CA, what
    assert exporter.get("REDIS_EXPORTER_SKIP_TLS_VERIFICATION", "false") == "false", what
    assert exporter["REDIS_PASSWORD"] != unquote(url.password or ""), (
        f"{what}: the exporter shares the app's Redis password"
    )
    # Every client trusts the one CA that the server's certificate chains to.
    cas = [_shipped(stack, platform, p) for p in (INTERNAL_CA_FILE, REDIS_EXPORTER_CA, TLS.ca_file)]
    assert len(set.union(*cas)) == 1, f"{what}: clients trust different CAs: {cas}"
    assert _shipped(stack, platform, TLS.cert_file) != cas[0], f"{what}: redis serves its CA"
    # Nothing anywhere in the stack still speaks plaintext Redis.
    everything = json.dumps([unwrap(rec.inputs) for rec in r.monitor.records.values()])
    assert "redis://" not in everything, f"{what}: a plaintext redis:// URL is configured"


def test_a_supplied_redis_password_with_url_and_quote_syntax_survives_the_url() -> None:
    password = 'p@ss:/#?%"\\x41-0123456789'
    r = render("staging", overrides=[("platform", "docker")], secrets=[("redisPassword", password)])
    url = urlsplit(service_env(r, "app")["REDIS_URL"])
    assert (url.hostname, url.port, url.username) == ("cache", 6380, "app"), url
    assert unquote(url.password or "") == password, url.password

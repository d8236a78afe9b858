"""docs/first-deploy.md, walked as a new operator would: the secrets its commands set
are exactly what the program requires, and with them the render (as ``pulumi up``
validates) and the preflight's secret, settings and TLS checks pass.

The guide's secrets table is generated from the settings (infra/docs_config.py);
this test reads the guide's text, not the generator, so an edit by hand that drops a
command, or a key the code starts to require, fails here.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from stack_secrets import store_id  # scripts/, on pytest's pythonpath

from infra.preflight import preflight, stack_values
from infra.render import render
from infra.settings import required_secret_groups, required_secrets
from tests.support.tools import REPO

GUIDE = REPO / "docs" / "first-deploy.md"
_SET = re.compile(r"pulumi config set --secret luna:(\w+) --stack (\w+)")


def _guide_commands() -> dict[str, list[str]]:
    """Per stack, the secret keys the guide's commands set, in order."""
    found: dict[str, list[str]] = {}
    for key, stack in _SET.findall(GUIDE.read_text()):
        found.setdefault(stack, []).append(key)
    return found


def _store_cells() -> dict[tuple[str, str], str]:
    """(stack, first key) -> the table's "injects it from" cell."""
    cells = {}
    for line in GUIDE.read_text().splitlines():
        parts = [p.strip() for p in line.strip("|").split("|")]
        if len(parts) == 4 and (m := _SET.search(parts[2])):
            cells[(m.group(2), m.group(1))] = parts[3]
    return cells


def _tls_pair(host: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(pem).decode(), key_pem


def _value(key: str, host: str, pair: tuple[str, str]) -> str:
    """A value the operator would paste: well-formed and strong."""
    if key == "tlsCert":
        return pair[0]
    if key == "tlsKey":
        return pair[1]
    if key.endswith("Url"):
        return f"https://hooks.example.org/{key}/{secrets.token_hex(12)}"
    if key == "pagerdutyRoutingKey":
        return secrets.token_hex(16)
    if key == "openaiApiKey":
        return "sk-proj-" + secrets.token_urlsafe(36)
    return secrets.token_urlsafe(32)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_guide_sets_every_secret_the_stack_requires(stack: str) -> None:
    keys = _guide_commands().get(stack, [])
    missing = [k for k in required_secrets(stack) if k not in keys]
    missing += [" or ".join(g) for g in required_secret_groups(stack) if not set(g) & set(keys)]
    assert not missing, f"docs/first-deploy.md never sets {missing} for {stack}"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_guides_store_names_are_the_pipelines(stack: str) -> None:
    cells = {k: v for (s, k), v in _store_cells().items() if s == stack}
    assert cells, f"no secrets table rows for {stack}"
    for key, cell in cells.items():
        assert f"`{store_id(stack, key)}`" in cell, f"{stack} {key}: {cell}"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_with_the_guides_secrets_the_render_and_the_preflight_pass(stack: str) -> None:
    values, _ = stack_values(stack, None, [])
    host = urlsplit(values["appUrl"]).hostname or ""
    pair = _tls_pair(host)
    given = {k: _value(k, host, pair) for k in dict.fromkeys(_guide_commands()[stack])}
    # What `pulumi up` validates: every required secret present and well-formed.
    render(stack, secrets=list(given.items()), placeholders=False)
    rows = preflight(stack, {**values, **given}, set(given))
    checked = [r for r in rows if r.name.startswith(("secret ", "settings", "tls ", "pager"))]
    assert checked, rows
    failed = {r.name: r.detail for r in checked if r.failed}
    assert not failed, f"{stack}: the guide's secrets leave {failed}"

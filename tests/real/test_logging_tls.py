"""The logging stack's certificates, as issued, verify for every name its clients dial.

The render's PEMs are mock text, so Debian's ``openssl`` makes a CA and a
certificate per service with the parameters the render asks pulumi-tls for:
the CSR's ``dnsNames``, the certificate's ``allowedUses`` mapped to X.509 key
usages the way terraform-provider-tls does (internal/provider/common_cert.go:
``digital_signature`` -> digitalSignature, ``key_encipherment`` ->
keyEncipherment, ``server_auth`` / ``client_auth`` -> the serverAuth /
clientAuth extended key usages), and the key's algorithm and curve. Then
``openssl verify`` checks the chain, the purpose and the host name, as a
client with verification on does (Logstash, Kibana and curl in full mode,
Fluent Bit with ``tls.verify_hostname``). The host names are read from what
the render ships to the clients (tests/test_client_tls.py ``client_hosts``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.mocks import unwrap
from tests.conftest import rendered
from tests.support.tools import need
from tests.test_client_tls import LOG_STACKS, client_hosts

_KEY_USAGE = {"digital_signature": "digitalSignature", "key_encipherment": "keyEncipherment"}
_EXT_KEY_USAGE = {"server_auth": "serverAuth", "client_auth": "clientAuth"}
_CURVES = {"P256": "P-256", "P384": "P-384"}


def _inputs(stack: str, platform: str, typ: str) -> dict[str, dict[str, Any]]:
    r = rendered(stack, platform)
    return {rec.name: unwrap(rec.inputs) for rec in r.monitor.records.values() if rec.type == typ}


def _issue(folder: Path, ca: tuple[Path, Path], name: str, csr: dict[str, Any],
           cert: dict[str, Any], key: dict[str, Any]) -> Path:  # fmt: skip
    """Sign a certificate for ``name`` with the rendered request's parameters."""
    openssl = need("openssl")
    assert key["algorithm"] == "ECDSA", f"{name}: {key['algorithm']} is not modelled here"
    usages = [_KEY_USAGE[u] for u in cert["allowedUses"] if u in _KEY_USAGE]
    extended = [_EXT_KEY_USAGE[u] for u in cert["allowedUses"] if u in _EXT_KEY_USAGE]
    ext = folder / f"{name}.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        f"subjectAltName={','.join('DNS:' + d for d in csr['dnsNames'])}\n"
        + (f"keyUsage=critical,{','.join(usages)}\n" if usages else "")
        + (f"extendedKeyUsage={','.join(extended)}\n" if extended else "")
    )
    out, req, pem = folder / f"{name}.crt", folder / f"{name}.csr", folder / f"{name}.key"
    for command in (
        [openssl, "req", "-newkey", "ec", "-pkeyopt",
         f"ec_paramgen_curve:{_CURVES[key['ecdsaCurve']]}", "-nodes",
         "-subj", f"/CN={csr['subject']['commonName']}", "-keyout", str(pem), "-out", str(req)],
        [openssl, "x509", "-req", "-in", str(req), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(out)],
    ):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
    return out


def _verify(ca: Path, cert: Path, *, purpose: str, host: str | None = None) -> bool:
    command = [need("openssl"), "verify", "-CAfile", str(ca), "-purpose", purpose]
    command += ["-verify_hostname", host] if host else []
    done = subprocess.run([*command, str(cert)], capture_output=True, text=True, check=False)
    return done.returncode == 0


@pytest.mark.parametrize(("stack", "platform"), LOG_STACKS, ids=lambda v: str(v))
def test_each_logging_certificate_verifies_for_the_names_its_clients_dial(
    stack: str, platform: str, tmp_path: Path
) -> None:
    openssl = need("openssl")
    what = f"{stack}/{platform}"
    ca = (tmp_path / "ca.crt", tmp_path / "ca.key")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=Luna test CA",
         "-keyout", str(ca[1]), "-out", str(ca[0])],
        check=True, capture_output=True,
    )  # fmt: skip
    csrs = _inputs(stack, platform, "tls:index/certRequest:CertRequest")
    certs = _inputs(stack, platform, "tls:index/locallySignedCert:LocallySignedCert")
    keys = _inputs(stack, platform, "tls:index/privateKey:PrivateKey")
    hosts = client_hosts(stack, platform)
    checked = 0
    for service, dialled in hosts.items():
        pem = _issue(
            tmp_path, ca, service,
            csrs[f"luna-ca-{service}-csr"], certs[f"luna-ca-{service}-cert"],
            keys[f"luna-ca-{service}-key"],
        )  # fmt: skip
        for host in sorted(dialled):
            assert _verify(ca[0], pem, purpose="sslserver", host=host), (
                f"{what}: {service}'s certificate does not verify for {host!r}"
            )
            checked += 1
        # The checks can fail: a name nobody put in the certificate.
        assert not _verify(ca[0], pem, purpose="sslserver", host=f"{service}.attacker.test"), what
        # Only Elasticsearch dials with its certificate (transport client authentication).
        as_client = _verify(ca[0], pem, purpose="sslclient")
        assert as_client == (service == "elasticsearch"), f"{what}: {service} client={as_client}"
    print(f"\n{what}: {checked} (certificate, dialled name) pairs verified by openssl: {hosts}")
    assert hosts["elasticsearch"] and hosts["kibana"], f"{what}: no clients found: {hosts}"
    assert bool(hosts["logstash"]) == (platform == "kubernetes"), f"{what}: {hosts}"

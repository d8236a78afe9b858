"""Mocks that issue real keys and certificates, so the rendered stack can run.

The offline render's mocks (infra/mocks.py) fill ``privateKeyPem`` and
``certPem`` with placeholder text: enough to review a render, but PostgreSQL,
Redis and nginx refuse to start on it. The rehearsal renders with these mocks
instead, which do what the tls provider does with the same inputs
(hashicorp/terraform-provider-tls, internal/provider/):

- ``resource_private_key.go``: ``ECDSA`` with ``ecdsa_curve`` P224/P256/P384/P521,
  or ``RSA`` with ``rsa_bits``; outputs ``private_key_pem`` (SEC1 for ECDSA,
  PKCS#1 for RSA), ``private_key_pem_pkcs8`` and ``public_key_pem``.
- ``resource_cert_request.go``: a CSR with ``subject`` and ``dns_names``.
- ``resource_self_signed_cert.go`` / ``resource_locally_signed_cert.go`` with
  ``common_cert.go`` ``createCertificate``: a random 128-bit serial, validity from
  now for ``validity_period_hours``, ``is_ca_certificate`` as basic constraints,
  ``allowed_uses`` as key usage and extended key usage.

Images: with ``image_ids``, a ``RemoteImage`` reads back the ID the image has on
the daemon, as the provider does after its pull (resource_docker_image_funcs.go),
so containers and jobs name the image they will run.

Passwords stay the mocks' (``RandomPassword`` gives a fixed string per name):
the stack only needs them to agree between the services.
"""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi.runtime import mocks

from infra.mocks import LunaMocks, unwrap
from infra.render import Rendered

__all__ = ["RehearsalMocks", "issue_pair"]

_CURVES: dict[str, ec.EllipticCurve] = {
    "P224": ec.SECP224R1(), "P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P521": ec.SECP521R1(),
}  # fmt: skip
# common_cert.go: keyUsages / extKeyUsages
_KEY_USAGE = {
    "digital_signature": "digital_signature", "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment", "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement", "cert_signing": "key_cert_sign", "crl_signing": "crl_sign",
}  # fmt: skip
_EXT_USAGE = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
}  # fmt: skip

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _pem(data: bytes) -> str:
    return data.decode()


def _key_outputs(key: Key) -> dict[str, str]:
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
    )  # SEC1 ("EC PRIVATE KEY") / PKCS#1 ("RSA PRIVATE KEY"), as the provider writes
    none = serialization.NoEncryption()
    enc = serialization.Encoding.PEM
    return {
        "privateKeyPem": _pem(key.private_bytes(enc, fmt, none)),
        "privateKeyPemPkcs8": _pem(key.private_bytes(enc, serialization.PrivateFormat.PKCS8, none)),
        "publicKeyPem": _pem(
            key.public_key().public_bytes(enc, serialization.PublicFormat.SubjectPublicKeyInfo)
        ),
    }


def _new_key(inputs: dict[str, Any]) -> Key:
    if inputs.get("algorithm") == "RSA":
        return rsa.generate_private_key(65537, int(inputs.get("rsaBits") or 2048))
    return ec.generate_private_key(_CURVES[str(inputs.get("ecdsaCurve") or "P224")])


def _load_key(pem: str) -> Key:
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key


def _name(subject: dict[str, Any] | None) -> x509.Name:
    s = subject or {}
    attrs = []
    if s.get("organization"):
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(s["organization"])))
    if s.get("commonName"):
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, str(s["commonName"])))
    return x509.Name(attrs)


def _certificate(
    inputs: dict[str, Any],
    *,
    subject: x509.Name,
    public: Any,
    issuer: x509.Name,
    signer: Key,
    dns_names: list[str],
) -> str:
    """common_cert.go ``createCertificate``."""
    now = datetime.datetime.now(datetime.UTC)
    hours = int(inputs.get("validityPeriodHours") or 24)
    uses = [str(u) for u in inputs.get("allowedUses") or []]
    usage = {v: False for v in _KEY_USAGE.values()}
    usage.update({_KEY_USAGE[u]: True for u in uses if u in _KEY_USAGE})
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=hours))
        .add_extension(x509.KeyUsage(encipher_only=False, decipher_only=False, **usage), True)
    )
    ext = [_EXT_USAGE[u] for u in uses if u in _EXT_USAGE]
    if ext:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext), False)
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), True)
    if is_ca:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
    if dns_names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names])
        builder = builder.add_extension(san, False)
    cert = builder.sign(signer, hashes.SHA256())
    return _pem(cert.public_bytes(serialization.Encoding.PEM))


class RehearsalMocks(LunaMocks):
    """:class:`LunaMocks` with the tls provider's resources made real.

    ``prior``: an earlier render; a tls resource with the same type, name and
    inputs keeps its outputs, as the engine keeps them when nothing changed.
    """

    def __init__(
        self,
        prior: Rendered | None = None,
        image_ids: Mapping[str, str] | None = None,
        random_ids: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self._image_ids = dict(image_ids or {})
        self._random_ids = random_ids if random_ids is not None else {}
        self._prior = {
            (r.type, r.name): (unwrap(r.inputs), unwrap(r.outputs))
            for r in (prior.monitor.records.values() if prior else ())
            if r.type.startswith("tls:")
        }

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        inputs = unwrap(dict(args.inputs))
        typ = args.typ
        if typ == "docker:index/remoteImage:RemoteImage" and inputs.get("name") in self._image_ids:
            # What the provider reads back after the pull: the image's real ID.
            state["imageId"] = self._image_ids[inputs["name"]]
            state["repoDigest"] = f"{inputs['name']}@{state['imageId']}"
            return rid, state
        if typ == "random:index/randomId:RandomId":
            state["hex"] = self._random_hex(args.name, inputs)
            return rid, state
        kept = self._prior.get((typ, args.name))
        if kept and kept[0] == inputs:
            return rid, dict(kept[1])
        if typ == "tls:index/privateKey:PrivateKey":
            state.update(_key_outputs(_new_key(inputs)))
        elif typ == "tls:index/selfSignedCert:SelfSignedCert":
            key = _load_key(inputs["privateKeyPem"])
            name = _name(inputs.get("subject"))
            state["certPem"] = _certificate(
                inputs, subject=name, public=key.public_key(), issuer=name, signer=key,
                dns_names=list(inputs.get("dnsNames") or []),
            )  # fmt: skip
        elif typ == "tls:index/certRequest:CertRequest":
            key = _load_key(inputs["privateKeyPem"])
            dns = [x509.DNSName(n) for n in inputs.get("dnsNames") or []]
            csr = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject")))
            if dns:
                csr = csr.add_extension(x509.SubjectAlternativeName(dns), False)
            signed = csr.sign(key, hashes.SHA256())
            state["certRequestPem"] = _pem(signed.public_bytes(serialization.Encoding.PEM))
        elif typ == "tls:index/locallySignedCert:LocallySignedCert":
            request = x509.load_pem_x509_csr(str(inputs["certRequestPem"]).encode())
            ca = x509.load_pem_x509_certificate(str(inputs["caCertPem"]).encode())
            try:
                san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                dns_names = san.value.get_values_for_type(x509.DNSName)
            except x509.ExtensionNotFound:
                dns_names = []
            state["certPem"] = _certificate(
                inputs, subject=request.subject, public=request.public_key(), issuer=ca.subject,
                signer=_load_key(inputs["caPrivateKeyPem"]), dns_names=dns_names,
            )  # fmt: skip
        return rid, state

    def _random_hex(self, name: str, inputs: Mapping[str, Any]) -> str:
        """A ``RandomId`` as the engine keeps it: the stored value while its keepers are
        unchanged, a fresh draw when they change (every argument RequiresReplace,
        terraform-provider-random resource_id.go), never an earlier value back.

        LunaMocks derives the value from the keepers, so a rollback to earlier
        inputs would get the earlier name back while that container may still
        exist: the daemon then refuses the name, which the real engine never asks.
        """
        keepers = json.dumps(inputs.get("keepers"), sort_keys=True, default=str)
        stored = self._random_ids.get(name)
        if stored and stored[0] == keepers:
            return stored[1]
        drawn = secrets.token_hex(int(inputs.get("byteLength", 8)))
        self._random_ids[name] = (keepers, drawn)
        return drawn


def edge_issuer(ca_name: str = "Luna rehearsal edge CA") -> tuple[str, str]:
    """``(ca_pem, ca_key_pem)``: a throwaway CA for the edge's certificates."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    # 90 days, as an ACME certificate: the settings refuse a pair with under 14 left.
    ca_inputs = {"validityPeriodHours": 90 * 24, "isCaCertificate": True,
                 "allowedUses": ["cert_signing", "digital_signature"]}  # fmt: skip
    ca_subject = _name({"commonName": ca_name})
    ca_pem = _certificate(
        ca_inputs, subject=ca_subject, public=ca_key.public_key(), issuer=ca_subject,
        signer=ca_key, dns_names=[],
    )  # fmt: skip
    return ca_pem, _key_outputs(ca_key)["privateKeyPem"]


def issue_pair(host: str, *, issuer: tuple[str, str] | None = None) -> tuple[str, str, str]:
    """``(ca_pem, cert_pem, key_pem)``: a server pair for ``host`` from ``issuer`` (an
    :func:`edge_issuer`; a new one by default, so a renewal passes the same one).

    The edge's ``tlsCert``/``tlsKey`` are operator-supplied secrets (docs/secrets.md);
    the rehearsal supplies a pair for the stack's own host, and clients trust its CA.
    """
    ca_pem, ca_key_pem = issuer or edge_issuer()
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    server = {"validityPeriodHours": 90 * 24,
              "allowedUses": ["digital_signature", "key_encipherment", "server_auth"]}  # fmt: skip
    cert_pem = _certificate(
        server, subject=_name({"commonName": host}), public=key.public_key(), issuer=ca.subject,
        signer=_load_key(ca_key_pem), dns_names=[host],
    )  # fmt: skip
    return ca_pem, cert_pem, _key_outputs(key)["privateKeyPem"]

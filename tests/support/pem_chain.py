"""Edge TLS pairs for the settings' checks, built in-process with ``cryptography``.

A root CA, an intermediate and a leaf, each ECDSA P-256, with validity relative
to now, so a test can ask for an expired, not-yet-valid or soon-expiring leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Chain", "make_chain", "pem_key"]


@dataclass(frozen=True)
class Chain:
    leaf: str
    intermediate: str
    key: str
    """The leaf's private key, PKCS#8 PEM."""

    @property
    def fullchain(self) -> str:
        return self.leaf + self.intermediate


def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    start: datetime,
    end: datetime,
    dns: tuple[str, ...] = (),
    ca: bool = False,
) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = (
        (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]), issuer[1])
        if issuer
        else (name, key)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def make_chain(
    *, dns: tuple[str, ...], valid_from_days: float = -1, valid_days: float = 90
) -> Chain:
    """A leaf for ``dns`` (none: no SAN at all), valid from now + ``valid_from_days``
    for ``valid_days``, issued by an intermediate issued by a root."""
    now = datetime.now(UTC)
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    start, end = now - timedelta(days=30), now + timedelta(days=3650)
    mid = _cert(
        "Test Intermediate", mid_key, ("Test Root", root_key), start=start, end=end, ca=True
    )
    start = now + timedelta(days=valid_from_days)
    leaf = _cert(
        dns[0] if dns else "no-san.example",
        leaf_key,
        ("Test Intermediate", mid_key),
        start=start,
        end=start + timedelta(days=valid_days),
        dns=dns,
    )
    return Chain(leaf=leaf, intermediate=mid, key=pem_key(leaf_key))

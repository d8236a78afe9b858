"""The edge's TLS pair, checked before anything is created: pure functions, no Pulumi.

Two years of HSTS (components/configs/nginx.py) mean a browser that once saw the
site refuses any certificate error for two years: a pair nginx cannot load, or
one that names another host or has expired, locks every returning user out. So
the supplied pair (``tlsCert``: the leaf first, then its intermediates, as
certbot's ``fullchain.pem``; ``tlsKey``: the leaf's unencrypted private key) is
parsed with the ``cryptography`` library and refused unless:

- the key is a private key (not a second certificate) and matches the leaf;
- the leaf covers ``appUrl``'s host (a SAN DNS name, or a one-label wildcard);
- every certificate is valid now and for at least ``MIN_VALID_DAYS`` more days;
- each certificate is issued by the next one (the chain is in order).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["MIN_VALID_DAYS", "tls_pair_problem"]

MIN_VALID_DAYS: Final = 14
"""Renewal runs 30 days before expiry (certbot's default); under 14 days left
means renewal has failed for two weeks: refuse rather than ship it."""

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def tls_pair_problem(
    cert_pem: str, key_pem: str, host: str, *, now: datetime | None = None
) -> tuple[str, str] | None:
    """``(key, what is wrong)`` for the first problem of the pair, or ``None``.

    Messages name the fault, never the key material.
    """
    now = now or datetime.now(UTC)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        return "tlsCert", "PEM certificates (the leaf first, then its intermediates)"
    if "CERTIFICATE-----" in key_pem and "PRIVATE KEY-----" not in key_pem:
        return "tlsKey", "the private key (a PEM PRIVATE KEY block), not a certificate"
    try:
        key: PrivateKeyTypes = serialization.load_pem_private_key(key_pem.encode(), None)
    except (ValueError, TypeError):
        return "tlsKey", "an unencrypted PEM private key"
    leaf = chain[0]
    if _is_ca(leaf) and len(chain) > 1:
        return "tlsCert", "the chain in order: the leaf (the site's certificate) first"
    if key.public_key().public_bytes(*_SPKI) != leaf.public_key().public_bytes(*_SPKI):
        return "tlsKey", "the private key of tlsCert's first (leaf) certificate; this one differs"
    if not _covers(leaf, host):
        return "tlsCert", f"a certificate for {host} (appUrl's host) among its DNS names"
    for i, cert in enumerate(chain):
        what = "the certificate" if i == 0 else f"intermediate {i}"
        if cert.not_valid_before_utc > now:
            return "tlsCert", f"a valid certificate: {what} is not valid yet"
        if cert.not_valid_after_utc <= now:
            return "tlsCert", f"a valid certificate: {what} has expired"
        if cert.not_valid_after_utc < now + timedelta(days=MIN_VALID_DAYS):
            return "tlsCert", f"{MIN_VALID_DAYS}+ days of validity left: {what} expires sooner"
    for i, (child, parent) in enumerate(itertools.pairwise(chain)):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return "tlsCert", (
                f"the chain in order (leaf, then each issuer): certificate {i + 1} is not "
                f"issued by certificate {i + 2}"
            )
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _covers(cert: x509.Certificate, host: str) -> bool:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False  # browsers ignore the CN (RFC 6125 §6.4.4, CA/B Forum BRs)
    for name in names.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        # A wildcard stands for one label, and never for a whole TLD (RFC 6125 §6.4.3).
        base = name[2:]
        if name.startswith("*.") and "." in base and host.split(".", 1)[-1] == base:
            return True
    return False

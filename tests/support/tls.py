"""Throwaway TLS pairs for tests that run real TLS servers (nginx, stand-ins)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.tools import need

__all__ = ["CaSignedPair", "TlsPair", "make_ca_signed_pair", "make_tls_pair"]


@dataclass(frozen=True)
class TlsPair:
    cert: Path
    key: Path


def make_tls_pair(folder: Path, *, common_name: str, alt_names: str) -> TlsPair:
    """An ECDSA P-256 self-signed pair, like the proxy's generated one.

    ``alt_names`` is an openssl subjectAltName value, e.g. ``DNS:a.test,IP:127.0.0.1``.
    """
    openssl = need("openssl")
    pair = TlsPair(cert=folder / "tls.crt", key=folder / "tls.key")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", f"/CN={common_name}",
         "-addext", f"subjectAltName={alt_names}",
         "-keyout", str(pair.key), "-out", str(pair.cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return pair


@dataclass(frozen=True)
class CaSignedPair:
    ca: Path
    """The CA certificate alone: what a client trusts (``--cafile``), never served."""
    cert: Path
    key: Path


def make_ca_signed_pair(folder: Path, *, common_name: str, alt_names: str) -> CaSignedPair:
    """A throwaway private CA and a server pair it signed, as staging's private CA does.

    The server presents only its own certificate, so a client must chain it to the CA.
    """
    openssl = need("openssl")
    pair = CaSignedPair(ca=folder / "ca.crt", cert=folder / "tls.crt", key=folder / "tls.key")
    ca_key, csr, ext = folder / "ca.key", folder / "tls.csr", folder / "tls.ext"
    ext.write_text(
        f"subjectAltName={alt_names}\nbasicConstraints=critical,CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for command in (
        [openssl, "req", "-x509", *curve, "-days", "2", "-subj", "/CN=Luna test CA",
         "-keyout", str(ca_key), "-out", str(pair.ca)],
        [openssl, "req", *curve, "-subj", f"/CN={common_name}",
         "-keyout", str(pair.key), "-out", str(csr)],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(pair.ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(pair.cert)],
    ):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
    return pair

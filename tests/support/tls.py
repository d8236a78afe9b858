"""Throwaway TLS pairs for tests that run real TLS servers (nginx, stand-ins)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.tools import need

__all__ = ["TlsPair", "make_tls_pair"]


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

"""A local S3 for the backup tests: moto's server (PyPI) behind TLS, on 127.0.0.1.

moto's own ``--ssl`` breaks pgBackRest, so stunnel (Debian) terminates TLS in
front of it, with a certificate for ``DNS:localhost`` signed by a throwaway CA
(pgBackRest 2.45 refuses a certificate whose only name is an IP). The archivers
under test reach ``https://localhost:<tls_port>`` and verify it against ``ca``;
the tests' own boto3 client reads the bucket over plain HTTP on loopback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.real.support import Daemon, free_port, wait_for_port
from tests.support.tls import make_ca_signed_pair
from tests.support.tools import need

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "LocalS3", "local_s3"]

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"


@dataclass(frozen=True)
class LocalS3:
    plain: str
    """``http://127.0.0.1:<moto>``: the tests' own view of the bucket."""
    tls_port: int
    ca: Path
    """The CA certificate the archivers trust."""
    host: str = "localhost"
    """The name the TLS certificate is issued for."""

    @property
    def tls_endpoint(self) -> str:
        return f"{self.host}:{self.tls_port}"

    def client(self) -> Any:
        import boto3  # type: ignore[import-untyped]  # the test's own client

        return boto3.client(
            "s3", endpoint_url=self.plain, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        )  # fmt: skip

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@contextlib.contextmanager
def local_s3(
    root: Path,
    *,
    buckets: tuple[str, ...],
    host: str = "localhost",
    accept: str = "127.0.0.1",
    tls_port: int | None = None,
) -> Iterator[LocalS3]:
    """moto and stunnel under ``root`` (logs there), with ``buckets`` created.

    ``host``: the name the certificate is issued for; ``accept``: the address
    stunnel listens on (the rehearsal's containers reach a host-side address).
    """
    certs = root / "s3-tls"
    certs.mkdir()
    pair = make_ca_signed_pair(certs, common_name=host, alt_names=f"DNS:{host}")
    moto_port, tls_port = free_port(), tls_port or free_port()
    daemons: list[Daemon] = []
    try:
        # Path-style only, as every Luna render asks (uri-style=path): moto otherwise
        # reads a dotted Host such as s3.rehearsal.test as bucket "s3"
        # (moto/s3/utils.py bucket_name_from_url, S3_IGNORE_SUBDOMAIN_BUCKETNAME).
        moto = Daemon([need("moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                      log=root / "moto.log",
                      env={**os.environ, "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"})  # fmt: skip
        daemons.append(moto)
        wait_for_port(moto_port, proc=moto.proc, what="moto", log=moto.log, timeout=30)
        tunnel_conf = root / "stunnel.conf"
        tunnel_conf.write_text(
            f"foreground = yes\npid =\n[s3]\naccept = {accept}:{tls_port}\n"
            f"connect = 127.0.0.1:{moto_port}\ncert = {pair.cert}\nkey = {pair.key}\n"
        )
        tunnel = Daemon([need("stunnel4"), str(tunnel_conf)], log=root / "stunnel.log")
        daemons.append(tunnel)
        wait_for_port(tls_port, proc=tunnel.proc, what="stunnel", log=tunnel.log, host=accept)
        s3 = LocalS3(f"http://127.0.0.1:{moto_port}", tls_port, pair.ca, host)
        for bucket in buckets:
            s3.client().create_bucket(Bucket=bucket)
        yield s3
    finally:
        for d in daemons:
            d.stop()

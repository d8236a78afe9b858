"""The preflight's checks of what a stack needs outside the program: pure or one call each.

Each check returns :class:`Check` rows and never raises for a failed check: the
preflight reports every failure at once (infra/preflight.py). Kubernetes checks
are in infra/preflight_kube.py.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

__all__ = [
    "EXPIRY_MARGIN",
    "Check",
    "docker_host",
    "missing_secrets",
    "object_store",
    "pager_key",
    "tls_pair",
]

EXPIRY_MARGIN: Final = timedelta(days=14)
"""A pair that expires sooner cannot be renewed through the pipeline in time."""

Status = Literal["ok", "FAIL", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


def missing_secrets(
    required: Iterable[str], groups: Iterable[tuple[str, ...]], values: Mapping[str, str]
) -> list[Check]:
    """One row per required secret or group of alternatives, all reported at once."""
    rows = []
    for key in required:
        ok = bool(values.get(key, "").strip())
        detail = "set" if ok else f"missing: pulumi config set --secret luna:{key}"
        rows.append(Check(f"secret {key}", "ok" if ok else "FAIL", detail))
    for group in groups:
        present = [k for k in group if values.get(k, "").strip()]
        name = " or ".join(group)
        detail = f"{present[0]} set" if present else f"missing: set one of {name}"
        rows.append(Check(f"secret {name}", "ok" if present else "FAIL", detail))
    return rows


# PagerDuty Events API v2 integration (routing) keys are 32 characters
# (developer.pagerduty.com, "Events API v2 Overview": routing_key); Opsgenie API
# integration keys are UUIDs (docs.opsgenie.com, "API Integration").
_PAGER_FORMATS: Final = {
    "pagerdutyRoutingKey": (re.compile(r"[A-Za-z0-9]{32}"), "32 letters or digits"),
    "opsgenieApiKey": (
        re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I),
        "a UUID",
    ),
}


def pager_key(values: Mapping[str, str]) -> list[Check]:
    """The format of each pager key that is set (never its value)."""
    rows = []
    for key, (pattern, allowed) in _PAGER_FORMATS.items():
        value = values.get(key)
        if value is None:
            continue
        ok = pattern.fullmatch(value) is not None
        detail = f"format: {allowed}" if ok else f"not {allowed} (value hidden)"
        rows.append(Check(f"pager key {key}", "ok" if ok else "FAIL", detail))
    return rows


def _names(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(n).lower() for n in ext.value.get_values_for_type(x509.DNSName)]


def _covers(names: Iterable[str], host: str) -> bool:
    """RFC 6125 section 6.4.3: a wildcard stands for exactly one left-most label."""
    host = host.lower().rstrip(".")
    for name in names:
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def tls_pair(cert_pem: str, key_pem: str, host: str, *, now: datetime | None = None) -> list[Check]:
    """The edge's pair: it parses, the key matches, it covers ``host``, it is valid for
    14 more days, and its chain is in order."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or datetime.now(UTC)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        return [Check("tls certificate", "FAIL", "tlsCert is not a PEM certificate chain")]
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return [Check("tls key", "FAIL", "tlsKey is not an unencrypted PEM private key")]
    leaf = chain[0]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    matches = key.public_key().public_bytes(der, pub) == leaf.public_key().public_bytes(der, pub)
    names = _names(leaf)
    left = leaf.not_valid_after_utc - now
    return [
        Check("tls key matches", "ok" if matches else "FAIL",
              "tlsKey is the certificate's key" if matches
              else "tlsKey does not belong to tlsCert's first certificate"),
        Check("tls covers host", "ok" if _covers(names, host) else "FAIL",
              f"{host} in {', '.join(names) or 'no DNS names'}"),
        Check("tls expiry", "ok" if left > EXPIRY_MARGIN else "FAIL",
              f"expires {leaf.not_valid_after_utc:%Y-%m-%d} ({left.days} days; at least "
              f"{EXPIRY_MARGIN.days} needed)"),
        _chain_order(chain),
    ]  # fmt: skip


def _chain_order(chain: list[Any]) -> Check:
    """Each certificate is signed by the next one (RFC 8446 section 4.4.2: sender's first)."""
    from cryptography.exceptions import InvalidSignature

    for child, parent in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as err:
            return Check("tls chain order", "FAIL",
                         f"{child.subject.rfc4514_string()} is not issued by the next "
                         f"certificate ({type(err).__name__})")  # fmt: skip
    return Check("tls chain order", "ok", f"{len(chain)} certificate(s), each issued by the next")


def object_store(
    *,
    endpoint: str,
    region: str,
    bucket: str,
    access_key: str,
    secret_key: str,
    path_style: bool,
    ca_bundle: str | None = None,
) -> list[Check]:
    """The bucket answers with these keys over TLS, and keeps versions (a deleted or
    overwritten backup stays recoverable)."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    client = boto3.client(
        "s3", endpoint_url=f"https://{endpoint}", region_name=region,
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        verify=ca_bundle if ca_bundle else True,
        config=Config(connect_timeout=10, read_timeout=20, retries={"max_attempts": 1},
                      s3={"addressing_style": "path" if path_style else "virtual"}),
    )  # fmt: skip
    try:
        client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as err:
        return [Check("object store", "FAIL", f"{bucket} at {endpoint}: {_short(err)}")]
    rows = [Check("object store", "ok", f"{bucket} at {endpoint} answers with the backup keys")]
    try:
        status = client.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
    except (BotoCoreError, ClientError) as err:
        status = f"unreadable ({_short(err)})"
    rows.append(Check("bucket versioning", "ok" if status == "Enabled" else "FAIL",
                      f"{status} (Enabled needed)"))  # fmt: skip
    return rows


def _short(err: Exception) -> str:
    return str(err).splitlines()[0][:200]


def docker_host(host: str, *, docker: str = "docker", timeout_s: float = 30) -> list[Check]:
    """The Docker host answers, and which engine it runs (the provider speaks its API)."""
    try:
        proc = subprocess.run(
            [docker, "--host", host, "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return [Check("docker host", "FAIL", f"{host}: {type(err).__name__}: {err}")]
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version:
        return [Check("docker host", "FAIL", f"{host}: {_first_line(proc.stderr)}")]
    return [Check("docker host", "ok", f"{host}: Docker Engine {version}")]


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else "no answer"

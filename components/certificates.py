"""InternalCA: the stack's own certificate authority for TLS between its services.

Every hop inside the stack (app to PostgreSQL and Redis, Logstash and Kibana to
Elasticsearch, the log collector to Logstash) is encrypted and the client
verifies the server against this CA. pulumi-tls keeps the keys in Pulumi's
encrypted state; nothing is written to disk outside the containers that use them.

Renewal: a certificate inside ``early_renewal_hours`` of its expiry is replaced
by the provider on the next ``pulumi up`` (terraform-provider-tls common_cert.go,
``ready_for_renewal``); its consumers get the new files and are replaced or roll,
and nothing protected depends on a certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

__all__ = ["InternalCA", "InternalCAArgs", "ServerCertificate", "ecdsa_key"]

_DAY_H = 24


def ecdsa_key(name: str, *, parent: pulumi.Resource) -> tls.PrivateKey:
    """A private key of the one kind every Luna certificate uses: ECDSA P-256."""
    return tls.PrivateKey(
        name, algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=parent)
    )


@dataclass(frozen=True)
class InternalCAArgs:
    stack: str
    ca_validity_days: int = 3650
    ca_renewal_days: int = 365
    cert_validity_days: int = 365
    cert_renewal_days: int = 60
    """Renewed on the first ``pulumi up`` this many days before expiry."""


@dataclass(frozen=True)
class ServerCertificate:
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    """Secret."""
    ca_pem: pulumi.Output[str]
    key_pem_pkcs8: pulumi.Output[str]
    """Secret: the same key as PKCS#8, the only PEM key form Logstash's TLS inputs read
    (logstash-input-tcp and -beats: ``ssl_key`` "must be in PKCS#8 format")."""


class InternalCA(pulumi.ComponentResource):
    """A per-stack CA (ECDSA P-256) and the server certificates it issues.

    Usage::

        ca = InternalCA("luna-ca", InternalCAArgs(stack="prod"))
        pg = ca.issue("database", ["database", "database.luna-prod.svc"])
        files = (ConfigFile("/tls/server.crt", pg.cert_pem),
                 ConfigFile("/tls/server.key", pg.key_pem, secret=True))
    """

    ca_pem: pulumi.Output[str]
    """The CA certificate clients verify servers with (not secret)."""

    def __init__(
        self, name: str, args: InternalCAArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:InternalCA", name, None, opts)
        self._name = name
        self._args = args
        key = ecdsa_key(f"{name}-key", parent=self)
        cert = tls.SelfSignedCert(
            f"{name}-cert",
            private_key_pem=key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"Luna {args.stack} internal CA", organization="Luna"
            ),
            validity_period_hours=args.ca_validity_days * _DAY_H,
            early_renewal_hours=args.ca_renewal_days * _DAY_H,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._key_pem: pulumi.Output[str] = pulumi.Output.secret(key.private_key_pem)
        self.ca_pem = cert.cert_pem
        self._issued: set[str] = set()
        self.register_outputs({"ca_pem": self.ca_pem})

    def issue(
        self, service: str, dns_names: Sequence[str], *, client: bool = False
    ) -> ServerCertificate:
        """A certificate for ``service`` valid for ``dns_names`` (its DNS names)."""
        if service in self._issued:
            raise ValueError(f"a certificate for {service!r} is issued twice")
        if not dns_names:
            raise ValueError(f"{service}: a certificate needs at least one DNS name")
        self._issued.add(service)
        a = self._args
        opts = pulumi.ResourceOptions(parent=self)
        key = ecdsa_key(f"{self._name}-{service}-key", parent=self)
        request = tls.CertRequest(
            f"{self._name}-{service}-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=dns_names[0], organization="Luna"),
            dns_names=list(dns_names),
            opts=opts,
        )
        uses = ["digital_signature", "key_encipherment", "server_auth"]
        cert = tls.LocallySignedCert(
            f"{self._name}-{service}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self._key_pem,
            ca_cert_pem=self.ca_pem,
            validity_period_hours=a.cert_validity_days * _DAY_H,
            early_renewal_hours=a.cert_renewal_days * _DAY_H,
            allowed_uses=[*uses, "client_auth"] if client else uses,
            opts=opts,
        )
        return ServerCertificate(
            cert_pem=cert.cert_pem,
            key_pem=pulumi.Output.secret(key.private_key_pem),
            ca_pem=self.ca_pem,
            key_pem_pkcs8=pulumi.Output.secret(key.private_key_pem_pkcs8),
        )

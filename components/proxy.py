"""ReverseProxy: nginx terminating TLS in front of every app replica."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.configs.nginx import NginxSettings, nginx_conf
from components.platforms import Deployment, Platform
from components.spec import ConfigFile, HealthCheck, Port, Reload, Resources, ServiceSpec

__all__ = ["ReverseProxy", "ReverseProxyArgs"]

SERVICE = "proxy"
STATUS_PORT = 8081
LIVE_DIR = "/etc/nginx/luna"
"""nginx.conf and the TLS pair: re-read by ``nginx -s reload``, never a restart."""
CONF = f"{LIVE_DIR}/nginx.conf"
UPSTREAM_CA = f"{LIVE_DIR}/tls/internal-ca.crt"
"""The stack CA, for the app's certificate (Kubernetes: the edge reaches it over TLS)."""
ANY = "0.0.0.0"  # noqa: S104 - the edge is public by design


@dataclass(frozen=True)
class ReverseProxyArgs:
    platform: Platform
    image: str
    server_name: str
    upstream: Deployment
    """The app; nginx reaches its replicas through ``service_address`` (and
    ``resolver``, where replicas change address), so a deploy never restarts it."""
    replicas: int = 1
    drain_s: int = 0
    """Seconds a stopping edge keeps serving, longer than the load balancer's
    health-check window, so a drain or rollout loses no request."""
    http_port: int = 80
    https_port: int = 443
    client_max_body_mb: int = 10
    tls_cert: pulumi.Input[str] | None = None
    tls_key: pulumi.Input[str] | None = None
    """PEM pair from secret config; without it a self-signed pair is generated."""
    resources: Resources = field(default_factory=lambda: Resources(memory_mb=128, cpus=0.5))
    auth_paths: tuple[str, ...] = ("/api/auth/",)
    """The app's sign-in endpoints: rate-limited per client address."""
    crisis_paths: tuple[str, ...] = ()
    """Never rate-limited."""
    internal_paths: tuple[str, ...] = ()
    """The app's internal endpoints (metrics): 404 at the edge."""
    internal_ca_pem: pulumi.Input[str] | None = None
    """The stack CA, which the app's certificate is verified against where the
    platform reaches the app over TLS (``upstream.tls_address``)."""


class ReverseProxy(pulumi.ComponentResource):
    """The public edge: HTTP→HTTPS redirect, TLS 1.2+, HSTS, security headers.

    Usage::

        ReverseProxy("luna-proxy", ReverseProxyArgs(platform=p, image="nginxinc/...",
                     server_name="luna-app.com", upstream=app.deployment))
    """

    nginx_conf: str
    status_address: str
    """``host:port`` of stub_status, for the exporter."""

    def __init__(
        self, name: str, args: ReverseProxyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:ReverseProxy", name, None, opts)
        cert, key = self._tls_pair(name, args)
        if args.upstream.service_address is None:
            raise ValueError(f"{args.upstream.service} has no address to proxy to")
        upstream, tls_name, ca_files = self._upstream(args)
        settings = NginxSettings(
            server_name=args.server_name,
            upstream=upstream,
            upstream_tls_name=tls_name,
            upstream_ca_path=UPSTREAM_CA if tls_name else None,
            resolver=args.upstream.resolver,
            cert_path=f"{LIVE_DIR}/tls/tls.crt",
            key_path=f"{LIVE_DIR}/tls/tls.key",
            status_port=STATUS_PORT,
            public_https_port=args.https_port,
            client_max_body_mb=args.client_max_body_mb,
            auth_paths=args.auth_paths,
            crisis_paths=args.crisis_paths,
            internal_paths=args.internal_paths,
        )
        self.nginx_conf = nginx_conf(settings)
        self.status_address = f"{SERVICE}:{STATUS_PORT}"
        args.platform.deploy(
            f"{name}-nginx",
            ServiceSpec(
                name=SERVICE,
                component="proxy",
                image=args.image,
                replicas=args.replicas,
                drain_s=args.drain_s,
                resources=args.resources,
                ports=(
                    # The public edge listens on every interface.
                    Port("http", settings.http_port, publish=args.http_port, publish_ip=ANY),
                    Port("https", settings.https_port, publish=args.https_port, publish_ip=ANY),
                    Port("status", STATUS_PORT),
                ),
                command=("nginx", "-c", CONF, "-g", "daemon off;"),
                # A new certificate or setting is applied by a reload: nginx starts
                # workers with it and lets the old ones finish, no connection refused.
                reload=Reload(
                    LIVE_DIR,
                    command=("nginx", "-c", CONF, "-s", "reload"),
                    check=("nginx", "-t", "-q", "-c", CONF),
                ),
                files=(
                    ConfigFile(CONF, self.nginx_conf),
                    ConfigFile(settings.cert_path, cert),
                    ConfigFile(settings.key_path, key, secret=True),
                    *ca_files,
                ),
                writable_paths=("/tmp",),
                health=HealthCheck.http(STATUS_PORT, settings.health_path, start_period_s=10),
                connects_to=("app",),
            ),
            parent=self,
            after=[args.upstream],
        )
        self.register_outputs({"status_address": self.status_address})

    @staticmethod
    def _upstream(args: ReverseProxyArgs) -> tuple[str, str | None, tuple[ConfigFile, ...]]:
        """Where nginx sends requests: the app's TLS address where the platform
        made one (verified with the stack CA), else its plain address."""
        address = args.upstream.tls_address
        if address is None:
            return str(args.upstream.service_address), None, ()
        if args.internal_ca_pem is None:
            raise ValueError("the app is reached over TLS: internal_ca_pem is needed")
        return address, address.rsplit(":", 1)[0], (ConfigFile(UPSTREAM_CA, args.internal_ca_pem),)

    def _tls_pair(
        self, name: str, args: ReverseProxyArgs
    ) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
        """The supplied pair, or (staging without one) a generated self-signed pair."""
        if (args.tls_cert is None) != (args.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if args.tls_cert is not None and args.tls_key is not None:
            return args.tls_cert, pulumi.Output.secret(args.tls_key)
        # Imported here: a stack with a real certificate never loads the TLS SDK.
        import pulumi_tls as tls

        from components.certificates import ecdsa_key

        # Staging without a real certificate: generated, kept in encrypted state.
        private = ecdsa_key(f"{name}-tls-key", parent=self)
        self_signed = tls.SelfSignedCert(
            f"{name}-tls-cert",
            private_key_pem=private.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=args.server_name, organization="Luna"
            ),
            dns_names=[args.server_name],
            validity_period_hours=24 * 90,
            early_renewal_hours=24 * 30,
            allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return self_signed.cert_pem, pulumi.Output.secret(private.private_key_pem)

"""Kubernetes: the edge reaches the app over TLS only, verified with the stack CA.

The app pod carries the TLS front (a sidecar of the pinned nginx image,
components/platforms/kubernetes/tls_front.py); the Service publishes its port;
the NetworkPolicies let the edge reach that port only; the edge's nginx.conf
proxies over https with verification on; the certificate is the stack CA's, for
``app``. tests/real/test_edge_tls.py runs both nginx configurations for real.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.app import APP_PORT, TLS_PORT
from tests.conftest import rendered
from tests.kubernetes.conftest import manifests, render_k8s

EDGE = ("staging", "prod")  # dev has no edge


def _one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _ports(rule: dict[str, Any]) -> set[int]:
    return {int(p["port"]) for p in rule.get("ports", [])}


def _names(rule: dict[str, Any], key: str) -> set[str]:
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for peer in rule.get(key, []) if "podSelector" in peer}  # fmt: skip


@pytest.mark.parametrize("stack", EDGE)
def test_the_app_pod_terminates_tls_in_a_hardened_sidecar(stack: str) -> None:
    objs = manifests(stack)
    pod = _one(objs, "Deployment", "app")["spec"]["template"]["spec"]
    app, front = pod["containers"]
    assert front["name"] == "tls-front", [c["name"] for c in pod["containers"]]
    assert front["image"].startswith("nginxinc/nginx-unprivileged:"), front["image"]
    assert front["ports"] == [{"name": "tls", "containerPort": TLS_PORT, "protocol": "TCP"}]
    sc = front["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"], sc
    assert sc["capabilities"] == {"drop": ["ALL"]} and not sc["allowPrivilegeEscalation"], sc
    assert front["resources"]["limits"] == front["resources"]["requests"], front["resources"]
    assert front["readinessProbe"]["tcpSocket"]["port"] == "tls"
    # It drains with the app: both sleep the same time before they are signalled.
    assert front["lifecycle"] == app["lifecycle"], (front.get("lifecycle"), app.get("lifecycle"))
    service = _one(objs, "Service", "app")["spec"]["ports"]
    assert {p["port"] for p in service} == {APP_PORT, TLS_PORT}, service


@pytest.mark.parametrize("stack", EDGE)
def test_the_edge_reaches_only_the_tls_port(stack: str) -> None:
    objs = manifests(stack)
    ingress = _one(objs, "NetworkPolicy", "app")["spec"]["ingress"]
    by_source = {name: _ports(rule) for rule in ingress for name in _names(rule, "from")}
    assert by_source["proxy"] == {TLS_PORT}, by_source
    # Inside (Prometheus' scrape, the crisis probe): the plain port, never from the edge.
    assert all(ports == {APP_PORT} for name, ports in by_source.items() if name != "proxy")
    egress = _one(objs, "NetworkPolicy", "proxy")["spec"]["egress"]
    to_app = [_ports(rule) for rule in egress if "app" in _names(rule, "to")]
    assert to_app == [{TLS_PORT}], to_app


@pytest.mark.parametrize("stack", EDGE)
def test_the_edge_proxies_over_https_and_verifies_the_apps_certificate(stack: str) -> None:
    files = render_k8s(stack).files()
    conf = next(t for p, t in files.items() if p.endswith("/etc/nginx/luna/nginx.conf"))
    proxied = conf.count("proxy_pass ")
    assert proxied and conf.count("proxy_pass https://") == proxied, "a plain proxy_pass"
    ca = "proxy_ssl_trusted_certificate /etc/nginx/luna/tls/internal-ca.crt;"
    for directive in (
        "proxy_ssl_verify on;",
        "proxy_ssl_name app;",
        "proxy_ssl_server_name on;",
        ca,
    ):
        assert conf.count(directive) == proxied, directive
    assert f"server app:{TLS_PORT} " in conf
    assert any(p.endswith("/etc/nginx/luna/tls/internal-ca.crt") for p in files), "CA not shipped"
    front = next(t for p, t in files.items() if p.endswith("/etc/luna/tls-front/nginx.conf"))
    assert f"listen {TLS_PORT} ssl;" in front and f"server 127.0.0.1:{APP_PORT};" in front


@pytest.mark.parametrize("stack", EDGE)
def test_the_apps_certificate_is_the_stack_cas_for_its_service_name(stack: str) -> None:
    records = render_k8s(stack).monitor.records.values()
    (csr,) = [r for r in records if r.name == "luna-ca-app-csr"]
    assert list(csr.inputs["dnsNames"]) == ["app"], csr.inputs["dnsNames"]
    (cert,) = [r for r in records if r.name == "luna-ca-app-cert"]
    assert cert.type == "tls:index/locallySignedCert:LocallySignedCert"
    assert "server_auth" in cert.inputs["allowedUses"], cert.inputs["allowedUses"]


def test_without_an_edge_the_app_has_no_tls_front() -> None:
    objs = rendered("staging", "kubernetes", (("proxy", "false"),)).manifests()
    pod = _one(objs, "Deployment", "app")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["app"]

"""Kubernetes segmentation: NetworkPolicies that follow the declared flows.

The namespace denies all traffic (:func:`baseline_policies`), lets every pod
resolve names through the cluster DNS, then each service gets one policy
(:func:`service_policy`): ingress from the services that declared a flow to it
(and from the world on the ports it publishes), egress to the services it
declared flows to (and to the internet, never the cluster, the node or cloud
metadata, where its spec asks for it). A policy that fences protected data is
protected and retained with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pulumi_kubernetes.networking.v1 import NetworkPolicy

from components.platforms import FlowGraph
from components.platforms.kubernetes.collector import LOG_COLLECTOR, collector_namespace
from components.platforms.kubernetes.tls_front import front_port
from components.platforms.kubernetes.workloads import edge_ports
from components.spec import ServiceSpec

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = [
    "PRIVATE_V4",
    "PRIVATE_V6",
    "baseline_policies",
    "internet_egress",
    "network_policy",
    "postgres_policies",
    "service_policy",
]

Manifest = dict[str, Any]

# Egress to the internet never reaches the cluster, the node, the carrier-grade
# NAT range or cloud metadata (169.254.169.254, fd00:ec2::254), in IPv4 or IPv6.
PRIVATE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
PRIVATE_V6 = ("fc00::/7", "fe80::/10")

_DNS: Manifest = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def network_policy(
    platform: KubernetesPlatform,
    name: str,
    selector: Mapping[str, str],
    *,
    ingress: list[Manifest] | None = None,
    egress: list[Manifest] | None = None,
    service: str = "luna",
    protect: bool = False,
) -> None:
    """One NetworkPolicy over ``selector``; ``None`` leaves a direction unpoliced."""
    types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
    body: Manifest = {"podSelector": {"matchLabels": dict(selector)}, "policyTypes": types}
    if ingress is not None:
        body["ingress"] = ingress
    if egress is not None:
        body["egress"] = egress
    NetworkPolicy(
        platform.child(f"netpol-{name}"),
        metadata=platform.meta(name, "network", service),
        spec=body,
        # Protected with the data it fences: `pulumi destroy --exclude-protected`
        # never leaves a retained database reachable by everyone.
        opts=platform.opts(platform, protect=protect),
    )


def baseline_policies(platform: KubernetesPlatform, *, protect: bool) -> None:
    """Deny everything in the namespace, then let every pod ask the cluster DNS."""
    network_policy(platform, "default-deny", {}, ingress=[], egress=[], protect=protect)
    # Kept with the deny: a retained database behind it must still resolve its
    # object store's name to archive WAL.
    network_policy(platform, "allow-dns", {}, egress=[_DNS], protect=protect)


def service_policy(
    platform: KubernetesPlatform,
    service: str,
    spec: ServiceSpec,
    graph: FlowGraph,
    *,
    protected_volumes: Iterable[str],
    protected: bool = False,
) -> None:
    """Ingress from the declared sources, egress to the declared targets only.

    ``protected``: the service's data is protected elsewhere (a database
    cluster), so its flows are too."""
    if service == LOG_COLLECTOR:
        return  # in its own namespace, with its own policy (collector.py)
    ingress: list[Manifest] = []
    sources = graph.sources(service)
    if sources and spec.ports:
        # One rule per set of ports: the edge reaches a TLS-fronted service on
        # its TLS port only (tls_front.py), everyone else on its own ports.
        by_ports: dict[str, tuple[list[Manifest], list[str]]] = {}
        for source in sources:
            ports = _ports_between(graph, source, spec)
            by_ports.setdefault(repr(ports), (ports, []))[1].append(source)
        ingress += [
            {"from": [_peer(platform, s) for s in group], "ports": ports}
            for ports, group in by_ports.values()
        ]
    edge = edge_ports(spec)
    if edge:
        ingress.append(
            {
                "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                "ports": [{"protocol": p.protocol.upper(), "port": p.port} for p in edge],
            }
        )
    egress: list[Manifest] = [
        {
            "to": [{"podSelector": {"matchLabels": platform.selector(target)}}],
            "ports": _ports_between(graph, service, graph.services[target]),
        }
        for target in sorted(set(spec.connects_to))
        if graph.services[target].ports
    ]
    if spec.internet_egress:
        egress.append(internet_egress(spec.internet_ports))
    if not ingress and not egress:
        return
    protected_volumes = set(protected_volumes)
    network_policy(
        platform,
        service,
        platform.selector(service),
        ingress=ingress or None,
        egress=egress or None,
        service=service,
        protect=protected or any(m.volume in protected_volumes for m in spec.mounts),
    )


def internet_egress(ports: Iterable[int]) -> Manifest:
    """The public internet, on the given TCP ports only (an ``except`` must lie
    inside its ``cidr``, so IPv4 and IPv6 are two blocks)."""
    return {
        "to": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_V4)}},
            {"ipBlock": {"cidr": "::/0", "except": list(PRIVATE_V6)}},
        ],
        "ports": [{"protocol": "TCP", "port": p} for p in sorted(set(ports))],
    }


def postgres_policies(
    platform: KubernetesPlatform,
    cluster: str,
    *,
    metrics_port: int,
    protect: bool,
    store_port: int | None = None,
) -> None:
    """What CloudNativePG's instances need besides the declared flows, and Prometheus' scrape.

    ``store_port``: the object store endpoint's port, for the Barman Cloud sidecar.
    """
    instances = platform.selector(cluster)
    # The API server (its Service on 443, the endpoints on 6443) and the store.
    outward = sorted({443, 6443, *([store_port] if store_port else [])})
    network_policy(
        platform,
        f"{cluster}-cnpg",
        instances,
        ingress=[
            # Replication and the operator's status endpoint, between instances.
            {"from": [{"podSelector": {"matchLabels": instances}}],
             "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 8000}]},
            {"from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "cnpg-system"}}}],
             "ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 5432}]},
            {"from": [{"podSelector": {"matchLabels": platform.selector("prometheus")}}],
             "ports": [{"protocol": "TCP", "port": metrics_port}]},
        ],
        egress=[
            {"to": [{"podSelector": {"matchLabels": instances}}],
             "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 8000}]},
            # The instance manager watches its Cluster through the API server, and
            # the Barman Cloud sidecar reaches the object store on its own port.
            {"ports": [{"protocol": "TCP", "port": p} for p in outward]},
            # Its own DNS rule: with `destroy --exclude-protected` this protected
            # policy alone keeps the instances starting and archiving.
            _DNS,
        ],
        service=cluster,
        protect=protect,
    )  # fmt: skip
    # Prometheus' side of the metrics flow (its own policy opens only declared flows).
    network_policy(
        platform,
        f"{cluster}-metrics-scrape",
        platform.selector("prometheus"),
        egress=[{"to": [{"podSelector": {"matchLabels": instances}}],
                 "ports": [{"protocol": "TCP", "port": metrics_port}]}],
        service="prometheus",
    )  # fmt: skip


def _peer(platform: KubernetesPlatform, service: str) -> Manifest:
    """A source's pods: the collector's are in its own namespace."""
    peer: Manifest = {"podSelector": {"matchLabels": platform.selector(service)}}
    if service == LOG_COLLECTOR:
        peer["namespaceSelector"] = {
            "matchLabels": {"kubernetes.io/metadata.name": collector_namespace(platform.namespace)}
        }
    return peer


def _ports_between(graph: FlowGraph, source: str, target: ServiceSpec) -> list[Manifest]:
    """The ports ``source`` may open on ``target``: a public edge reaches a
    TLS-fronted service on its TLS port only; any other source its plain ports."""
    front = front_port(target)
    if front is not None and edge_ports(graph.services[source]):
        return [{"protocol": "TCP", "port": front.port}]
    return _policy_ports(target)


def _policy_ports(spec: ServiceSpec) -> list[Manifest]:
    return [{"protocol": p.protocol.upper(), "port": p.port} for p in spec.ports]

"""The platform layer: turns a :class:`~components.spec.ServiceSpec` into resources.

A component describes a service once and hands it to a :class:`Platform`.
Docker and Kubernetes are subclasses of it, so adding a platform adds a
package here and touches no component.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi

from components.spec import PostgresService, PostgresSpec, ServiceSpec, VolumeSpec

__all__ = ["Deployment", "FlowGraph", "Platform", "RegistryAuth"]


@dataclass(frozen=True)
class RegistryAuth:
    """Pull credentials for a private image registry (secret config)."""

    server: str
    """Registry host, e.g. ``ghcr.io``; images whose name starts with it use these."""
    username: str
    password: pulumi.Input[str]

    def serves(self, image: str) -> bool:
        return image.split("/", 1)[0] == self.server


@dataclass(frozen=True)
class Deployment:
    """What a platform made for one service.

    ``resources`` are what dependants wait for, through ``depends_on`` only: an
    ordering never forces a replacement. A one-shot job's resource fails when
    the job fails, so the engine starts none of its dependants.
    """

    service: str
    resources: Sequence[pulumi.Resource]
    addresses: Sequence[str] = field(default_factory=tuple)
    """``host:port`` of each replica's first port, for scrapes."""
    dns_names: Sequence[str] = field(default_factory=tuple)
    """Names resolving to one A record per replica (a headless Service), for DNS
    discovery; empty where ``addresses`` already name each replica (Docker)."""
    service_address: str | None = None
    """``host:port`` that reaches every replica, for load balancers."""
    resolver: str | None = None
    """A DNS server that answers for ``service_address`` with the replicas that run
    now; load balancers re-resolve through it per request. ``None``: the address
    is stable (a Kubernetes Service's cluster IP)."""
    names: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    """What an operator names the running service by: container names on Docker
    (``docker exec``), ``<kind>/<name>`` on Kubernetes (``kubectl exec``)."""
    public_address: pulumi.Input[str] | None = None
    """Where the world reaches the ports it publishes: what DNS must point at."""
    tls_address: str | None = None
    """``host:port`` reaching every replica over TLS (the stack CA's certificate
    for ``host``), where the platform realised the spec's ``tls_front``."""


class FlowGraph:
    """Who may talk to whom: the services a stack deploys and the flows they declared.

    Both platforms keep one and enforce it (Docker networks, Kubernetes
    NetworkPolicies), so the allowed flows are a single fact.
    """

    def __init__(self) -> None:
        self.services: dict[str, ServiceSpec] = {}
        self.flows: list[tuple[str, str]] = []

    def add(self, spec: ServiceSpec) -> None:
        if spec.name in self.services:
            raise ValueError(f"service {spec.name!r} is deployed twice")
        self.services[spec.name] = spec
        self.flows.extend((spec.name, target) for target in spec.connects_to)

    def check(self) -> None:
        """Fail when a flow names a service the stack does not deploy."""
        for source, target in self.flows:
            if target not in self.services:
                raise ValueError(f"{source} connects to {target}, which this stack does not deploy")

    def sources(self, target: str) -> list[str]:
        return sorted({s for s, t in self.flows if t == target})


class Platform(pulumi.ComponentResource, ABC):
    """What every platform offers to components, and the bookkeeping all of them share.

    Each platform keeps the stack's :class:`FlowGraph`: :meth:`deploy` records
    every service before the platform realises it, and :meth:`finish` checks
    that every declared flow has a target, then lets the platform complete the
    stack (Kubernetes writes its NetworkPolicies from the graph).
    """

    def __init__(
        self, t: str, name: str, stack: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(t, name, None, opts)
        self._name = name
        self._stack = stack
        self._graph = FlowGraph()
        self._finished = False
        self._names: dict[str, list[pulumi.Input[str]]] = {}
        self._public: dict[str, pulumi.Input[str]] = {}

    @property
    @abstractmethod
    def name(self) -> str:
        """``docker`` or ``kubernetes``."""

    @property
    def stack(self) -> str:
        return self._stack

    @property
    def crosses_hosts(self) -> bool:
        """Whether traffic between services leaves a machine (Kubernetes: between
        nodes), so the edge must reach the app over TLS (``ServiceSpec.tls_front``)."""
        return False

    @abstractmethod
    def volume(self, name: str, key: str, spec: VolumeSpec, *, parent: pulumi.Resource) -> None:
        """Create persistent storage (Pulumi name ``name``) that specs mount by ``key``."""

    def _add_flows(self, spec: ServiceSpec) -> None:
        """Put a service into the flow graph; refused once the network policy is written."""
        if self._finished:
            raise ValueError(f"{spec.name} is deployed after finish()")
        self._graph.add(spec)

    def deploy(
        self,
        name: str,
        spec: ServiceSpec,
        *,
        parent: pulumi.Resource,
        after: Sequence[Deployment] = (),
    ) -> Deployment:
        """Create the service's resources, named after ``name``, as children of ``parent``.

        ``after`` lists deployments (typically a migration job) that must have
        succeeded before this service (re)starts.
        """
        self._add_flows(spec)
        # Ordering only: depends_on never forces a replacement, so a dependant is
        # left alone when what it follows is replaced (a new app image keeps nginx).
        deployed = self._realise(name, spec, parent, [r for d in after for r in d.resources])
        if deployed.names:
            self._names[spec.name] = list(deployed.names)
        if deployed.public_address is not None:
            self._public[spec.name] = deployed.public_address
        return deployed

    def name_workload(self, service: str, name: pulumi.Input[str]) -> None:
        """Record the name of a workload the platform made outside :meth:`deploy`
        (a collector DaemonSet, an operator's database cluster)."""
        self._names.setdefault(service, []).append(name)

    @property
    def workloads(self) -> dict[str, list[pulumi.Input[str]]]:
        """Service -> the names runbooks use for it (a stack output, never typed by hand)."""
        return dict(self._names)

    def public_address(self, service: str) -> pulumi.Input[str] | None:
        """Where the world reaches ``service``'s published ports, if it publishes any."""
        return self._public.get(service)

    @abstractmethod
    def _realise(
        self, name: str, spec: ServiceSpec, parent: pulumi.Resource, after: list[pulumi.Resource]
    ) -> Deployment:
        """The platform's resources for ``spec``, each waiting for ``after``."""

    @abstractmethod
    def service_url(self, spec: ServiceSpec, port: str) -> str:
        """URL an operator uses to reach a published port."""

    @abstractmethod
    def postgres_dns_names(self, service: str) -> tuple[str, ...]:
        """Names clients reach ``service``'s PostgreSQL by; the first is the read-write one."""

    @abstractmethod
    def postgres(
        self, name: str, spec: PostgresSpec, *, parent: pulumi.Resource
    ) -> PostgresService:
        """Realise a managed PostgreSQL with the platform's best engine."""

    def finish(self) -> None:
        """Check the stack as a whole (every declared flow has a target), then complete it."""
        if self._finished:
            raise ValueError("finish() is called twice")
        self._graph.check()
        self._finished = True
        self._complete()

    def _complete(self) -> None:
        """What the platform adds once every service is known (nothing by default)."""

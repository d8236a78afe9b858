"""The platform layer: turns a :class:`~components.spec.ServiceSpec` into resources.

A component describes a service once and hands it to a :class:`Platform`.
Docker and Kubernetes implement the same protocol, so adding a platform adds a
module here and touches no component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

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


class Platform(Protocol):
    """What every platform offers to components."""

    @property
    def name(self) -> str:
        """``docker`` or ``kubernetes``."""
        ...

    @property
    def stack(self) -> str: ...

    def volume(self, name: str, key: str, spec: VolumeSpec, *, parent: pulumi.Resource) -> None:
        """Create persistent storage (Pulumi name ``name``) that specs mount by ``key``."""
        ...

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
        ...

    def service_url(self, spec: ServiceSpec, port: str) -> str:
        """URL an operator uses to reach a published port."""
        ...

    def postgres_dns_names(self, service: str) -> tuple[str, ...]:
        """Names clients reach ``service``'s PostgreSQL by; the first is the read-write one."""
        ...

    def postgres(
        self, name: str, spec: PostgresSpec, *, parent: pulumi.Resource
    ) -> PostgresService:
        """Realise a managed PostgreSQL with the platform's best engine."""
        ...

    def finish(self) -> None:
        """Check the stack as a whole (every declared flow has a target)."""
        ...

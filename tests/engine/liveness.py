"""What serves at each moment of an update: every service a person in crisis needs.

A plan's events (tests/engine/model.py) are replayed against the instances that
run: each container, Deployment or database cluster counts for the service it
belongs to, and an instance is *serving* once it passed its health check. The
services are the ones Luna's users and on-call depend on: the app, the edge, the
database, the cache and alert delivery (:data:`SERVICES`).

How a workload keeps serving while it changes, per kind:
- a Docker container never changes in place except its resources
  (facts.DOCKER_APPLIED): a replacement is a new instance, created first or
  after the old one is deleted;
- a Deployment rolls; it keeps its floor only with a RollingUpdate strategy
  whose ``maxUnavailable`` is 0 (kubernetes pkg/controller/deployment/rolling.go);
- a CloudNativePG Cluster applies a new image to the replicas first, then to the
  primary: by a switchover with ``primaryUpdateMethod: switchover`` and more
  than one instance, otherwise by restarting it
  (cloudnative-pg internal/controller/cluster_upgrade.go, ``updatePrimaryPod``;
  the method defaults to ``restart``, api/v1/cluster_types.go).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from components.platforms.docker.gate import HEALTH_GATE
from tests.engine.execute import CONTAINER, image_of
from tests.engine.model import Plan, Resource, State

__all__ = ["SERVICES", "Instance", "Liveness", "liveness"]

SERVICES = ("app", "edge", "database", "cache", "alerts")

Classify = Callable[[Resource], "tuple[str, int] | None"]
"""The service a resource runs and how many instances it counts for, or None."""


@dataclass(frozen=True)
class Instance:
    service: str
    count: int
    healthy: bool
    answering: bool = True
    """Reachable on the service's name (a gated replica is not until admitted)."""


@dataclass
class Liveness:
    serving: dict[str, list[int]] = field(default_factory=dict)
    """Healthy instances of each service, at the start and after each event."""
    running: dict[str, list[int]] = field(default_factory=dict)
    """Instances that answer on the service's name, healthy or not."""
    switchovers: list[str] = field(default_factory=list)

    def gaps(self, *services: str) -> dict[str, list[int]]:
        """Services that had a moment with nothing serving."""
        names = services or tuple(self.serving)
        return {s: t for s, t in self.serving.items() if s in names and t and min(t) < 1}

    def unhealthy_answering(self) -> dict[str, int]:
        """Services where an instance answered while failing its health check."""
        out = {}
        for s in self.running:
            worst = max(r - h for r, h in zip(self.running[s], self.serving[s], strict=True))
            if worst > 0:
                out[s] = worst
        return out

    def most_running(self, service: str) -> int:
        return max(self.running.get(service) or [0])


def _gated(state: State, after: Mapping[str, Resource]) -> set[str]:
    """Containers a health gate admits (components/platforms/docker/gate.py)."""
    commands = (*state.resources.values(), *after.values())
    return {
        dep
        for r in commands
        if r.type == "command:local:Command" and str(r.inputs.get("create")).startswith(HEALTH_GATE)
        for dep in r.dependencies
    }


def _initial(
    state: State, classify: Classify, unhealthy: set[str], gated: set[str]
) -> dict[tuple[str, str], Instance]:
    live: dict[tuple[str, str], Instance] = {}
    copies = [(r, "old") for r in state.resources.values()]
    copies += [(r, f"pending{i}") for i, r in enumerate(state.pending)]
    for r, tag in copies:
        kind = classify(r)
        if kind:
            # A Deployment whose rollout never became ready keeps its old
            # ReplicaSet serving (maxUnavailable 0); a container is what it runs.
            healthy = r.type != CONTAINER or (not r.init_errors and image_of(r) not in unhealthy)
            answering = healthy or r.urn not in gated
            live[(r.urn, tag)] = Instance(kind[0], kind[1], healthy, answering)
    return live


def liveness(
    result: Plan,
    before: Mapping[str, Resource] | State,
    after: Mapping[str, Resource],
    classify: Classify,
    *,
    unhealthy: set[str] = frozenset(),  # type: ignore[assignment]
) -> Liveness:
    """Replay ``result.events`` over what ran in ``before``."""
    state = before if isinstance(before, State) else State(before)
    gated = _gated(state, after)
    live = _initial(state, classify, unhealthy, gated)
    out = Liveness()
    services = sorted({i.service for i in live.values()} | _services(after, classify))

    def record(dip: str | None = None, surge: tuple[str, int] = ("", 0)) -> None:
        for s in services:
            # Surge pods answer once ready (a Service lists ready endpoints only).
            extra = surge[1] if s == surge[0] else 0
            healthy = sum(i.count for i in live.values() if i.service == s and i.healthy)
            out.serving.setdefault(s, []).append(0 if s == dip else healthy + extra)
            answering = sum(i.count for i in live.values() if i.service == s and i.answering)
            out.running.setdefault(s, []).append(0 if s == dip else extra + answering)

    record()
    for event, urn in result.events:
        new, old = after.get(urn), state.resources.get(urn)
        if event in ("fail", "interrupt"):
            break
        if event == "delete":
            live.pop((urn, "old"), None)
        elif event == "delete-pending":
            tag = next((k[1] for k in live if k[0] == urn and k[1].startswith("pending")), None)
            live.pop((urn, tag or ""), None)
        elif event in ("create", "partial") and new is not None:
            kind = classify(new)
            if kind and (event == "create" or new.type == CONTAINER):
                healthy = event == "create" and image_of(new) not in unhealthy
                answering = healthy or urn not in gated
                live[(urn, "new")] = Instance(kind[0], kind[1], healthy, answering)
        elif event == "update" and new is not None and old is not None:
            record(_dip(result, urn, old, new, classify, out), _surge(new, classify))
            continue
        record()
    return out


def _services(after: Mapping[str, Resource], classify: Classify) -> set[str]:
    return {k[0] for r in after.values() if (k := classify(r))}


def _surge(new: Resource, classify: Classify) -> tuple[str, int]:
    """A rolling Deployment starts ``maxSurge`` new pods beside the old ones
    (kubernetes pkg/controller/deployment/rolling.go); both answer on the Service."""
    kind = classify(new)
    strategy = (new.inputs.get("spec") or {}).get("strategy") or {}
    if not kind or new.type != "kubernetes:apps/v1:Deployment":
        return ("", 0)
    if strategy.get("type") == "Recreate":
        return ("", 0)
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", 1)
    return (kind[0], surge if isinstance(surge, int) else 1)


def _dip(
    result: Plan, urn: str, old: Resource, new: Resource, classify: Classify, out: Liveness
) -> str | None:
    """The service an in-place update leaves without a serving instance for a moment."""
    kind = classify(new)
    if not kind:
        return None
    spec = new.inputs.get("spec") or {}
    if new.type == "kubernetes:apps/v1:Deployment":
        strategy = spec.get("strategy") or {}
        unavailable = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
        if strategy.get("type") == "Recreate" or unavailable not in (0, "0", "0%"):
            return kind[0]
    if new.type.endswith(":Cluster") and "postgresql.cnpg.io" in new.type:
        keys = result.steps[urn].keys
        if any(k.startswith(".spec.imageName") for k in keys):
            replicated = int(spec.get("instances") or 1) > 1
            if replicated and spec.get("primaryUpdateMethod") == "switchover":
                out.switchovers.append(new.name)
                return None
            return kind[0]
    return None

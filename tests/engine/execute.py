"""How the engine executes a plan's steps, and what a failed or interrupted update leaves.

Sources (pulumi/pulumi pkg/resource/deploy/, pkg/v3.259; the rest in model.py):
- step_executor.go ``cancelDueToError``: the first failed step cancels every
  step not yet started; ``performPostSteps`` (the deletes) never runs then.
- step.go ``CreateStep.Apply``: a partial create (``resource.StatusPartialFailure``
  with a ``plugin.InitError``) is recorded with ``InitErrors``, and the old copy
  of a create-before-delete replacement is marked ``Delete`` either way.
- step.go ``UpdateStep.Apply``: a partial update is recorded with the new
  inputs and ``InitErrors`` (pulumi-kubernetes provider.go ``Update`` returns
  ``initializationError`` when the rollout it awaits does not finish).
- step_generator.go ``GenerateDeletes``: old copies marked ``Delete`` in the
  state (pending deletes) are deleted at the end, with the update's own deletes,
  dependants first (``ScheduleDeletes``).

The Docker daemon (moby daemon/names.go ``reserveName``) refuses a container
whose name another container holds, running or not: a create that reuses the
name of an old copy not yet deleted fails (facts.docker_name_conflict).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.platforms.docker.gate import HEALTH_GATE
from tests.engine.facts import docker_name_conflict

if TYPE_CHECKING:
    from tests.engine.model import Plan, Resource, State

__all__ = ["CONTAINER", "HEALTH_GATE", "Faults", "execute", "next_state"]

CONTAINER = "docker:index/container:Container"
_ROLLING = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")


@dataclass(frozen=True)
class Faults:
    failing: set[str]
    """URNs whose step fails outright."""
    unhealthy: set[str]
    """Image references and ids that never pass their health check."""
    interrupt_after: int | None = None
    fresh_names: set[str] = dataclasses.field(default_factory=set)
    """Containers whose name is generated anew by this update (never collides)."""


def _order(resources: Mapping[str, Resource]) -> list[str]:
    """Dependencies first, otherwise registration order (the engine's step order)."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(urn: str) -> None:
        if urn in seen:
            return
        seen.add(urn)
        for dep in resources[urn].dependencies:
            if dep in resources:
                visit(dep)
        done.append(urn)

    for urn in resources:
        visit(urn)
    return done


def image_of(r: Resource) -> str | None:
    """The image a container or a workload's pods run."""
    if r.type == CONTAINER:
        return str(r.inputs.get("image"))
    spec = r.inputs.get("spec") or {}
    pods = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return str(pods[0].get("image")) if pods else None


def _gate_blocked(r: Resource, unhealthy_now: set[str]) -> bool:
    """A health gate fails while any container it depends on is unhealthy."""
    script = r.inputs.get("create")
    if r.type != "command:local:Command" or not isinstance(script, str):
        return False
    if not script.startswith(HEALTH_GATE):
        return False
    return bool(set(r.dependencies) & unhealthy_now)


class _Run:
    """One update's execution: the events, the live container names, the faults."""

    def __init__(self, result: Plan, state: State, faults: Faults) -> None:
        self.result, self.state, self.faults = result, state, faults
        self.names: dict[str, str] = {}
        for r in (*state.resources.values(), *state.pending):
            name = r.inputs.get("name") if r.type == CONTAINER else None
            if isinstance(name, str):
                self.names[name] = r.urn
        # Health belongs to what runs: an empty update clears a container's init
        # errors in the state, never its failing health check.
        self.unhealthy = {
            u
            for u, r in state.resources.items()
            if r.init_errors or (r.type == CONTAINER and image_of(r) in faults.unhealthy)
        }

    def stop(self, kind: str, urn: str, error: str | None = None) -> bool:
        self.result.events.append((kind, urn))
        self.result.failed = urn
        if error:
            self.result.errors.append(error)
        return False

    def step(self, urn: str, new: Resource) -> bool:
        """Run one step; False when the update stops here."""
        step, events = self.result.steps[urn], self.result.events
        limit = self.faults.interrupt_after
        if limit is not None and len(events) >= limit:
            return self.stop("interrupt", urn)
        if urn in self.faults.failing:
            return self.stop("fail", urn)
        if step.op == "replace" and step.delete_before_replace:
            events.append(("delete", urn))
            self._forget(self.state.resources.get(urn))
        if _gate_blocked(new, self.unhealthy):
            return self.stop("fail", urn, f"{new.name}: a container it checks is not healthy")
        if step.op in ("create", "replace"):
            return self._create(urn, new)
        if step.op == "update":
            rolls = new.type in _ROLLING and image_of(new) in self.faults.unhealthy
            if rolls:
                # The provider awaits the rollout, which never finishes: a partial update.
                self.result.partial.add(urn)
                return self.stop("partial", urn, f"{new.name}: rollout never became ready")
            events.append(("update", urn))
        return True

    def _create(self, urn: str, new: Resource) -> bool:
        if new.type == CONTAINER:
            name = new.inputs.get("name")
            if isinstance(name, str) and urn not in self.faults.fresh_names:
                if name in self.names:
                    return self.stop("fail", urn, f"{new.name}: {docker_name_conflict(name)}")
                self.names[name] = urn
            if image_of(new) in self.faults.unhealthy:
                self.result.partial.add(urn)
                self.unhealthy.add(urn)
                return self.stop("partial", urn, f"{new.name}: container is unhealthy")
        self.unhealthy.discard(urn)
        self.result.events.append(("create", urn))
        return True

    def _forget(self, r: Resource | None) -> None:
        name = r.inputs.get("name") if r is not None and r.type == CONTAINER else None
        if isinstance(name, str):
            self.names.pop(name, None)


def _depths(after: Mapping[str, Resource]) -> dict[str, int]:
    """The step executor runs every step whose dependencies are done at once
    (step_executor.go, one worker per ready chain): steps of one depth are in
    flight together."""
    depth: dict[str, int] = {}
    for urn in _order(after):
        deps = [depth[d] for d in after[urn].dependencies if d in depth]
        depth[urn] = 1 + max(deps, default=0)
    return depth


def execute(result: Plan, state: State, after: Mapping[str, Resource], faults: Faults) -> None:
    """The engine's execution order. A failed step lets the steps in flight with it
    (its depth) finish and starts no other; an interrupt stops at once."""
    run = _Run(result, state, faults)
    depth = _depths(after)
    order = _order(after)
    stopped_at: int | None = None
    for urn in sorted(order, key=lambda u: (depth[u], order.index(u))):
        if result.steps[urn].op == "same":
            continue
        if stopped_at is not None and depth[urn] > stopped_at:
            break
        first = result.failed
        if not run.step(urn, after[urn]):
            result.failed = first or urn
            if result.events[-1][0] == "interrupt":
                break
            stopped_at = depth[urn] if stopped_at is None else stopped_at
    if result.failed is None:
        _deletes(result, state)
    result.next = next_state(result, state, after)


def _deletes(result: Plan, state: State) -> None:
    """performPostSteps: old copies and removed resources, pending ones included,
    dependants first."""
    olds = state.resources
    pending: dict[str, list[Resource]] = {}
    for r in state.pending:
        pending.setdefault(r.urn, []).append(r)
    for urn in reversed(_order(olds)):
        result.events += [("delete-pending", urn) for _ in pending.pop(urn, [])]
        s = result.steps[urn]
        if s.op == "delete" or (s.op == "replace" and not s.delete_before_replace):
            result.events.append(("delete", urn))
    for urn, copies in pending.items():
        result.events += [("delete-pending", urn) for _ in copies]


def next_state(result: Plan, state: State, after: Mapping[str, Resource]) -> State:
    from tests.engine.model import State

    done = {(e, u) for e, u in result.events}
    resources: dict[str, Resource] = {}
    for urn in _order(after):
        old = state.resources.get(urn)
        if ("partial", urn) in done:
            resources[urn] = dataclasses.replace(after[urn], init_errors=("never healthy",))
        elif ("create", urn) in done or ("update", urn) in done:
            resources[urn] = dataclasses.replace(after[urn], init_errors=())
        elif old is not None and ("delete", urn) not in done:
            resources[urn] = old
    for urn, old in state.resources.items():
        if urn not in after and ("delete", urn) not in done:
            resources[urn] = old
    deleted_pending = sum(1 for e, _ in result.events if e == "delete-pending")
    pending = list(state.pending) if not deleted_pending else []
    for urn, old in state.resources.items():
        s = result.steps.get(urn)
        replaced_first = s is not None and s.op == "replace" and not s.delete_before_replace
        new_ran = ("create", urn) in done or ("partial", urn) in done
        if replaced_first and new_ran and ("delete", urn) not in done:
            pending.append(old)
    return State(resources, tuple(pending))

"""A model of Pulumi's step generation and execution, for renders of this program.

There is no Pulumi CLI here, so this computes what ``pulumi up`` would do when
the program's output changes from one render (the stack's state) to another
(the program now): each resource's step, what protection refuses, and the order
in which the engine executes the steps, which tells whether any moment leaves
no app replica running.

Sources (pulumi/pulumi, pkg/resource/deploy/):
- step_generator.go ``continueStepsFromDiff``: a diff with replace keys is a
  replacement; the ``deleteBeforeReplace`` option overrides the provider's
  preference; a protected resource that must be replaced fails the update
  ("unable to replace resource … marked for protection").
- step_generator.go ``calculateDependentReplacements``: when a resource is
  replaced delete-before-create, a dependant is replaced too only if one of its
  inputs that came from it forces a replacement; a ``dependsOn``-only dependant
  never is.
- step.go ``CreateStep.Apply`` and step_generator.go ``GenerateDeletes``: the old
  copy of a create-before-delete replacement is deleted at the end of the
  update, after every create and update ("performPostSteps").
- step.go ``DeleteStep.Apply``: deleting a protected resource fails.
- step_executor.go ``cancelDueToError``: the first failed step cancels every step
  not yet started, and the deletes at the end never run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from infra.mocks import Record, unwrap
from infra.render import Rendered
from tests.engine.facts import DaemonConfig, Diff, diff, read_back

__all__ = ["Plan", "Resource", "Step", "plan", "snapshot"]

Op = Literal["same", "create", "update", "replace", "delete"]


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    name: str
    inputs: Mapping[str, Any]
    protect: bool
    delete_before_replace: bool
    dependencies: tuple[str, ...]
    property_dependencies: Mapping[str, tuple[str, ...]]
    outputs: Mapping[str, Any] = field(default_factory=dict)


def _resource(r: Record) -> Resource:
    return Resource(
        urn=r.urn,
        type=r.type,
        name=r.name,
        inputs=unwrap(r.inputs),
        protect=r.protect,
        delete_before_replace=r.delete_before_replace,
        dependencies=tuple(r.dependencies),
        property_dependencies={k: tuple(v) for k, v in r.property_dependencies.items()},
        outputs=unwrap(r.outputs),
    )


def snapshot(rendered: Rendered) -> dict[str, Resource]:
    """The custom resources of a render, in registration order."""
    return {r.urn: _resource(r) for r in rendered.monitor.records.values() if r.custom}


@dataclass(frozen=True)
class Step:
    op: Op
    urn: str
    keys: frozenset[str] = frozenset()
    delete_before_replace: bool = False
    unapplied: frozenset[str] = frozenset()


@dataclass
class Plan:
    steps: dict[str, Step]
    errors: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    """Execution order: ``(create|update|delete|fail, urn)``; a replacement's new copy
    is ``create`` and its old copy ``delete``."""
    failed: str | None = None

    def changed(self) -> dict[str, Step]:
        return {u: s for u, s in self.steps.items() if s.op != "same"}

    def unapplied(self) -> dict[str, frozenset[str]]:
        return {u: s.unapplied for u, s in self.steps.items() if s.unapplied}

    def executed(self, urn: str) -> bool:
        return any(u == urn and e != "fail" for e, u in self.events)


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


def _memory_refusal(old: Resource, state: Mapping[str, Any], new: Resource) -> str | None:
    """moby daemon (update_linux.go): memory above the swap limit is refused.

    The message is the daemon's own, seen here from Docker 20.10 (tests/real/test_docker_host.py).

    resourceDockerContainerUpdate sends memory always and memory_swap when non-zero;
    without it the daemon keeps the container's current swap limit.
    """
    memory = int(new.inputs.get("memory") or 0)
    swap = int(new.inputs.get("memorySwap") or 0) or int(state.get("memorySwap") or 0)
    if memory and swap and memory > swap:
        return (
            f"{new.name}: the Docker daemon refuses memory {memory} MiB above its swap "
            f"limit {swap} MiB: Memory limit should be smaller than already set memoryswap "
            "limit, update the memoryswap at the same time"
        )
    return None


def plan(
    before: Mapping[str, Resource],
    after: Mapping[str, Resource],
    *,
    daemon: DaemonConfig | None = None,
    failing: Iterable[str] = (),
    renewed: Iterable[str] = (),
) -> Plan:
    """The steps of ``pulumi up`` from state ``before`` to program ``after``.

    ``failing``: names of resources whose create/update fails (a failed job).
    ``renewed``: names whose provider asks for a replacement on its own (a
    certificate inside its renewal window).
    """
    daemon = daemon or DaemonConfig()
    failing, renewed = set(failing), set(renewed)
    steps: dict[str, Step] = {}
    errors: list[str] = []
    for urn, new in after.items():
        old = before.get(urn)
        if old is None:
            steps[urn] = Step("create", urn)
            continue
        state = read_back(old.type, old.inputs, daemon)
        d: Diff = diff(new.type, state, new.inputs)
        replace = d.replace | ({"(renewal)"} if new.name in renewed else set())
        if replace:
            dbr = new.delete_before_replace or d.delete_before_replace
            if old.protect and new.protect:
                errors.append(
                    f"unable to replace resource {urn} as it is currently marked for protection"
                    f" ({', '.join(sorted(replace))})"
                )
            steps[urn] = Step("replace", urn, frozenset(replace), dbr)
        elif d.changed:
            if new.type == "docker:index/container:Container" and "memory" in d.changed:
                refusal = _memory_refusal(old, state, new)
                if refusal:
                    errors.append(refusal)
            steps[urn] = Step("update", urn, d.changed, unapplied=d.unapplied)
        else:
            steps[urn] = Step("same", urn)
    for urn, old in before.items():
        if urn not in after:
            steps[urn] = Step("delete", urn)
            if old.protect:
                errors.append(f"resource {urn} cannot be deleted because it is protected")
    _dependent_replacements(steps, before, after, errors)
    _propagate_new_outputs(steps, before, after, errors, daemon)
    result = Plan(steps=steps, errors=errors)
    _execute(result, before, after, {u for u, r in after.items() if r.name in failing})
    return result


def _dependent_replacements(
    steps: dict[str, Step],
    before: Mapping[str, Resource],
    after: Mapping[str, Resource],
    errors: list[str],
) -> None:
    """step_generator.go calculateDependentReplacements, for delete-before-create roots."""
    roots = [u for u, s in steps.items() if s.op == "replace" and s.delete_before_replace]
    while roots:
        root = roots.pop()
        for urn, new in after.items():
            if steps[urn].op == "replace" or urn not in before:
                continue
            props = {k for k, deps in new.property_dependencies.items() if root in deps}
            if not props:
                continue  # dependsOn only: walked, never replaced
            # The inputs from the root become unknown: does that force a replacement?
            unknown = {k: object() for k in props}
            d = diff(new.type, dict(new.inputs), {**new.inputs, **unknown})
            if not d.replace:
                continue
            if before[urn].protect and new.protect:
                errors.append(
                    f"unable to replace resource {urn} as part of replacing {root} as it is "
                    "currently marked for protection"
                )
            steps[urn] = Step("replace", urn, d.replace, delete_before_replace=True)
            roots.append(urn)


_UNKNOWN = object()
"""An output the engine does not know yet (preview): it differs from any value."""


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{path}.{k}"))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_leaves(v, f"{path}[{i}]"))
        return out
    return {path: value}


def _computed(r: Resource) -> set[str]:
    """Values only the provider produced (a generated name, a certificate, a password):
    a replacement produces new ones."""
    given = _leaves(dict(r.inputs))
    return {
        v
        for p, v in _leaves(dict(r.outputs)).items()
        if isinstance(v, str) and len(v) >= 8 and given.get(p) != v
    }


def _unknown_where(value: Any, needles: set[str]) -> Any:
    """``value`` with every string that carries one of ``needles`` made unknown."""
    if isinstance(value, dict):
        return {k: _unknown_where(v, needles) for k, v in value.items()}
    if isinstance(value, list):
        return [_unknown_where(v, needles) for v in value]
    if isinstance(value, str) and any(n in value for n in needles):
        return _UNKNOWN
    return value


def _propagate_new_outputs(
    steps: dict[str, Step],
    before: Mapping[str, Resource],
    after: Mapping[str, Resource],
    errors: list[str],
    daemon: DaemonConfig,
) -> None:
    """A replaced resource has new outputs, unknown until it is created: the engine
    diffs a dependant's inputs with them as unknowns (step_generator.go), so a
    dependant whose input carries one is updated or replaced in turn, a
    certificate's consumers for instance. The renders cannot show it, since the
    mocks give the replacement the same outputs; this puts the unknowns back,
    exactly where the replaced resource's computed values appear.
    """
    replaced = {u for u, s in steps.items() if s.op == "replace"}
    for urn in _order(after):
        step, new, old = steps[urn], after[urn], before.get(urn)
        if old is None or step.op in ("replace", "create"):
            continue
        sources = {d for deps in new.property_dependencies.values() for d in deps} & replaced
        needles = set().union(*(_computed(after[d]) for d in sources if d in after))
        if not needles:
            continue
        inputs = _unknown_where(dict(new.inputs), needles)
        if inputs == dict(new.inputs):
            continue
        state = read_back(old.type, old.inputs, daemon)
        d = diff(new.type, state, inputs)
        if d.replace:
            if old.protect and new.protect:
                errors.append(
                    f"unable to replace resource {urn} as it is currently marked for protection"
                    " (it takes a value from a replaced resource)"
                )
            dbr = new.delete_before_replace or d.delete_before_replace
            steps[urn] = Step("replace", urn, d.replace, dbr)
            replaced.add(urn)
        elif d.changed:
            steps[urn] = Step("update", urn, d.changed | step.keys, unapplied=d.unapplied)


def _execute(
    result: Plan,
    before: Mapping[str, Resource],
    after: Mapping[str, Resource],
    failing: set[str],
) -> None:
    """The engine's execution order; stops at the first failed step."""
    events = result.events
    for urn in _order(after):
        step = result.steps[urn]
        if step.op == "same":
            continue
        if urn in failing:
            events.append(("fail", urn))
            result.failed = urn
            return  # cancelDueToError: nothing else starts, no deletes at the end
        if step.op == "replace" and step.delete_before_replace:
            events += [("delete", urn), ("create", urn)]
        elif step.op in ("create", "replace"):
            events.append(("create", urn))
        elif step.op == "update":
            events.append(("update", urn))
    # performPostSteps: the old copies of create-before-delete replacements and
    # removed resources, dependants first.
    deferred = [
        u
        for u in reversed(_order(before))
        if (s := result.steps[u]).op == "delete"
        or (s.op == "replace" and not s.delete_before_replace)
    ]
    events += [("delete", u) for u in deferred]


def running(
    result: Plan,
    before: Mapping[str, Resource],
    after: Mapping[str, Resource],
    counts: Callable[[Resource], int],
    is_app: Callable[[Resource], bool],
) -> list[int]:
    """App replicas running after each event (starting with the state's).

    ``counts`` gives the replicas a resource runs (1 for a container, the
    Deployment's floor on Kubernetes); an in-place update of a Deployment keeps
    them only with a rolling strategy that never goes below the floor.
    """
    live = {u: counts(r) for u, r in before.items() if is_app(r)}
    timeline = [sum(live.values())]
    for event, urn in result.events:
        if event == "fail":
            break
        new, old = after.get(urn), before.get(urn)
        if event == "delete" and old is not None and is_app(old):
            # The old copy goes (a CBD replacement's old copy, or a DBR delete).
            live.pop(urn, None)
        elif event == "create" and new is not None and is_app(new):
            live[urn + "#new" if urn in live else urn] = counts(new)
        elif event == "update" and new is not None and is_app(new) and "spec" in new.inputs:
            # A Deployment rolls its pods; a container updated in place keeps running.
            strategy = (new.inputs.get("spec") or {}).get("strategy") or {}
            rolling = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
            if strategy.get("type") == "Recreate" or rolling not in (0, "0", "0%"):
                timeline.append(0)
        timeline.append(sum(live.values()))
    return timeline


__all__ += ["running"]

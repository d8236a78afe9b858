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

What a failed or interrupted update leaves (tests/engine/test_model.py):
- Partial creates. A provider whose create made the thing but could not finish
  returns its ID with an error: pulumi-terraform-bridge pkg/tfbridge/provider.go
  ``initializationError`` (``ErrorResourceInitFailed``), which the engine's
  plugin turns into ``plugin.InitError`` (sdk/go/common/resource/plugin/
  provider_plugin.go). The Docker provider records the container's ID right
  after ``ContainerCreate``, before it starts and waits for health
  (kreuzwerker/terraform-provider-docker resource_docker_container_funcs.go,
  ``d.SetId(retContainer.ID)``), so a container that never turns healthy is a
  partial create: it keeps running. step.go ``CreateStep.Apply`` stores it with
  ``InitErrors`` and still marks the old copy ``Delete = true`` ("Mark the old
  resource as pending deletion if necessary"), then the step fails.
- A resource with init errors and no diff gets an *empty update* on the next
  ``up`` (step_generator.go: "If resource was unchanged, but there were
  initialization errors, generate an empty update step"); the Docker provider's
  update sends nothing and succeeds, so the container is taken as created.
- Pending deletes. Old copies marked ``Delete`` stay in the state and are
  deleted by the *next* update's ``GenerateDeletes``, at its end, with the
  other deletes (step_generator.go; pulumi/pulumi a3128e50 "Do not execute
  pending deletes at the start of deployment"); they never run when that
  update fails too.
- An interrupted update (SIGINT, a killed runner) stops like a failed step:
  what ran is recorded, old copies of finished replacements are pending deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from infra.mocks import Record, unwrap
from infra.render import Rendered
from tests.engine.execute import CONTAINER, Faults, _order, execute
from tests.engine.facts import DaemonConfig, Diff, diff, read_back

__all__ = ["Plan", "Resource", "State", "Step", "plan", "snapshot"]

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
    init_errors: tuple[str, ...] = ()
    """Set on a partial create (the thing runs, but never became ready)."""
    retain_on_delete: bool = False
    provider: str = ""


@dataclass(frozen=True)
class State:
    """A stack's state: its resources, and old copies still waiting to be deleted."""

    resources: Mapping[str, Resource]
    pending: tuple[Resource, ...] = ()


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
        retain_on_delete=r.retain_on_delete,
        provider=r.provider.rsplit("::", 1)[0] if r.provider else "",
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
    """Execution order: ``(kind, urn)``. ``create``, ``update``, ``delete`` (a
    replacement's new copy is ``create``, its old copy ``delete``); ``partial``
    (created, running, never ready: the step fails); ``delete-pending`` (an old
    copy a previous update left); ``fail`` and ``interrupt`` end the update."""
    failed: str | None = None
    partial: set[str] = field(default_factory=set)
    """Resources created (or updated) only partially: they carry init errors."""
    pending: tuple[Resource, ...] = ()
    """The state's old copies waiting for deletion when this update started."""
    next: State | None = None
    """The state this update leaves, for the next ``plan``."""

    def changed(self) -> dict[str, Step]:
        return {u: s for u, s in self.steps.items() if s.op != "same"}

    def unapplied(self) -> dict[str, frozenset[str]]:
        return {u: s.unapplied for u, s in self.steps.items() if s.unapplied}

    def executed(self, urn: str) -> bool:
        return any(u == urn and e not in ("fail", "interrupt") for e, u in self.events)

    def pending_deletes(self) -> list[str]:
        """URNs of the old copies this update leaves waiting for the next one."""
        return [r.urn for r in (self.next.pending if self.next else ())]


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
    before: Mapping[str, Resource] | State,
    after: Mapping[str, Resource],
    *,
    daemon: DaemonConfig | None = None,
    failing: Iterable[str] = (),
    renewed: Iterable[str] = (),
    unhealthy: Iterable[str] = (),
    interrupt_after: int | None = None,
) -> Plan:
    """The steps of ``pulumi up`` from state ``before`` to program ``after``.

    ``failing``: names of resources whose create/update fails (a failed job).
    ``renewed``: names whose provider asks for a replacement on its own (a
    certificate inside its renewal window).
    ``unhealthy``: image references (or image ids) that start but never pass
    their health check.
    ``interrupt_after``: the update is killed once this many events ran.
    """
    state = before if isinstance(before, State) else State(before)
    olds = state.resources
    daemon = daemon or DaemonConfig()
    failing, renewed = set(failing), set(renewed)
    steps: dict[str, Step] = {}
    errors: list[str] = []
    for urn, new in after.items():
        old = olds.get(urn)
        if old is None:
            steps[urn] = Step("create", urn)
            continue
        if _provider_swapped(old, new, olds, after):
            _protected_replace(old, new, urn, "its provider is another one", errors)
            steps[urn] = Step("replace", urn, frozenset({"provider"}), new.delete_before_replace)
            continue
        steps[urn] = _step(urn, old, new, daemon, renewed, errors, _config(new, after))
    for urn, old in olds.items():
        if urn not in after:
            steps[urn] = Step("delete", urn)
            if old.protect:
                errors.append(f"resource {urn} cannot be deleted because it is protected")
    _provider_replacements(steps, olds, after, errors)
    _dependent_replacements(steps, olds, after, errors)
    fresh = _propagate_new_outputs(steps, olds, after, errors, daemon)
    result = Plan(steps=steps, errors=errors, pending=state.pending)
    execute(
        result,
        state,
        after,
        Faults(
            failing={u for u, r in after.items() if r.name in failing},
            unhealthy=_unhealthy_images(set(unhealthy), after),
            interrupt_after=interrupt_after,
            fresh_names=fresh,
        ),
    )
    return result


def _config(r: Resource, resources: Mapping[str, Resource]) -> Mapping[str, Any]:
    """The inputs of the provider resource that manages ``r`` (its configuration)."""
    provider = resources.get(r.provider) if r.provider else None
    return provider.inputs if provider is not None else {}


def _provider_swapped(
    old: Resource, new: Resource, olds: Mapping[str, Resource], after: Mapping[str, Resource]
) -> bool:
    """step_generator.go ``providerChanged``: a resource moved to another explicit
    provider is replaced only when the *new* provider's DiffConfig, given the old
    provider's inputs and the new one's, asks for a replacement; otherwise it is
    diffed as usual by the new provider."""
    if not old.provider or not new.provider or old.provider == new.provider:
        return False
    was, now = olds.get(old.provider), after.get(new.provider)
    if was is None or now is None:
        return True
    return bool(diff(now.type, dict(was.inputs), dict(now.inputs)).replace)


def _protected_replace(old: Resource, new: Resource, urn: str, why: str, errors: list[str]) -> None:
    # step_generator.go: `if new.Protect && old.Protect` (unprotecting and replacing
    # in one update is allowed).
    if old.protect and new.protect:
        errors.append(
            f"unable to replace resource {urn} as it is currently marked for protection ({why})"
        )


def _step(
    urn: str, old: Resource, new: Resource, daemon: DaemonConfig, renewed: set[str],
    errors: list[str], config: Mapping[str, Any],
) -> Step:  # fmt: skip
    state = read_back(old.type, old.inputs, daemon)
    d: Diff = diff(new.type, state, new.inputs, config)
    replace = d.replace | ({"(renewal)"} if new.name in renewed else set())
    if replace:
        dbr = new.delete_before_replace or d.delete_before_replace
        if old.protect and new.protect:
            errors.append(
                f"unable to replace resource {urn} as it is currently marked for protection"
                f" ({', '.join(sorted(replace))})"
            )
        return Step("replace", urn, frozenset(replace), dbr)
    if d.changed:
        if new.type == CONTAINER and "memory" in d.changed:
            refusal = _memory_refusal(old, state, new)
            if refusal:
                errors.append(refusal)
        return Step("update", urn, d.changed, unapplied=d.unapplied)
    if old.init_errors:
        # step_generator.go: unchanged but with init errors: an empty update.
        return Step("update", urn, frozenset({"#initerror"}))
    return Step("same", urn)


def _provider_replacements(
    steps: dict[str, Step],
    before: Mapping[str, Resource],
    after: Mapping[str, Resource],
    errors: list[str],
) -> None:
    """step_generator.go ``providerChanged``: a resource whose provider is replaced
    is replaced too (a new provider cannot manage the old one's objects)."""
    replaced = {u for u, s in steps.items() if s.op == "replace" and u in after and
                after[u].type.startswith("pulumi:providers:")}  # fmt: skip
    if not replaced:
        return
    for urn, new in after.items():
        if new.provider in replaced and urn in before and steps[urn].op != "replace":
            if before[urn].protect and new.protect:
                errors.append(
                    f"unable to replace resource {urn} as it is currently marked for protection"
                    " (its provider is replaced)"
                )
            steps[urn] = Step("replace", urn, frozenset({"provider"}), new.delete_before_replace)


def _unhealthy_images(refs: set[str], after: Mapping[str, Resource]) -> set[str]:
    """Image references and the ids the renders give their RemoteImages."""
    ids = {
        str(r.outputs.get("imageId"))
        for r in after.values()
        if r.type == "docker:index/remoteImage:RemoteImage" and r.inputs.get("name") in refs
    }
    return refs | ids


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
            d = diff(new.type, dict(new.inputs), {**new.inputs, **unknown}, _config(new, after))
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
) -> set[str]:
    """A replaced resource has new outputs, unknown until it is created: the engine
    diffs a dependant's inputs with them as unknowns (step_generator.go), so a
    dependant whose input carries one is updated or replaced in turn, a
    certificate's consumers for instance. The renders cannot show it, since the
    mocks give the replacement the same outputs; this puts the unknowns back,
    exactly where the replaced resource's computed values appear.

    Returns the resources whose ``name`` input becomes unknown this way: a
    generated name, new with every replacement.
    """
    fresh: set[str] = set()
    replaced = {u for u, s in steps.items() if s.op == "replace"}
    for urn in _order(after):
        step, new, old = steps[urn], after[urn], before.get(urn)
        if old is None or step.op == "create":
            continue
        sources = {d for deps in new.property_dependencies.values() for d in deps} & replaced
        needles = set().union(*(_computed(after[d]) for d in sources if d in after))
        if not needles:
            continue
        inputs = _unknown_where(dict(new.inputs), needles)
        if inputs.get("name") is _UNKNOWN:
            fresh.add(urn)
        if inputs == dict(new.inputs) or step.op == "replace":
            continue
        state = read_back(old.type, old.inputs, daemon)
        d = diff(new.type, state, inputs, _config(new, after))
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
    return fresh


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


def destroy_excluding_protected(state: Mapping[str, Resource]) -> tuple[set[str], set[str]]:
    """``pulumi destroy --exclude-protected``: (deleted, kept) URNs.

    pkg/cmd/pulumi/operations/destroy.go ``getProtectedExcludes``: every protected
    resource and its transitive dependencies (graph.DependencyGraph
    ``TransitiveDependenciesOf``: dependencies, property dependencies, the parent
    and the provider) are excluded; step_generator.go
    ``determineForbiddenResourcesToDeleteFromExcludes`` keeps them, and every
    other resource is deleted.
    """
    kept: set[str] = set()
    frontier = [u for u, r in state.items() if r.protect]
    while frontier:
        urn = frontier.pop()
        if urn in kept or urn not in state:
            continue
        kept.add(urn)
        r = state[urn]
        deps = {*r.dependencies, *(d for ds in r.property_dependencies.values() for d in ds)}
        frontier += [*deps, r.provider] if r.provider else list(deps)
    return set(state) - kept, kept


__all__ += ["destroy_excluding_protected"]

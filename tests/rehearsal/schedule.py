"""Which of a plan's steps may run at the same time, as the Pulumi engine runs them.

``pulumi up`` runs with unbounded parallelism by default (pulumi/pulumi
pkg/cmd/pulumi/up.go: ``--parallel``, "Defaults to unbounded"). A resource's step
starts as soon as the program registers it, and the program registers it once the
outputs it depends on have resolved, that is once its dependencies' steps are done
(pkg/resource/deploy/step_executor.go runs each chain on its own worker). So two
app replicas that depend on the same migration are created at once, not one after
the other.

Deletes are post-steps (step_generator.go ``GenerateDeletes``/``ScheduleDeletes``):
they run after every other step, dependants first. The rehearsal runs them one at
a time, and a delete inside the update (a delete-before-replace) is a barrier: it
waits for every earlier step and every later step waits for it. That is stricter
than the engine, never looser.

When a step fails, the engine starts nothing new (``cancelDueToError``), and the
steps already running finish: the applier stops submitting and waits for them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.engine.model import Resource

__all__ = ["BARRIERS", "closure", "ready"]

BARRIERS = frozenset({"delete", "delete-pending", "fail", "interrupt"})


def closure(program: Mapping[str, Resource]) -> dict[str, frozenset[str]]:
    """Each resource's dependencies, transitively: a step also waits for a dependency
    of a dependency whose own step is ``same`` (it registers only after it)."""
    memo: dict[str, frozenset[str]] = {}

    def deps(urn: str) -> frozenset[str]:
        if urn not in memo:
            memo[urn] = frozenset()  # a cycle cannot be registered; guard anyway
            direct = program[urn].dependencies if urn in program else ()
            memo[urn] = frozenset(direct).union(*(deps(d) for d in direct))
        return memo[urn]

    return {urn: deps(urn) for urn in program}


def _blocks(earlier: tuple[str, str], later: tuple[str, str],
            needs: Mapping[str, frozenset[str]]) -> bool:  # fmt: skip
    (kind_a, urn_a), (kind_b, urn_b) = earlier, later
    if kind_a in BARRIERS or kind_b in BARRIERS or urn_a == urn_b:
        return True
    return urn_b not in needs or urn_a in needs[urn_b]


def ready(
    events: Sequence[tuple[str, str]],
    needs: Mapping[str, frozenset[str]],
    done: Collection[int],
    started: Collection[int],
) -> list[int]:
    """Indexes of the events not yet started whose every blocking earlier event is done.

    ``needs``: :func:`closure` of the program the events apply."""
    return [
        i
        for i, event in enumerate(events)
        if i not in started and all(j in done for j in range(i) if _blocks(events[j], event, needs))
    ]

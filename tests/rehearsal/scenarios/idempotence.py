"""h. Idempotence: a second ``up`` of the same render changes nothing; every
container keeps its ID.

The state the engine diffs against is what the provider *read back* from the
daemon (resourceDockerContainerRead, resource_docker_container_funcs.go), not
what the program sent. So each container's read-back fields are taken from
``docker inspect`` here, in the provider's spelling, and diffed against the
program's second render with the engine model's provider diff
(tests/engine/facts.py). A field the daemon re-spells (cpus, health-check
durations, log options it merges in) would show up as a change; the model's
own read-back is checked against the daemon's on the way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tests.engine.facts import diff, go_duration_string, nano_to_decimal_string, read_back
from tests.real.docker_host import DAEMON
from tests.rehearsal.applier import CONTAINER, StepError
from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios.probe import rerender
from tests.rehearsal.session import Rehearsal

__all__ = ["daemon_read_back", "run"]


def _duration(nanos: int) -> str:
    return go_duration_string(nanos // 10**9)


def daemon_read_back(inspect: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """``resourceDockerContainerRead`` over a real ``docker inspect``: the fields it sets."""
    hc, cfg = inspect["HostConfig"], inspect["Config"]
    state = dict(inputs)  # env, labels, uploads, networks: never read back
    state.update(
        name=inspect["Name"].lstrip("/"),
        hostname=cfg.get("Hostname"),
        user=cfg.get("User") or None,
        readOnly=hc.get("ReadonlyRootfs"),
        restart=hc["RestartPolicy"]["Name"],
        init=bool(hc.get("Init")),
        securityOpts=hc.get("SecurityOpt") or [],
        tmpfs=hc.get("Tmpfs") or {},
        memory=hc.get("Memory", 0) // 2**20,
        memorySwap=hc.get("MemorySwap", 0) // 2**20 if hc.get("MemorySwap", 0) > 0 else 0,
        logDriver=hc["LogConfig"]["Type"],
        stopSignal=cfg.get("StopSignal") or None,  # the image's when none was sent
    )
    if "logOpts" in inputs:
        state["logOpts"] = hc["LogConfig"].get("Config") or {}
    if hc.get("NanoCpus"):
        state["cpus"] = nano_to_decimal_string(int(hc["NanoCpus"]))
    health = cfg.get("Healthcheck")
    if health and inputs.get("healthcheck"):
        state["healthcheck"] = {
            **inputs["healthcheck"],
            "interval": _duration(health.get("Interval", 0)),
            "timeout": _duration(health.get("Timeout", 0)),
            "startPeriod": _duration(health.get("StartPeriod", 0)),
            "retries": health.get("Retries"),
        }
    if not inputs.get("user"):
        # resource_docker_container.go, "user": DiffSuppressFunc treats an empty new
        # value as no change, so the image's USER read back is never a diff.
        state["user"] = inputs.get("user")
    caps_add, caps_drop = hc.get("CapAdd") or [], hc.get("CapDrop") or []
    if caps_add or caps_drop:
        state["capabilities"] = {"adds": caps_add, "drops": caps_drop}
    return state


def _without(inputs: Mapping[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if k not in keys}


def run(r: Rehearsal) -> Outcome:
    applied = r.applier.state
    before_ids = {
        u: applied.ids[u] for u, res in applied.resources.items() if res.type == CONTAINER
    }
    again = rerender(r)
    changes: list[str] = []
    model_misses: list[str] = []
    for urn, cid in before_ids.items():
        new = again.resources.get(urn)
        if new is None:
            changes.append(f"{urn.split('::')[-1]}: gone from the second render")
            continue
        inspect = json.loads(r.docker("inspect", cid))[0]
        state = daemon_read_back(inspect, dict(applied.resources[urn].inputs))
        # Inputs the rehearsal replaced (GELF) are not the daemon's to read back.
        skip = applied.substituted.get(urn, frozenset())
        d = diff(CONTAINER, _without(state, skip), _without(new.inputs, skip))
        if d.changed:
            changes.append(
                f"{applied.names[urn]}: {sorted(d.changed)} (replace {sorted(d.replace)})"
            )
        model = read_back(CONTAINER, applied.resources[urn].inputs, DAEMON)
        for key in {"cpus", "healthcheck", "logOpts", "memorySwap"} - skip:
            if key in model and model.get(key) != state.get(key):
                model_misses.append(f"{applied.names[urn]}.{key}: model {model.get(key)!r} "
                                    f"daemon {state.get(key)!r}")  # fmt: skip
    try:
        result = r.applier.up(again.resources)
    except StepError as error:
        return Outcome("idempotence", False, "second up failed", str(error))
    after_ids = {u: applied.ids.get(u) for u in before_ids}
    moved = [applied.names.get(u, u) for u in before_ids if after_ids[u] != before_ids[u]]
    steps = {u: s.op for u, s in result.changed().items()}
    ok = not changes and not moved and not steps and not model_misses
    figure = (f"{len(before_ids)} containers, {len(before_ids) - len(moved)} kept their ID; "
              f"{len(steps)} steps planned, {len(changes)} read-back diffs")  # fmt: skip
    detail = "\n".join([*changes, *model_misses, *(f"{op} {u}" for u, op in steps.items())])
    return Outcome("idempotence", ok, figure, detail)

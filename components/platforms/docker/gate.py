"""Admission of a routed service's replicas on Docker: healthy first, then reachable.

Docker's embedded DNS answers a network alias with every container on the
network as soon as it starts, healthy or not (../shared/FACTS.md), and a
container the provider created but which never turned healthy stays running
(a partial create, tests/engine/model.py). So the replicas of a service behind
the edge are created *off* their service's network, and this script, run by a
``command:local:Command`` after them, waits until every one of them is healthy
and only then connects each to the network under the service's name: nginx,
which resolves that name per request, never sees a replica that did not pass
its health check.

The script fails when a replica is not healthy in time. The engine then starts
nothing after it and runs none of the update's deletes (step_executor.go
``cancelDueToError``): the old replicas, including any left pending-delete by an
earlier failed update, keep serving.

A replica leaves when its container is deleted at the end of the update:
``docker stop`` sends SIGTERM, the app closes its listener and finishes what is
in flight (docs/app-contract.md) within ``destroy_grace_seconds``, and nginx
retries a refused connection on another replica (``proxy_next_upstream error``).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HEALTH_GATE", "Admission", "gate_script"]

HEALTH_GATE = "# luna: health gate"
"""The script's first line; the engine model (tests/engine/execute.py) knows a
gate by it."""


@dataclass(frozen=True)
class Admission:
    container: str
    aliases: Sequence[str]


def gate_script(
    network: str, replicas: Sequence[Admission], *, timeout_s: int, settle_s: int = 0
) -> str:
    """Wait for every replica to be healthy, connect each to ``network``, then wait
    ``settle_s``.

    The settle is for the edge's DNS cache: the engine deletes the replicas this
    generation replaces right after this step, and a container's address vanishes
    with it. nginx keeps a resolved answer for its resolver's ``valid`` time, so an
    answer taken just before this step names only the old replicas; once they are
    gone, every address in it times out and the request fails (measured on the
    rehearsal: two 504s in a rollout). After ``settle_s`` > ``valid`` every cached
    answer also names the replicas admitted here.
    """
    if not replicas:
        raise ValueError("a health gate needs at least one replica")
    health = "{{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}"
    joined = "{{range $k, $v := .NetworkSettings.Networks}}{{println $k}}{{end}}"
    lines = [
        HEALTH_GATE,
        "set -eu",
        "healthy() {",
        "  i=0",
        f'  until [ "$(docker inspect --format \'{health}\' "$1")" = healthy ]; do',
        "    i=$((i + 1))",
        f'    if [ "$i" -ge {timeout_s} ]; then',
        '      echo "$1 is not healthy: not admitted" >&2',
        "      return 1",
        "    fi",
        "    sleep 1",
        "  done",
        "}",
    ]
    lines += [f"healthy {shlex.quote(r.container)}" for r in replicas]
    # Only once all are healthy: a failed gate admits none of this generation.
    for r in replicas:
        c = shlex.quote(r.container)
        aliases = " ".join(f"--alias {shlex.quote(a)}" for a in r.aliases)
        lines.append(
            f"docker inspect --format '{joined}' {c} | grep -qxF {shlex.quote(network)}"
            f" || docker network connect {aliases} {shlex.quote(network)} {c}"
        )
    if settle_s:
        lines.append(f"sleep {int(settle_s)}  # the edge re-resolves the name meanwhile")
    return "\n".join(lines) + "\n"

"""Renders of a stack before and after an operator's change, and what counts as the app.

Each scenario renders the real program twice under the mocks (the state, then
the program after the change) and hands both to :func:`tests.engine.model.plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from infra.render import render
from tests.engine.liveness import Liveness, liveness
from tests.engine.model import Plan, Resource, State, plan, running, snapshot

__all__ = [
    "APP_IMAGE_NEXT",
    "app_timeline",
    "belongs_to",
    "classify",
    "component_of",
    "day2",
    "live",
    "snap",
]

# Digest-pinned: prod runs nothing else (infra/settings.py, check_prod_app_image).
APP_IMAGE_NEXT = "ghcr.io/luna-app/luna-web:1.1.0@sha256:" + "1" * 64

Pairs = tuple[tuple[str, str], ...]


@cache
def snap(stack: str, platform: str, config: Pairs = (), secrets: Pairs = ()) -> dict[str, Resource]:
    # dev runs the demo app by default, built on the Docker host (docs/app-contract.md);
    # these scenarios run dev as an operator with a real pinned appImage does.
    dev = (("demoApp", "false"),) if stack == "dev" else ()
    rendered = render(stack, overrides=(("platform", platform), *dev, *config), secrets=secrets)
    return snapshot(rendered)


def component_of(urn: str) -> str:
    """The Luna component a resource belongs to, from its URN's type chain."""
    chain = urn.split("::")[2]
    for part in chain.split("$"):
        if part.startswith("luna:components:"):
            return part.removeprefix("luna:components:")
    return "platform"


def belongs_to(urn: str, *components: str) -> bool:
    return component_of(urn) in components


def _is_app(r: Resource) -> bool:
    if r.type == "docker:index/container:Container":
        labels = {x["label"]: x["value"] for x in r.inputs.get("labels") or []}
        return labels.get("com.luna.service") == "app"
    if r.type == "kubernetes:apps/v1:Deployment":
        return bool((r.inputs.get("metadata") or {}).get("name") == "app")
    return False


def _replicas(resources: Mapping[str, Resource]) -> dict[str, int]:
    return {
        r.inputs["spec"]["scaleTargetRef"]["name"]: int(r.inputs["spec"]["minReplicas"])
        for r in resources.values()
        if r.type == "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
    }


def app_timeline(
    result: Plan, before: Mapping[str, Resource], after: Mapping[str, Resource]
) -> list[int]:
    """Running app replicas after each executed event."""
    floors = {**_replicas(before), **_replicas(after)}

    def counts(r: Resource) -> int:
        if r.type == "docker:index/container:Container":
            return 1
        spec = r.inputs.get("spec") or {}
        return int(spec.get("replicas") or floors.get("app", 1))

    return running(result, before, after, counts, _is_app)


_SERVICE = {"app": "app", "proxy": "edge", "database": "database", "cache": "cache",
            "alertmanager": "alerts"}  # fmt: skip


def classify(r: Resource, floors: Mapping[str, int] | None = None) -> tuple[str, int] | None:
    """The Luna service (liveness.SERVICES) a resource runs, and how many instances."""
    if r.type == "docker:index/container:Container":
        labels = {x["label"]: x["value"] for x in r.inputs.get("labels") or []}
        service = _SERVICE.get(labels.get("com.luna.service", ""))
        return (service, 1) if service else None
    spec = r.inputs.get("spec") or {}
    if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"):
        name = str((r.inputs.get("metadata") or {}).get("name"))
        service = _SERVICE.get(name)
        count = int(spec.get("replicas") or (floors or {}).get(name, 1))
        return (service, count) if service else None
    if r.type == "kubernetes:postgresql.cnpg.io/v1:Cluster":
        return ("database", int(spec.get("instances") or 1))
    return None


def live(
    result: Plan,
    before: Mapping[str, Resource] | State,
    after: Mapping[str, Resource],
    unhealthy: set[str] = frozenset(),  # type: ignore[assignment]
) -> Liveness:
    """What serves, per service, over ``result``'s events."""
    olds = before.resources if isinstance(before, State) else before
    floors = {**_replicas(olds), **_replicas(after)}
    ids = {
        str(r.outputs.get("imageId"))
        for r in (*olds.values(), *after.values())
        if r.type == "docker:index/remoteImage:RemoteImage" and r.inputs.get("name") in unhealthy
    }
    return liveness(
        result, before, after, lambda r: classify(r, floors), unhealthy=set(unhealthy) | ids
    )


def day2(
    before: Mapping[str, Resource],
    after: Mapping[str, Resource],
    **kwargs: object,
) -> tuple[Plan, list[int]]:
    result = plan(before, after, **kwargs)  # type: ignore[arg-type]
    return result, app_timeline(result, before, after)

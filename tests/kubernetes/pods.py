"""Pod templates inside workloads, wherever each kind keeps them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"])
    return dict(obj["spec"]["template"])


def workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) pairs."""
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj, pod_template(obj)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())

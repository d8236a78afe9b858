"""What a render deployed, asked the same way on either platform.

Tests of platform-neutral properties (which services run, how many replicas,
what is exposed, what is protected) use these; platform-specific shapes are
tested in tests/test_program.py (Docker) and tests/kubernetes/.
"""

from __future__ import annotations

import re
from typing import Any

from infra.mocks import Record, unwrap
from infra.render import Rendered

__all__ = [
    "data_records",
    "exposed_ports",
    "replica_count",
    "service_env",
    "services",
    "workloads",
]

_WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet")
_NAME = "app.kubernetes.io/name"


def _labels(rec: Record) -> dict[str, str]:
    return {lab["label"]: lab["value"] for lab in unwrap(rec.inputs.get("labels") or [])}


def _job(script: str) -> bool:
    """A one-shot job runs its container attached (docker/jobs.py); the platform's
    other Commands (admission, live files, reload) run none."""
    return "docker start --attach" in script


def workloads(r: Rendered) -> dict[str, list[dict[str, Any]]]:
    """Service name → its Docker containers' inputs, or its Kubernetes workload objects."""
    found: dict[str, list[dict[str, Any]]] = {}
    for rec in r.monitor.records.values():
        if rec.type == "docker:index/container:Container":
            found.setdefault(_labels(rec)["com.luna.service"], []).append(rec.inputs)
        elif rec.type == "command:local:Command" and _job(unwrap(rec.inputs["create"])):
            # A Docker one-shot job: its script creates the container by name.
            match = re.search(
                r"docker create --name luna-[a-z]+-(\S+)", unwrap(rec.inputs["create"])
            )
            assert match, f"{rec.name}: no container in its script"
            found.setdefault(match.group(1), []).append(rec.inputs)
    for obj in r.manifests():
        if obj["kind"] in _WORKLOADS:
            found.setdefault(obj["metadata"]["labels"][_NAME], []).append(obj)
    return found


def services(r: Rendered) -> set[str]:
    return set(workloads(r))


def replica_count(r: Rendered, service: str) -> int:
    """Docker: containers; Kubernetes: `replicas`, or the HPA's floor when an HPA owns it."""
    items = workloads(r)[service]
    if "kind" not in items[0]:
        return len(items)
    for obj in r.manifests():
        if (
            obj["kind"] == "HorizontalPodAutoscaler"
            and obj["spec"]["scaleTargetRef"]["name"] == (items[0]["metadata"]["name"])
        ):
            return int(obj["spec"]["minReplicas"])
    return int(items[0]["spec"].get("replicas", 1))


def exposed_ports(r: Rendered, service: str) -> list[Any]:
    """Ports reachable from outside: host ports (Docker), or NodePort/LoadBalancer
    Services and hostPorts (Kubernetes)."""
    exposed: list[Any] = []
    for item in workloads(r).get(service, []):
        if "kind" not in item:
            exposed += unwrap(item.get("ports") or [])
            continue
        pod = item["spec"].get("jobTemplate", {}).get("spec", item["spec"])["template"]["spec"]
        for container in pod["containers"]:
            exposed += [p for p in container.get("ports") or [] if p.get("hostPort")]
        selector = item["spec"].get("selector", {}).get("matchLabels", {})
        for obj in r.manifests():
            if obj["kind"] != "Service" or obj["spec"].get("type") not in (
                "NodePort",
                "LoadBalancer",
            ):
                continue
            if selector and obj["spec"].get("selector") == selector:
                exposed += obj["spec"]["ports"]
    return exposed


def data_records(r: Rendered) -> list[Record]:
    """Persistent data: Docker volumes and Kubernetes PVCs (processes are not data)."""
    kinds = ("docker:index/volume:Volume", "kubernetes:core/v1:PersistentVolumeClaim")
    return [rec for rec in r.monitor.records.values() if rec.type in kinds]


def service_env(r: Rendered, service: str) -> dict[str, str]:
    """The first container's environment of ``service``, secrets in clear.

    Docker: its ``envs``; Kubernetes: ``env`` values and the Secret keys their
    ``secretKeyRef`` names.
    """
    secrets: dict[str, dict[str, str]] = {}
    for rec in r.monitor.records.values():
        if rec.type == "kubernetes:core/v1:Secret":
            name = unwrap(rec.outputs.get("metadata") or {}).get("name")
            secrets[name] = unwrap(rec.inputs.get("stringData") or {})
    for rec in r.monitor.records.values():
        if rec.type == "docker:index/container:Container":
            if _labels(rec).get("com.luna.service") == service:
                return dict(e.split("=", 1) for e in unwrap(rec.inputs.get("envs") or []))
        elif rec.type.startswith("kubernetes:apps/v1:") or rec.type.startswith("kubernetes:batch/"):
            obj = unwrap(rec.inputs)
            if (obj.get("metadata") or {}).get("labels", {}).get(_NAME) != service:
                continue
            spec = obj["spec"]
            template = (spec.get("jobTemplate") or {}).get("spec", spec)["template"]
            env: dict[str, str] = {}
            for e in template["spec"]["containers"][0].get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                env[e["name"]] = secrets[ref["name"]][ref["key"]] if ref else e.get("value", "")
            return env
    raise AssertionError(f"no workload for {service}")

"""What a render asks of its host or cluster: summed limits of what runs all the time.

Docker: every container that is kept running (``restart`` other than ``no``).
Kubernetes: every Deployment and StatefulSet at its replica count (the HPA's
floor for the app), every CloudNativePG Cluster at its instances, DaemonSets
once per node, PVC and Cluster storage. One-shot Jobs and CronJobs come on top
while they run. docs/environments.md's sizing table is generated from this
(``python -m infra.docs_config --write``) and a test keeps it in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from infra.mocks import unwrap
from infra.render import Rendered, autoscalers

__all__ = ["Sizing", "sizing"]

# MiB per unit of a Kubernetes quantity; no unit means bytes.
_MIB_PER_UNIT = {
    "": 1 / 2**20,
    "Ki": 1 / 2**10,
    "Mi": 1.0,
    "Gi": 2.0**10,
    "Ti": 2.0**20,
    "k": 1e3 / 2**20,
    "M": 1e6 / 2**20,
    "G": 1e9 / 2**20,
    "T": 1e12 / 2**20,
}


@dataclass
class Sizing:
    """Summed limits; ``per_node`` is what DaemonSets add on every Kubernetes node."""

    workloads: int = 0
    memory_mb: float = 0.0
    cpus: float = 0.0
    storage_gb: float = 0.0
    per_node_memory_mb: float = 0.0
    per_node_cpus: float = 0.0
    app_ceiling_extra_memory_mb: float = 0.0
    app_ceiling_extra_cpus: float = 0.0
    names: list[str] = field(default_factory=list)


def _mib(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kMGT])?", str(quantity))
    if not match:
        raise ValueError(f"unsupported memory quantity {quantity!r}")
    return float(match.group(1)) * _MIB_PER_UNIT[match.group(2) or ""]


def _cpus(quantity: str) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _limits(pod_spec: dict[str, Any]) -> tuple[float, float]:
    memory = cpus = 0.0
    for container in pod_spec.get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        memory += _mib(limits["memory"]) if "memory" in limits else 0.0
        cpus += _cpus(limits["cpu"]) if "cpu" in limits else 0.0
    return memory, cpus


def sizing(rendered: Rendered) -> Sizing:
    size = Sizing()
    for rec in rendered.monitor.records.values():
        if rec.type != "docker:index/container:Container":
            continue
        inputs = unwrap(rec.inputs)
        if inputs.get("restart", "no") == "no":
            continue
        size.workloads += 1
        size.memory_mb += float(inputs.get("memory") or 0)
        size.cpus += float(inputs.get("cpus") or 0)
        size.names.append(str(inputs.get("name")))
    manifests = rendered.manifests()
    hpa = autoscalers(manifests)
    for obj in manifests:
        kind, spec = obj["kind"], obj.get("spec") or {}
        if kind in ("Deployment", "StatefulSet"):
            name = obj["metadata"]["name"]
            scale = hpa.get(name)
            replicas = int(scale["minReplicas"] if scale else spec.get("replicas", 1))
            memory, cpus = _limits(spec["template"]["spec"])
            size.workloads += replicas
            size.memory_mb += memory * replicas
            size.cpus += cpus * replicas
            size.names.append(f"{name} x{replicas}")
            if scale:
                extra = int(scale["maxReplicas"]) - replicas
                size.app_ceiling_extra_memory_mb += memory * extra
                size.app_ceiling_extra_cpus += cpus * extra
            for claim in spec.get("volumeClaimTemplates") or []:
                request = claim["spec"]["resources"]["requests"]["storage"]
                size.storage_gb += _mib(request) / 1024 * replicas
        elif kind == "DaemonSet":
            memory, cpus = _limits(spec["template"]["spec"])
            size.per_node_memory_mb += memory
            size.per_node_cpus += cpus
        elif kind == "Cluster" and obj["apiVersion"].startswith("postgresql.cnpg.io/"):
            instances = int(spec.get("instances", 1))
            limits = (spec.get("resources") or {}).get("limits") or {}
            size.workloads += instances
            size.memory_mb += _mib(limits.get("memory", "0")) * instances
            size.cpus += _cpus(limits.get("cpu", "0")) * instances
            for key in ("storage", "walStorage"):
                if (spec.get(key) or {}).get("size"):
                    size.storage_gb += _mib(spec[key]["size"]) / 1024 * instances
        elif kind == "PersistentVolumeClaim":
            size.storage_gb += _mib(spec["resources"]["requests"]["storage"]) / 1024
    return size

"""Read Luna's resources as the policy engine hands them over, for the policies.

Pure functions of a resource's type and properties (its *inputs*, exactly as the
engine passes them to a policy pack: numbers as floats, secrets unwrapped, values
that are unknown during a preview raising pulumi-policy's ``UnknownValueError``).
Nothing here reads configuration, files or the network, so the same code runs in
the Pulumi CLI's analyzer and in ``python -m policy.check``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy.proxy import UnknownValueError

__all__ = [
    "DATA_PORTS",
    "MASK",
    "container_specs",
    "docker_labels",
    "env_pairs",
    "ilm_policies",
    "image_refs",
    "k8s_labels",
    "pod_spec",
    "secret_file_paths",
    "service_of",
    "stack_of",
    "strings",
]

MASK = "[secret]"
"""What ``infra.render`` writes in place of a secret leaf."""

DATA_PORTS = frozenset({5432, 6379, 6380, 9200, 9300})
"""PostgreSQL, Redis (plain and TLS), Elasticsearch HTTP and transport."""

DOCKER_CONTAINER = "docker:index/container:Container"
K8S_WORKLOADS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
    "kubernetes:core/v1:Pod",
}


def stack_of(urn: str) -> str:
    """``urn:pulumi:<stack>::<project>::<type>::<name>`` -> ``<stack>``."""
    parts = urn.split(":")
    return parts[2] if len(parts) > 2 and urn.startswith("urn:pulumi:") else ""


def get(value: Any, *path: str | int) -> Any:
    """``value[path...]`` or ``None``; an unknown (preview) value reads as ``None``."""
    for key in path:
        try:
            if isinstance(key, int):
                if not _is_list(value) or key >= len(value):
                    return None
                value = value[key]
            else:
                if not isinstance(value, Mapping) or key not in value:
                    return None
                value = value[key]
        except UnknownValueError:
            return None
    return value


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def items(value: Any) -> list[Any]:
    """The elements of a list property, skipping the ones unknown during a preview."""
    if not _is_list(value):
        return []
    out = []
    for i in range(len(value)):
        try:
            out.append(value[i])
        except UnknownValueError:
            continue
    return out


def strings(value: Any) -> Iterator[str]:
    """Every known string leaf under ``value``."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key in list(value):
            try:
                child = value[key]
            except UnknownValueError:
                continue
            yield from strings(child)
    elif _is_list(value):
        for child in items(value):
            yield from strings(child)


def k8s_labels(props: Mapping[str, Any]) -> dict[str, str]:
    labels = get(props, "metadata", "labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def docker_labels(props: Mapping[str, Any]) -> dict[str, str]:
    return {str(get(x, "label")): str(get(x, "value")) for x in items(get(props, "labels"))}


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> tuple[dict[str, str], Any] | None:
    """A Kubernetes workload's pod labels and pod spec, or ``None`` for other types."""
    if resource_type not in K8S_WORKLOADS:
        return None
    if resource_type == "kubernetes:core/v1:Pod":
        return k8s_labels(props), get(props, "spec") or {}
    spec = get(props, "spec") or {}
    if resource_type == "kubernetes:batch/v1:CronJob":
        spec = get(spec, "jobTemplate", "spec") or {}
    template = get(spec, "template") or {}
    labels = get(template, "metadata", "labels") or {}
    return {str(k): str(v) for k, v in labels.items()}, get(template, "spec") or {}


def container_specs(pod: Any) -> list[Any]:
    return items(get(pod, "initContainers")) + items(get(pod, "containers"))


def service_of(resource_type: str, props: Mapping[str, Any]) -> str:
    """Luna's service name: Docker's ``com.luna.service`` label, Kubernetes' app name label."""
    if resource_type == DOCKER_CONTAINER:
        return docker_labels(props).get("com.luna.service", "")
    found = pod_spec(resource_type, props)
    labels = found[0] if found else k8s_labels(props)
    return labels.get("app.kubernetes.io/name", "")


def env_pairs(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, value) for every environment variable a resource sets.

    Kubernetes: ``value`` is the literal, or the ``valueFrom`` mapping. Docker
    containers: ``NAME=value`` strings (a masked element reads ``[secret]``).
    pulumi-command jobs: their ``environment`` map.
    """
    if resource_type == DOCKER_CONTAINER:
        for entry in items(get(props, "envs")):
            if isinstance(entry, str):
                # A masked element ("[secret]") has no "=": name and value both read masked.
                name, sep, value = entry.partition("=")
                yield (name, value) if sep else (entry, entry)
        return
    if resource_type == "command:local:Command":
        environment = get(props, "environment") or {}
        for name in list(environment):
            yield str(name), get(environment, name)
        return
    found = pod_spec(resource_type, props)
    if not found:
        return
    for container in container_specs(found[1]):
        for var in items(get(container, "env")):
            value_from = get(var, "valueFrom")
            yield str(get(var, "name")), value_from if value_from is not None else get(var, "value")


def image_refs(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Image references a resource pulls: pod containers, a Docker RemoteImage, a CNPG Cluster."""
    if resource_type == "docker:index/remoteImage:RemoteImage":
        name = get(props, "name")
        return [name] if isinstance(name, str) else []
    if resource_type == "kubernetes:postgresql.cnpg.io/v1:Cluster":
        name = get(props, "spec", "imageName")
        return [name] if isinstance(name, str) else []
    found = pod_spec(resource_type, props)
    if not found:
        return []
    return [c["image"] for c in container_specs(found[1]) if isinstance(get(c, "image"), str)]


# How the platforms mark files shipped as secrets (components/platforms/docker
# SECRET_FILES_LABEL, components/platforms/kubernetes FILES_ANNOTATION on a Secret).
SECRET_FILES_LABEL = "com.luna.secret-files"  # noqa: S105 - a label name
FILES_ANNOTATION = "luna.app/files"


def secret_file_paths(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Paths of the files a resource ships as secrets (their content is masked in a render)."""
    if resource_type == DOCKER_CONTAINER:
        return [p for p in docker_labels(props).get(SECRET_FILES_LABEL, "").split(",") if p]
    if resource_type == "kubernetes:core/v1:Secret":
        note = get(props, "metadata", "annotations", FILES_ANNOTATION)
        try:
            return [str(p) for p in json.loads(note).values()] if isinstance(note, str) else []
        except (ValueError, AttributeError):
            return []
    return []


_ILM_PUT = re.compile(r"_ilm/policy/([A-Za-z0-9_.-]+)\s*'(\{.*?\})'\s*$", re.MULTILINE)
_DURATION = re.compile(r"^(\d+)(d|h|m|s|ms)$")
_PER_DAY = {"d": 1.0, "h": 24.0, "m": 1440.0, "s": 86400.0, "ms": 86400e3}


def ilm_policies(text: str) -> Iterator[tuple[str, float | None]]:
    """(policy name, days until delete or ``None`` when it never deletes) for every
    Elasticsearch ILM policy a setup script PUTs (``PUT _ilm/policy/<name> '<json>'``)."""
    for match in _ILM_PUT.finditer(text):
        try:
            body = json.loads(match.group(2))
        except ValueError:
            continue
        delete = (body.get("policy", {}).get("phases") or {}).get("delete")
        if delete is None:
            yield match.group(1), None
            continue
        age = _DURATION.match(str(delete.get("min_age", "0d")))
        days = float(age.group(1)) / _PER_DAY[age.group(2)] if age else 0.0
        yield match.group(1), days

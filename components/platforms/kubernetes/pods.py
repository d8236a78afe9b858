"""What runs in a Kubernetes pod: the hardened pod template and what it mounts.

A :class:`~components.spec.ServiceSpec` becomes one container with the
restricted pod-security profile (non-root, no privilege escalation, every
capability dropped, RuntimeDefault seccomp), Guaranteed resources and probes
derived from its health check. Its files ship in a ConfigMap (plain text) or a
Secret (anything that may derive from secret config), mounted read-only one
file at a time; its secret environment comes from a Secret through
``secretKeyRef``. Where a pod departs from a checkov check, the reason is
written on the object (:func:`checkov_skips`).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi_kubernetes.core.v1 import ConfigMap, PersistentVolumeClaim, Secret

from components.platforms import RegistryAuth
from components.spec import ServiceSpec

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = [
    "FILES_ANNOTATION",
    "checkov_skips",
    "file_mounts",
    "pod_inputs",
    "pod_template",
    "registry_secret",
    "scaled",
]

Manifest = dict[str, Any]

FILES_ANNOTATION = "luna.app/files"
"""On ConfigMaps and Secrets that ship files: JSON ``{key: path in the container}``."""
_DEFAULT_ID = 10001
"""Run-as uid/gid for images whose spec keeps the image's own (non-root) user."""
# checkov skips: each is written on the object it concerns, with its reason.
_SKIP_DIGEST = (
    "CKV_K8S_43",
    "images are pinned by tag in config; a digest is used wherever config gives one",
)
_SKIP_ENV_SECRET = (
    "CKV_K8S_35",
    "this image reads its credentials from environment variables only; "
    "they come from a Secret through secretKeyRef, never a literal",
)
_SKIP_LOW_UID = (
    "CKV_K8S_40",
    "the image's files are owned by its own non-root uid below 10000; "
    "runAsNonRoot is still enforced",
)
_SKIP_WRITABLE_ROOT = (
    "CKV_K8S_22",
    "the Elastic image writes its keystore and settings under its install directory at start",
)
_SKIP_ROOT = (
    "CKV_K8S_23",
    "reads node log files owned by root (0640) through a read-only hostPath of /var/log",
)


def checkov_skips(spec: ServiceSpec, *, root: bool = False) -> list[tuple[str, str]]:
    """The checkov checks this workload departs from, each with its reason."""
    skips: list[tuple[str, str]] = []
    if "@sha256:" not in spec.image:
        skips.append(_SKIP_DIGEST)
    if spec.secret_env:
        skips.append(_SKIP_ENV_SECRET)
    if root:
        skips.append(_SKIP_ROOT)
    if root or _ids(spec)[0] < 10000:
        skips.append(_SKIP_LOW_UID)
    if not spec.read_only_root:
        skips.append(_SKIP_WRITABLE_ROOT)
    return skips


def file_mounts(
    platform: KubernetesPlatform,
    name: str,
    spec: ServiceSpec,
    files: Mapping[str, pulumi.Input[str]],
    parent: pulumi.Resource,
) -> tuple[Manifest, list[Manifest]]:
    """A ConfigMap ``<name>-files`` holding plain ``files``; its pod volume and mounts."""
    config_map = ConfigMap(
        f"{name}-files",
        metadata=platform.meta(None, spec.component, spec.name, annotations=_files_note(files)),
        data={_key(path): text for path, text in files.items()},
        opts=platform.opts(parent),
    )
    volume = {"name": "files", "configMap": {"name": config_map.metadata.name}}
    mounts: list[Manifest] = [
        {"name": "files", "mountPath": path, "subPath": _key(path), "readOnly": True}
        for path in files
    ]
    return volume, mounts


def pod_inputs(
    platform: KubernetesPlatform,
    name: str,
    spec: ServiceSpec,
    parent: pulumi.Resource,
    claims: Mapping[str, PersistentVolumeClaim],
) -> tuple[list[Manifest], list[Manifest], list[Manifest]]:
    """Volumes, volume mounts and env for the pod; creates the ConfigMap and Secrets."""
    volumes: list[Manifest] = []
    mounts: list[Manifest] = []
    plain = {f.path: f.content for f in spec.files if isinstance(f.content, str) and not f.secret}
    # Anything not a plain string may derive from secret config: ship it in a Secret.
    hidden = {f.path: f.content for f in spec.files if f.path not in plain}
    if plain:
        volume, file_mounts_ = file_mounts(platform, name, spec, plain, parent)
        volumes.append(volume)
        mounts += file_mounts_
    if hidden:
        secret_files = Secret(
            f"{name}-secret-files",
            metadata=platform.meta(
                None, spec.component, spec.name, annotations=_files_note(hidden)
            ),
            type="Opaque",
            string_data={_key(path): pulumi.Output.secret(text) for path, text in hidden.items()},
            opts=platform.opts(parent),
        )
        volumes.append(
            {
                "name": "secret-files",
                "secret": {"secretName": secret_files.metadata.name, "defaultMode": 0o440},
            }
        )
        mounts += [
            {"name": "secret-files", "mountPath": path, "subPath": _key(path), "readOnly": True}
            for path in hidden
        ]
    for index, path in enumerate(spec.writable_paths):
        volumes.append({"name": f"scratch-{index}", "emptyDir": {"sizeLimit": "256Mi"}})
        mounts.append({"name": f"scratch-{index}", "mountPath": path})
    for index, mount in enumerate(spec.mounts):
        if mount.volume not in claims:
            raise ValueError(f"{spec.name} mounts volume {mount.volume!r}, which does not exist")
        volumes.append(
            {"name": f"data-{index}", "persistentVolumeClaim": {"claimName": mount.volume}}
        )
        mounts.append(
            {"name": f"data-{index}", "mountPath": mount.path, "readOnly": mount.read_only}
        )

    env: list[Manifest] = [{"name": k, "value": v} for k, v in spec.env.items()]
    if spec.secret_env:
        env_secret = Secret(
            f"{name}-env",
            metadata=platform.meta(None, spec.component, spec.name),
            type="Opaque",
            string_data={k: pulumi.Output.secret(v) for k, v in spec.secret_env.items()},
            opts=platform.opts(parent),
        )
        env += [
            {
                "name": k,
                "valueFrom": {"secretKeyRef": {"name": env_secret.metadata.name, "key": k}},
            }
            for k in spec.secret_env
        ]
    return volumes, mounts, env


def pod_template(
    platform: KubernetesPlatform,
    spec: ServiceSpec,
    volumes: list[Manifest],
    mounts: list[Manifest],
    env: list[Manifest],
    *,
    root: bool = False,
    sidecars: Sequence[Manifest] = (),
) -> Manifest:
    """The pod template: one hardened container (and ``sidecars``), its probes,
    placement and pull secret."""
    uid, gid = (0, 0) if root else _ids(spec)
    container: Manifest = {
        "name": spec.name,
        "image": spec.image,
        # A tag can be re-pushed; Always re-checks it. A digest cannot change.
        "imagePullPolicy": "IfNotPresent" if "@sha256:" in spec.image else "Always",
        "env": env,
        "volumeMounts": mounts,
        "resources": _resources(spec),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": spec.read_only_root,
            "runAsNonRoot": not root,
            "runAsUser": uid,
            "runAsGroup": gid,
            "capabilities": {"drop": ["ALL"], **_adds(spec)},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.ports:
        container["ports"] = [
            {"name": p.name, "containerPort": p.port, "protocol": p.protocol.upper()}
            for p in spec.ports
        ]
    if spec.workload in ("service", "stateful"):
        container.update(_probes(spec))
    pod_security: Manifest = {
        "runAsNonRoot": not root,
        "runAsUser": uid,
        "runAsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if not root:
        pod_security["fsGroup"] = gid
        pod_security["fsGroupChangePolicy"] = "OnRootMismatch"
    pod: Manifest = {
        # No pod here talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [container, *sidecars],
        "volumes": volumes,
        "terminationGracePeriodSeconds": (60 if spec.workload == "stateful" else 30) + spec.drain_s,
    }
    if spec.drain_s:
        # Endpoints and load balancers drop a terminating pod only after a
        # while; it keeps serving until they have (the image ships `sleep`).
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(spec.drain_s)]}}}
    pull_secret = platform.pull_secret(spec.image)
    if pull_secret:
        pod["imagePullSecrets"] = [{"name": pull_secret}]
    if spec.workload == "service" and any(not m.read_only for m in spec.mounts):
        # A ReadWriteOnce claim attaches to one node: a surge pod must land on
        # the node of the pod it replaces (a pod that matches its own term may
        # start where none runs yet, so the first one schedules anywhere).
        pod["affinity"] = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": platform.selector(spec.name)},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    if scaled(spec):
        pod["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": platform.selector(spec.name)},
            }
        ]
    return {"metadata": {"labels": platform.labels(spec.name, spec.component)}, "spec": pod}


def scaled(spec: ServiceSpec) -> bool:
    """A replicated service: spread over nodes, scaled by an HPA, found by DNS per pod."""
    return spec.workload == "service" and spec.replicas > 1


def registry_secret(platform: KubernetesPlatform, registry: RegistryAuth) -> str:
    """A ``kubernetes.io/dockerconfigjson`` Secret with the pull credentials; its name."""
    name = "registry-credentials"
    password: pulumi.Output[str] = pulumi.Output.secret(registry.password)
    config = password.apply(lambda p: _docker_config(registry.server, registry.username, p))
    Secret(
        platform.child("registry-credentials"),
        metadata=platform.meta(name, "registry", "luna"),
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": config},
        opts=platform.opts(platform),
    )
    return name


def _ids(spec: ServiceSpec) -> tuple[int, int]:
    if spec.user is None:
        return _DEFAULT_ID, _DEFAULT_ID
    if not re.fullmatch(r"\d+:\d+", spec.user):
        raise ValueError(f"{spec.name}: user must be numeric uid:gid on Kubernetes")
    uid, gid = spec.user.split(":")
    if int(uid) == 0:
        raise ValueError(f"{spec.name}: runs as root")
    return int(uid), int(gid)


def _adds(spec: ServiceSpec) -> Manifest:
    return {"add": list(spec.capabilities)} if spec.capabilities else {}


def _resources(spec: ServiceSpec) -> Manifest:
    size = {
        "cpu": f"{round(spec.resources.cpus * 1000)}m",
        "memory": f"{spec.resources.memory_mb}Mi",
    }
    # Requests equal limits: a predictable (Guaranteed) pod is not evicted first.
    return {"requests": dict(size), "limits": dict(size)}


def _probes(spec: ServiceSpec) -> Manifest:
    check: Manifest
    health = spec.health
    if health is not None and health.http_path:
        check = {
            "httpGet": {"path": health.http_path, "port": health.http_port or spec.ports[0].port}
        }
    elif health is not None:
        check = {"exec": {"command": list(health.command)}}
    elif spec.ports and spec.ports[0].protocol == "tcp":
        check = {"tcpSocket": {"port": spec.ports[0].port}}
    else:
        return {}
    interval = health.interval_s if health else 15
    timeout = health.timeout_s if health else 5
    retries = health.retries if health else 5
    start = health.start_period_s if health else 30
    base = {**check, "periodSeconds": interval, "timeoutSeconds": timeout}
    return {
        "startupProbe": {**base, "failureThreshold": math.ceil(start / interval) + retries},
        "readinessProbe": {**base, "failureThreshold": 3},
        "livenessProbe": {**base, "failureThreshold": retries},
    }


def _docker_config(server: str, username: str, password: str) -> str:
    """The ``.dockerconfigjson`` a kubelet reads pull credentials from."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    entry = {"username": username, "password": password, "auth": auth}
    return json.dumps({"auths": {server: entry}})


def _key(path: str) -> str:
    """A ConfigMap/Secret key for a file path: dashes, never underscores (SDK key translation)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", path.strip("/"))


def _files_note(files: Mapping[str, object]) -> dict[str, str]:
    return {FILES_ANNOTATION: json.dumps({_key(p): p for p in files}, sort_keys=True)}

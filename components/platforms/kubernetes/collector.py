"""The Kubernetes log collector: a Fluent Bit DaemonSet that ships pod logs to Logstash.

One pod per node reads the node's container log files through a read-only
hostPath of ``/var/log`` and ships them over TLS, verifying Logstash with the
stack CA. Its read positions and disk buffer live in a per-namespace hostPath
that outlives the pod. The configuration is built by
:mod:`components.configs.fluentbit`.

A hostPath and root are what the restricted (and baseline) Pod Security
profiles forbid, so the collector lives in a namespace of its own,
``luna-<stack>-logging`` (enforce ``privileged``, with warn/audit ``baseline``
so the exception stays visible), and the app's namespace enforces
``restricted``. There the collector has the least it needs: no service-account
token (it reads no API: its records' origin is the log file's path), no
tolerations, a default-deny policy, and egress to the cluster DNS and to
Logstash's TLS input in the app's namespace only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pulumi
from pulumi_kubernetes.apps.v1 import DaemonSet
from pulumi_kubernetes.core.v1 import ConfigMap, Namespace
from pulumi_kubernetes.networking.v1 import NetworkPolicy

from components.configs.fluentbit import (
    CA_FILE,
    HEALTH_PATH,
    HTTP_PORT,
    STATE_DIR,
    fluent_bit_conf,
    parsers_conf,
)
from components.platforms.kubernetes.pods import FILES_ANNOTATION, checkov_skips, pod_template
from components.spec import Resources, ServiceSpec

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = [
    "GELF_PORT",
    "LOG_COLLECTOR",
    "collector_namespace",
    "collector_spec",
    "deploy_collector",
]

LOG_COLLECTOR = "log-collector"
GELF_PORT = 12201
"""Logstash's input the collector ships to."""


def collector_namespace(app_namespace: str) -> str:
    return f"{app_namespace}-logging"


def collector_spec(image: str) -> ServiceSpec:
    """The collector as a service of the stack's flow graph (its flow: to Logstash)."""
    return ServiceSpec(
        name=LOG_COLLECTOR,
        component="logging",
        image=image,
        resources=Resources(memory_mb=128, cpus=0.2),
        ports=(),
        connects_to=("logstash",),
        writable_paths=("/tmp",),
        ship_logs=False,
    )


def deploy_collector(
    platform: KubernetesPlatform,
    spec: ServiceSpec,
    *,
    ca: pulumi.Input[str],
    services: Mapping[str, ServiceSpec],
    protect: bool = False,
) -> None:
    """The DaemonSet, shipping every service's logs but those of ``ship_logs=False`` ones."""
    name = platform.child(LOG_COLLECTOR)
    files: dict[str, pulumi.Input[str]] = {
        "/fluent-bit/etc/fluent-bit.conf": fluent_bit_conf(
            namespace=platform.namespace,
            logstash_host="logstash",
            gelf_port=GELF_PORT,
            stack=platform.stack,
            # ship_logs=False (the logging stack, this collector) holds here too.
            exclude_containers=sorted(n for n, s in services.items() if not s.ship_logs),
        ),
        "/fluent-bit/etc/parsers.conf": parsers_conf(),
        CA_FILE: ca,
    }
    ns_name = collector_namespace(platform.namespace)
    namespace = Namespace(
        f"{name}-namespace",
        metadata={
            "name": ns_name,
            "labels": {
                **platform.labels(LOG_COLLECTOR, spec.component),
                "pod-security.kubernetes.io/enforce": "privileged",
                "pod-security.kubernetes.io/warn": "baseline",
                "pod-security.kubernetes.io/audit": "baseline",
            },
        },
        # Protected like the app's namespace (prod): deleting it would drop the
        # collector's buffer of lines not yet shipped.
        opts=platform.opts(platform, protect=protect),
    )
    after = platform.opts(platform, depends_on=[namespace])
    config_map = ConfigMap(
        f"{name}-files",
        # The annotation maps keys back to paths, as pods.file_mounts writes it
        # (the render and the tests read the shipped files through it).
        metadata=_in(
            platform.meta(
                None,
                spec.component,
                spec.name,
                annotations={
                    FILES_ANNOTATION: json.dumps({_key(f): f for f in files}, sort_keys=True)
                },
            ),
            ns_name,
        ),
        data={_key(path): text for path, text in files.items()},
        opts=after,
    )
    files_volume = {"name": "files", "configMap": {"name": config_map.metadata.name}}
    mounts = [
        {"name": "files", "mountPath": path, "subPath": _key(path), "readOnly": True}
        for path in files
    ]
    _policies(platform, name, ns_name, after)
    volumes = [
        files_volume,
        {"name": "scratch-0", "emptyDir": {"sizeLimit": "256Mi"}},
        # The one hostPath: node log files, read-only.
        {"name": "node-logs", "hostPath": {"path": "/var/log", "type": "Directory"}},
        # Read positions and the disk buffer, per namespace, outliving the pod.
        {
            "name": "collector-state",
            "hostPath": {
                "path": f"/var/lib/luna-log-collector/{platform.namespace}",
                "type": "DirectoryOrCreate",
            },
        },
    ]
    mounts += [
        {"name": "scratch-0", "mountPath": "/tmp"},
        {"name": "node-logs", "mountPath": "/var/log", "readOnly": True},
        {"name": "collector-state", "mountPath": STATE_DIR},
    ]
    template = pod_template(platform, spec, volumes, mounts, [], root=True)
    container = template["spec"]["containers"][0]
    container["ports"] = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    probe = {"httpGet": {"path": HEALTH_PATH, "port": HTTP_PORT}, "periodSeconds": 15}
    container["readinessProbe"] = probe
    container["livenessProbe"] = {**probe, "failureThreshold": 5}
    # No tolerations: the stack's pods tolerate no taint, so the nodes that run
    # them are exactly the untainted ones; a collector that tolerated every taint
    # would run (as root, with /var/log) on control-plane and dedicated nodes too.
    DaemonSet(
        name,
        metadata=_in(
            platform.meta(
                LOG_COLLECTOR, spec.component, spec.name, skips=checkov_skips(spec, root=True)
            ),
            ns_name,
        ),
        spec={
            "selector": {"matchLabels": platform.selector(LOG_COLLECTOR)},
            "template": template,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        },
        opts=after,
    )
    platform.name_workload(spec.name, f"daemonset/{LOG_COLLECTOR}")


def _in(meta: dict[str, object], namespace: str) -> dict[str, object]:
    return {**meta, "namespace": namespace}


def _key(path: str) -> str:
    """A ConfigMap key for a file path, as pods._key names them: dashes, never
    underscores (the SDK translates underscored keys)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", path.strip("/"))


def _policies(
    platform: KubernetesPlatform, name: str, namespace: str, opts: pulumi.ResourceOptions
) -> None:
    """Default deny in the collector's namespace; egress to DNS and Logstash only."""
    dns = {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    logstash = {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": platform.namespace}
                },
                "podSelector": {"matchLabels": platform.selector("logstash")},
            }
        ],
        "ports": [{"protocol": "TCP", "port": GELF_PORT}],
    }
    NetworkPolicy(
        f"{name}-netpol",
        metadata={"name": LOG_COLLECTOR, "namespace": namespace,
                  "labels": platform.labels(LOG_COLLECTOR, "network")},
        spec={"podSelector": {"matchLabels": platform.selector(LOG_COLLECTOR)},
              "policyTypes": ["Ingress", "Egress"], "ingress": [],
              "egress": [dns, logstash]},
        opts=opts,
    )  # fmt: skip

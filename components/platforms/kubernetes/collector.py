"""The Kubernetes log collector: a Fluent Bit DaemonSet that ships pod logs to Logstash.

One pod per node reads the node's container log files through a read-only
hostPath of ``/var/log`` (the one exception to the restricted pod-security
profile, so it runs as root and says why on the object) and ships them over
TLS, verifying Logstash with the stack CA. Its read positions and disk buffer
live in a per-namespace hostPath that outlives the pod. The configuration is
built by :mod:`components.configs.fluentbit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pulumi
from pulumi_kubernetes.apps.v1 import DaemonSet

from components.configs.fluentbit import (
    CA_FILE,
    HEALTH_PATH,
    HTTP_PORT,
    STATE_DIR,
    fluent_bit_conf,
    parsers_conf,
)
from components.platforms.kubernetes.pods import checkov_skips, file_mounts, pod_template
from components.spec import Resources, ServiceSpec

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = ["GELF_PORT", "LOG_COLLECTOR", "collector_spec", "deploy_collector"]

LOG_COLLECTOR = "log-collector"
GELF_PORT = 12201
"""Logstash's input the collector ships to."""


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
    files_volume, mounts = file_mounts(platform, name, spec, files, platform)
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
    template["spec"]["tolerations"] = [{"operator": "Exists", "effect": "NoSchedule"}]
    DaemonSet(
        name,
        metadata=platform.meta(
            LOG_COLLECTOR, spec.component, spec.name, skips=checkov_skips(spec, root=True)
        ),
        spec={
            "selector": {"matchLabels": platform.selector(LOG_COLLECTOR)},
            "template": template,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        },
        opts=platform.opts(platform),
    )
    platform.name_workload(spec.name, f"daemonset/{LOG_COLLECTOR}")

"""Kubernetes workloads for a service: the controller, its Services and its scaling.

A ``service`` becomes a Deployment (rolling, surge before stop), with a
PodDisruptionBudget and a HorizontalPodAutoscaler when it is replicated; a
``stateful`` service a StatefulSet behind a headless Service; a ``job`` a Job
and a ``schedule`` a CronJob (their bodies: :mod:`.jobs`). Every service
that listens gets a Service named after it (its DNS name, as on Docker), plus a
LoadBalancer ``<service>-edge`` for ports published to the world.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi_kubernetes.apps.v1 import Deployment as K8sDeployment
from pulumi_kubernetes.apps.v1 import StatefulSet
from pulumi_kubernetes.autoscaling.v2 import HorizontalPodAutoscaler
from pulumi_kubernetes.batch.v1 import CronJob, Job
from pulumi_kubernetes.core.v1 import Service
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget

from components.platforms import Deployment
from components.platforms.kubernetes.jobs import cron_job_spec, job_name, job_spec, job_timeouts
from components.platforms.kubernetes.pods import checkov_skips, scaled
from components.platforms.kubernetes.tls_front import front_port
from components.spec import Port, ServiceSpec

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = ["deploy_workload", "edge_ports"]

Manifest = dict[str, Any]


_ROLLING = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def deploy_workload(
    platform: KubernetesPlatform,
    name: str,
    spec: ServiceSpec,
    template: Manifest,
    *,
    parent: pulumi.Resource,
    depends: Sequence[pulumi.Resource],
) -> Deployment:
    """The Services and the controller that runs ``template`` by ``spec.workload``."""
    # One Service name per service: kube-proxy balances across the replicas.
    addresses = (f"{spec.name}:{spec.ports[0].port}",) if spec.ports else ()
    edge = (
        _services(platform, name, spec, parent, headless=spec.workload == "stateful")
        if spec.ports
        else None
    )
    in_cluster = job_name(spec.name, spec) if spec.workload == "job" else spec.name
    metadata = platform.meta(in_cluster, spec.component, spec.name, skips=checkov_skips(spec))
    opts = platform.opts(parent, depends_on=depends)
    workload: pulumi.Resource
    if spec.workload == "job":
        # Replaced, never patched: a new image means a new Job that must
        # complete before its dependants roll.
        replace = platform.opts(parent, depends_on=depends, delete_before_replace=True)
        opts = pulumi.ResourceOptions.merge(replace, job_timeouts())
        workload = Job(name, metadata=metadata, spec=job_spec(template), opts=opts)
    elif spec.workload == "schedule":
        body = cron_job_spec(spec, template, platform.labels(spec.name, spec.component))
        workload = CronJob(name, metadata=metadata, spec=body, opts=opts)
    elif spec.workload == "stateful":
        body = {
            "serviceName": spec.name,
            "replicas": 1,
            "selector": {"matchLabels": platform.selector(spec.name)},
            "template": template,
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
        }
        workload = StatefulSet(name, metadata=metadata, spec=body, opts=opts)
    else:
        body = {
            "selector": {"matchLabels": platform.selector(spec.name)},
            "template": template,
            "revisionHistoryLimit": 5,
            # The new pod serves before the old one stops. A ReadWriteOnce claim
            # attaches to one node, so a pod that mounts one is placed beside its
            # predecessor (see pods.pod_template) instead of waiting for it to go.
            # A single instance goes before its successor starts.
            "strategy": {"type": "Recreate"} if spec.single_instance else _ROLLING,
        }
        # With an HPA, the HPA owns the replica count; setting it here would
        # scale the service down to the floor on every `pulumi up`.
        if not scaled(spec):
            body["replicas"] = 1
        workload = K8sDeployment(name, metadata=metadata, spec=body, opts=opts)
        if scaled(spec):
            _scaling(platform, name, spec, parent)
    kind = {"schedule": "cronjob", "job": "job", "stateful": "statefulset"}
    return Deployment(
        service=spec.name,
        resources=[workload],
        names=(f"{kind.get(spec.workload, 'deployment')}/{in_cluster}",),
        public_address=edge.status.apply(_ingress) if edge is not None else None,
        addresses=addresses,
        dns_names=(f"{spec.name}-pods",) if spec.ports and scaled(spec) else (),
        service_address=addresses[0] if addresses else None,
        tls_address=f"{spec.name}:{spec.tls_front.port}" if spec.tls_front else None,
    )


def edge_ports(spec: ServiceSpec) -> list[Port]:
    """The ports ``spec`` publishes to the world (loopback-published ones stay inside)."""
    return [p for p in spec.ports if p.publish is not None and p.publish_ip == "0.0.0.0"]  # noqa: S104


def _services(
    platform: KubernetesPlatform,
    name: str,
    spec: ServiceSpec,
    parent: pulumi.Resource,
    *,
    headless: bool,
) -> Service | None:
    """The service's Service, its LoadBalancer edge (returned) and its headless pods."""
    front = front_port(spec)
    ports = [
        {
            "name": p.name,
            "port": p.port,
            "targetPort": p.name,
            "protocol": p.protocol.upper(),
        }
        for p in (*spec.ports, *([front] if front else []))
    ]
    body: Manifest = {"selector": platform.selector(spec.name), "ports": ports}
    if headless:
        # A StatefulSet's governing Service: DNS names the pod itself.
        body["clusterIP"] = "None"
    Service(
        f"{name}-service",
        metadata=platform.meta(spec.name, spec.component, spec.name),
        spec=body,
        opts=platform.opts(parent),
    )
    edge = edge_ports(spec)
    balancer = None
    if edge:
        # The public edge; loopback-published operator UIs stay ClusterIP.
        balancer = Service(
            f"{name}-edge",
            metadata=platform.meta(f"{spec.name}-edge", spec.component, spec.name),
            spec={
                "type": "LoadBalancer",
                # Keep the client's address for nginx's access logs.
                "externalTrafficPolicy": "Local",
                "selector": platform.selector(spec.name),
                "ports": [
                    {
                        "name": p.name,
                        "port": p.publish,
                        "targetPort": p.name,
                        "protocol": p.protocol.upper(),
                    }
                    for p in edge
                ],
            },
            opts=platform.opts(parent),
        )
    if scaled(spec):
        # One A record per ready replica, for Prometheus' dns_sd_configs.
        Service(
            f"{name}-pods",
            metadata=platform.meta(f"{spec.name}-pods", spec.component, spec.name),
            spec={**body, "clusterIP": "None"},
            opts=platform.opts(parent),
        )
    return balancer


def _ingress(status: Any) -> str:
    """The LoadBalancer's address (Service ``status.loadBalancer.ingress``): an IP or a
    hostname, which pulumi-kubernetes waits for before it reports the Service ready."""
    for entry in _field(_field(status, "load_balancer", "loadBalancer"), "ingress") or []:
        if address := _field(entry, "ip") or _field(entry, "hostname"):
            return str(address)
    return "(no address yet)"


def _field(value: Any, *names: str) -> Any:
    """A field of an SDK output type (attributes) or of a plain dict (mocks, raw)."""
    for name in names:
        if isinstance(value, dict) and name in value:
            return value[name]
        if (found := getattr(value, name, None)) is not None:
            return found
    return None


def _scaling(
    platform: KubernetesPlatform, name: str, spec: ServiceSpec, parent: pulumi.Resource
) -> None:
    PodDisruptionBudget(
        f"{name}-pdb",
        metadata=platform.meta(spec.name, spec.component, spec.name),
        # One pod at a time may go, so nodes drain while the rest serve.
        spec={"maxUnavailable": 1, "selector": {"matchLabels": platform.selector(spec.name)}},
        opts=platform.opts(parent),
    )
    HorizontalPodAutoscaler(
        f"{name}-hpa",
        metadata=platform.meta(spec.name, spec.component, spec.name),
        spec={
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": spec.name,
            },
            "minReplicas": spec.replicas,
            "maxReplicas": max(spec.replicas, platform.app_max_replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
        opts=platform.opts(parent),
    )

"""The Kubernetes platform: one namespace per stack, hardened pods, default-deny network.

Every :class:`~components.spec.ServiceSpec` becomes a workload by its
``workload`` (Deployment, StatefulSet, Job, CronJob), a Service named after it
(its DNS name, as on Docker), a ConfigMap/Secret for its files and a Secret
for its secret environment. Segmentation follows the declared flows: the
namespace denies all traffic, then :meth:`KubernetesPlatform.finish` opens
exactly one ingress rule on the target and one egress rule on the source per
flow. See docs/kubernetes.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.apps.v1 import DaemonSet, StatefulSet
from pulumi_kubernetes.apps.v1 import Deployment as K8sDeployment
from pulumi_kubernetes.autoscaling.v2 import HorizontalPodAutoscaler
from pulumi_kubernetes.batch.v1 import CronJob, Job
from pulumi_kubernetes.core.v1 import ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service
from pulumi_kubernetes.networking.v1 import NetworkPolicy
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget
from pulumi_kubernetes.provider import Provider

from components.configs.fluentbit import (
    CA_FILE,
    HEALTH_PATH,
    HTTP_PORT,
    STATE_DIR,
    fluent_bit_conf,
    parsers_conf,
)
from components.platforms import Deployment, FlowGraph, RegistryAuth
from components.spec import (
    Port,
    PostgresService,
    PostgresSpec,
    Resources,
    ServiceSpec,
    VolumeSpec,
)

__all__ = ["FILES_ANNOTATION", "KubernetesPlatform", "KubernetesPlatformArgs", "job_name"]

Manifest = dict[str, Any]

FILES_ANNOTATION = "luna.app/files"
"""On ConfigMaps and Secrets that ship files: JSON ``{key: path in the container}``."""
LOG_COLLECTOR = "log-collector"
_GELF_PORT = 12201
_DEFAULT_ID = 10001
"""Run-as uid/gid for images whose spec keeps the image's own (non-root) user."""
# Egress to the internet never reaches the cluster, the node or cloud metadata.
JOB_DEADLINE_S = 1800
_PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
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


@dataclass(frozen=True)
class KubernetesPlatformArgs:
    stack: str
    kubeconfig: pulumi.Input[str] | None = None
    """Kubeconfig text (secret config); ``None`` uses the provider's default file."""
    context: str | None = None
    storage_class: str | None = None
    """PVC storage class; ``None`` uses the cluster's default class."""
    app_max_replicas: int = 6
    """HPA ceiling for replicated services."""
    ship_logs: bool = False
    """Run a log collector DaemonSet that ships pod logs to Logstash's TLS input."""
    log_collector_ca: pulumi.Input[str] | None = None
    """The stack CA the collector verifies Logstash's certificate with (needed with ship_logs)."""
    log_collector_image: str = "cr.fluentbit.io/fluent/fluent-bit:3.1.9"
    protect_data: bool = False
    """Protect and retain what holds or guards the data (prod): the namespace (its
    deletion takes every PVC with it), the claims, and the NetworkPolicies that
    deny by default and fence the data services."""
    registry: RegistryAuth | None = None
    """Pull credentials for a private registry; pods pulling from it reference them."""
    cnpg_operator: str = "prerequisite"
    """``install``: a Helm release of the CloudNativePG chart; ``prerequisite``: the
    operator is installed by the cluster's admins and its CRD is checked first."""
    cnpg_chart_version: str = "0.26.1"


def job_name(service: str, spec: ServiceSpec) -> str:
    """A Job's name that changes with its image and command.

    Jobs are immutable (pulumi-kubernetes#2575), so a new image needs a new Job.
    """
    identity = json.dumps([spec.image, spec.command, spec.args], sort_keys=True)
    return f"{service}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


class KubernetesPlatform(pulumi.ComponentResource):
    """Creates Kubernetes objects for Luna services in the stack's namespace.

    Usage::

        platform = KubernetesPlatform("luna-kubernetes", KubernetesPlatformArgs(stack="prod"))
        LunaApp("luna-app", LunaAppArgs(platform=platform, ...))
        platform.finish()
    """

    provider: Provider
    """The explicit provider every object uses: never the ambient kubeconfig default."""
    namespace: str

    def __init__(
        self, name: str, args: KubernetesPlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:platform:KubernetesPlatform", name, None, opts)
        self._name = name
        self._args = args
        self.namespace = f"luna-{args.stack}"
        self.provider = Provider(
            f"{name}-provider",
            kubeconfig=args.kubeconfig,
            context=args.context,
            namespace=self.namespace,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._ns = Namespace(
            f"{name}-namespace",
            metadata={
                "name": self.namespace,
                "labels": {
                    **self.labels("namespace", "luna"),
                    # Reported, not enforced: the log collector's read-only hostPath
                    # is the one exception to the restricted profile.
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            },
            # Deleting a namespace deletes every PVC in it, protected or not.
            opts=self.opts(self, protect=args.protect_data),
        )
        self._volumes: dict[str, PersistentVolumeClaim] = {}
        self._protected_volumes: set[str] = set()
        self._graph = FlowGraph()
        self._operator: pulumi.Resource | None = None
        self._finished = False
        self._pull_secret = self._registry_secret(args.registry) if args.registry else None
        self._policy("default-deny", {}, ingress=[], egress=[], protect=args.protect_data)
        # Every pod resolves Service names through the cluster DNS.
        self._policy(
            "allow-dns",
            {},
            egress=[
                {
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
            ],
        )
        self.register_outputs({"namespace": self.namespace})

    # -- Platform protocol -------------------------------------------------
    @property
    def name(self) -> str:
        return "kubernetes"

    @property
    def stack(self) -> str:
        return self._args.stack

    def volume(self, name: str, key: str, spec: VolumeSpec, *, parent: pulumi.Resource) -> None:
        if key in self._volumes:
            raise ValueError(f"volume {key!r} is created twice")
        claim: Manifest = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{spec.size_gb}Gi"}},
        }
        if self._args.storage_class:
            claim["storageClassName"] = self._args.storage_class
        if spec.protect:
            self._protected_volumes.add(key)
        self._volumes[key] = PersistentVolumeClaim(
            name,
            metadata=self.meta(key, "storage", key),
            spec=claim,
            opts=self.opts(parent, protect=spec.protect),
        )

    def deploy(
        self,
        name: str,
        spec: ServiceSpec,
        *,
        parent: pulumi.Resource,
        after: Sequence[Deployment] = (),
    ) -> Deployment:
        if self._finished:
            raise ValueError(f"{spec.name} is deployed after finish()")
        self._graph.add(spec)
        depends = [r for d in after for r in d.resources]
        pod_volumes, mounts, env = self._pod_inputs(name, spec, parent)
        template = self._template(spec, pod_volumes, mounts, env)
        skips = self._skips(spec)
        resources: list[pulumi.Resource] = []
        dns_names: tuple[str, ...] = ()
        # One Service name per service: kube-proxy balances across the replicas.
        addresses = (f"{spec.name}:{spec.ports[0].port}",) if spec.ports else ()

        if spec.ports:
            resources += self._services(name, spec, parent, headless=spec.workload == "stateful")
        if spec.workload == "service":
            replicated = spec.replicas > 1
            workload_spec: Manifest = {
                "selector": {"matchLabels": self.selector(spec.name)},
                "template": template,
                "revisionHistoryLimit": 5,
                # The new pod serves before the old one stops. A ReadWriteOnce claim
                # attaches to one node, so a pod that mounts one is placed beside
                # its predecessor (see _template) instead of waiting for it to go.
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
            }
            if not replicated:
                workload_spec["replicas"] = 1
            # With an HPA, the HPA owns the replica count; setting it here would
            # scale the service down to the floor on every `pulumi up`.
            workload: pulumi.Resource = K8sDeployment(
                name,
                metadata=self.meta(spec.name, spec.component, spec.name, skips=skips),
                spec=workload_spec,
                opts=self.opts(parent, depends_on=depends),
            )
            resources.append(workload)
            if replicated:
                self._replicated(name, spec, parent)
                if spec.ports:
                    dns_names = (f"{spec.name}-pods",)
        elif spec.workload == "stateful":
            workload = StatefulSet(
                name,
                metadata=self.meta(spec.name, spec.component, spec.name, skips=skips),
                spec={
                    "serviceName": spec.name,
                    "replicas": 1,
                    "selector": {"matchLabels": self.selector(spec.name)},
                    "template": template,
                    "podManagementPolicy": "OrderedReady",
                    "updateStrategy": {"type": "RollingUpdate"},
                },
                opts=self.opts(parent, depends_on=depends),
            )
            resources.append(workload)
        elif spec.workload == "job":
            workload = Job(
                name,
                metadata=self.meta(
                    job_name(spec.name, spec), spec.component, spec.name, skips=skips
                ),
                spec={
                    "backoffLimit": 3,
                    "activeDeadlineSeconds": JOB_DEADLINE_S,
                    "template": _restart(template, "Never"),
                },
                # Replaced, never patched: a new image means a new Job that must
                # complete before its dependants roll. pulumi-kubernetes waits 10
                # minutes for a Job unless told otherwise; this one may run for its
                # whole activeDeadlineSeconds, plus time to be scheduled.
                opts=pulumi.ResourceOptions.merge(
                    self.opts(parent, depends_on=depends, delete_before_replace=True),
                    pulumi.ResourceOptions(
                        custom_timeouts=pulumi.CustomTimeouts(
                            create=f"{JOB_DEADLINE_S // 60 + 5}m",
                            update=f"{JOB_DEADLINE_S // 60 + 5}m",
                        )
                    ),
                ),
            )
            resources.append(workload)
        else:
            assert spec.schedule_hours is not None
            workload = CronJob(
                name,
                metadata=self.meta(spec.name, spec.component, spec.name, skips=skips),
                spec={
                    "schedule": f"17 */{spec.schedule_hours} * * *"
                    if spec.schedule_hours < 24
                    else "17 3 * * *",
                    "concurrencyPolicy": "Forbid",
                    "startingDeadlineSeconds": 600,
                    "successfulJobsHistoryLimit": 3,
                    "failedJobsHistoryLimit": 3,
                    "jobTemplate": {
                        "metadata": {"labels": self.labels(spec.name, spec.component)},
                        "spec": {
                            "backoffLimit": 2,
                            "activeDeadlineSeconds": 3600,
                            "template": _restart(template, "OnFailure"),
                        },
                    },
                },
                opts=self.opts(parent, depends_on=depends),
            )
            resources.append(workload)
        return Deployment(
            service=spec.name,
            resources=[workload],
            addresses=addresses,
            dns_names=dns_names,
            service_address=addresses[0] if addresses else None,
        )

    def service_url(self, spec: ServiceSpec, port: str) -> str:
        """Operator UIs stay inside the cluster: reach them with ``kubectl port-forward``.

        The URL is what ``kubectl -n luna-<stack> port-forward svc/<name> <publish>:<port>``
        makes local.
        """
        for p in spec.ports:
            if p.name == port and p.publish is not None:
                return f"http://localhost:{p.publish}"
        raise ValueError(f"{spec.name} does not publish a port named {port!r}")

    def finish(self) -> None:
        """Check every flow has a target, add the log collector, write the NetworkPolicies."""
        if self._finished:
            raise ValueError("finish() is called twice")
        self._graph.check()
        if self._args.ship_logs and "logstash" in self._graph.services:
            self._log_collector()
        self._finished = True
        for service, spec in self._graph.services.items():
            self._service_policy(service, spec)

    # -- managed PostgreSQL (CloudNativePG) ---------------------------------
    def postgres_dns_names(self, service: str) -> tuple[str, ...]:
        from components.platforms.kubernetes.postgres import dns_names

        return dns_names(service, self.namespace)

    def postgres(
        self, name: str, spec: PostgresSpec, *, parent: pulumi.Resource
    ) -> PostgresService:
        """A CloudNativePG ``Cluster`` (components/platforms/kubernetes/postgres.py)."""
        from components.platforms.kubernetes.postgres import METRICS_PORT, deploy_cnpg

        # Flows to and from the instances follow the same graph as every service.
        self._graph.add(
            ServiceSpec(
                name=spec.name,
                image=spec.image,
                resources=spec.resources,
                ports=(Port("postgres", 5432),),
                internet_egress=spec.backup is not None,
                component="database",
            )
        )
        operator = self._cnpg_operator() if self._args.cnpg_operator == "install" else None
        made = deploy_cnpg(self, name, spec, parent=parent, operator=operator)
        instances = self.selector(spec.name)
        self._policy(
            f"{spec.name}-cnpg",
            instances,
            ingress=[
                # Replication and the operator's status endpoint, between instances.
                {"from": [{"podSelector": {"matchLabels": instances}}],
                 "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 8000}]},
                {"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "cnpg-system"}}}],
                 "ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 5432}]},
                {"from": [{"podSelector": {"matchLabels": self.selector("prometheus")}}],
                 "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
            egress=[
                {"to": [{"podSelector": {"matchLabels": instances}}],
                 "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 8000}]},
                # The instance manager watches its Cluster through the API server.
                {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]},
            ],
            service=spec.name,
            protect=spec.protect,
        )  # fmt: skip
        # Prometheus' side of the metrics flow (its own policy opens only declared flows).
        self._policy(
            f"{spec.name}-metrics-scrape",
            self.selector("prometheus"),
            egress=[{"to": [{"podSelector": {"matchLabels": instances}}],
                     "ports": [{"protocol": "TCP", "port": METRICS_PORT}]}],
            service="prometheus",
        )  # fmt: skip
        return made

    def _cnpg_operator(self) -> pulumi.Resource:
        if self._operator is None:
            from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs

            self._operator = Release(
                self.child("cnpg-operator"),
                chart="cloudnative-pg",
                version=self._args.cnpg_chart_version,
                namespace="cnpg-system",
                create_namespace=True,
                repository_opts=RepositoryOptsArgs(repo="https://cloudnative-pg.github.io/charts"),
                # The operator serves every stack on the cluster: never removed with one.
                opts=pulumi.ResourceOptions(
                    parent=self, provider=self.provider, retain_on_delete=True
                ),
            )
        return self._operator

    # -- what the platform's modules build with ------------------------------
    @property
    def storage_class(self) -> str | None:
        return self._args.storage_class

    @property
    def app_max_replicas(self) -> int:
        """The HPA ceiling for replicated services."""
        return self._args.app_max_replicas

    def child(self, role: str) -> str:
        """The Pulumi name of an object the platform itself owns: ``<platform>-<role>``."""
        return f"{self._name}-{role}"

    def pull_secret(self, image: str) -> str | None:
        """The pull Secret's name for ``image``, when it comes from the private registry."""
        registry = self._args.registry
        if self._pull_secret and registry is not None and registry.serves(image):
            return self._pull_secret
        return None

    def labels(self, service: str, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": service,
            "app.kubernetes.io/instance": self.namespace,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "luna",
            "app.kubernetes.io/managed-by": "pulumi",
        }

    def selector(self, service: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": service,
            "app.kubernetes.io/instance": self.namespace,
        }

    def meta(
        self,
        name: str | None,
        component: str,
        service: str,
        *,
        skips: Sequence[tuple[str, str]] = (),
        annotations: Mapping[str, str] | None = None,
    ) -> Manifest:
        """Metadata in the stack's namespace; ``skips`` are checkov skips with their reasons."""
        meta: Manifest = {"namespace": self.namespace, "labels": self.labels(service, component)}
        if name is not None:
            meta["name"] = name
        notes = dict(annotations or {})
        for i, (check, reason) in enumerate(skips, start=1):
            notes[f"checkov.io/skip{i}"] = f"{check}={reason}"
        if notes:
            meta["annotations"] = notes
        return meta

    def opts(
        self,
        parent: pulumi.Resource,
        *,
        depends_on: Sequence[pulumi.Resource] = (),
        protect: bool = False,
        delete_before_replace: bool = False,
    ) -> pulumi.ResourceOptions:
        """The explicit provider, after the namespace; protected data is also retained."""
        deps = list(depends_on)
        if hasattr(self, "_ns"):
            deps.append(self._ns)
        return pulumi.ResourceOptions(
            parent=parent,
            provider=self.provider,
            depends_on=deps,
            protect=protect,
            retain_on_delete=protect,
            delete_before_replace=delete_before_replace,
        )

    def _skips(self, spec: ServiceSpec, *, root: bool = False) -> list[tuple[str, str]]:
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

    # -- pods ----------------------------------------------------------------
    def _pod_inputs(
        self, name: str, spec: ServiceSpec, parent: pulumi.Resource
    ) -> tuple[list[Manifest], list[Manifest], list[Manifest]]:
        """Volumes, volume mounts and env for the pod; creates the ConfigMap and Secrets."""
        volumes: list[Manifest] = []
        mounts: list[Manifest] = []
        plain = {
            f.path: f.content for f in spec.files if isinstance(f.content, str) and not f.secret
        }
        # Anything not a plain string may derive from secret config: ship it in a Secret.
        hidden = {f.path: f.content for f in spec.files if f.path not in plain}
        if plain:
            config_map = ConfigMap(
                f"{name}-files",
                metadata=self.meta(None, spec.component, spec.name, annotations=_files_note(plain)),
                data={_key(path): text for path, text in plain.items()},
                opts=self.opts(parent),
            )
            volumes.append({"name": "files", "configMap": {"name": config_map.metadata.name}})
            mounts += [
                {"name": "files", "mountPath": path, "subPath": _key(path), "readOnly": True}
                for path in plain
            ]
        if hidden:
            secret_files = Secret(
                f"{name}-secret-files",
                metadata=self.meta(
                    None, spec.component, spec.name, annotations=_files_note(hidden)
                ),
                type="Opaque",
                string_data={
                    _key(path): pulumi.Output.secret(text) for path, text in hidden.items()
                },
                opts=self.opts(parent),
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
            claim = self._volumes.get(mount.volume)
            if claim is None:
                raise ValueError(
                    f"{spec.name} mounts volume {mount.volume!r}, which does not exist"
                )
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
                metadata=self.meta(None, spec.component, spec.name),
                type="Opaque",
                string_data={k: pulumi.Output.secret(v) for k, v in spec.secret_env.items()},
                opts=self.opts(parent),
            )
            env += [
                {
                    "name": k,
                    "valueFrom": {"secretKeyRef": {"name": env_secret.metadata.name, "key": k}},
                }
                for k in spec.secret_env
            ]
        return volumes, mounts, env

    def _template(
        self,
        spec: ServiceSpec,
        volumes: list[Manifest],
        mounts: list[Manifest],
        env: list[Manifest],
        *,
        root: bool = False,
        extra: Manifest | None = None,
    ) -> Manifest:
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
            "containers": [container],
            "volumes": volumes,
            "terminationGracePeriodSeconds": (60 if spec.workload == "stateful" else 30)
            + spec.drain_s,
        }
        if spec.drain_s:
            # Endpoints and load balancers drop a terminating pod only after a
            # while; it keeps serving until they have (the image ships `sleep`).
            container["lifecycle"] = {
                "preStop": {"exec": {"command": ["sleep", str(spec.drain_s)]}}
            }
        pull_secret = self.pull_secret(spec.image)
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
                            "labelSelector": {"matchLabels": self.selector(spec.name)},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            }
        if spec.workload == "service" and spec.replicas > 1:
            pod["topologySpreadConstraints"] = [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": self.selector(spec.name)},
                }
            ]
        pod.update(extra or {})
        return {"metadata": {"labels": self.labels(spec.name, spec.component)}, "spec": pod}

    def _registry_secret(self, registry: RegistryAuth) -> str:
        """A ``kubernetes.io/dockerconfigjson`` Secret with the pull credentials."""
        name = "registry-credentials"
        password: pulumi.Output[str] = pulumi.Output.secret(registry.password)
        config = password.apply(lambda p: _docker_config(registry.server, registry.username, p))
        Secret(
            f"{self._name}-registry-credentials",
            metadata=self.meta(name, "registry", "luna"),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": config},
            opts=self.opts(self),
        )
        return name

    # -- Services, scaling ---------------------------------------------------
    def _services(
        self, name: str, spec: ServiceSpec, parent: pulumi.Resource, *, headless: bool
    ) -> list[pulumi.Resource]:
        ports = [
            {
                "name": p.name,
                "port": p.port,
                "targetPort": p.name,
                "protocol": p.protocol.upper(),
            }
            for p in spec.ports
        ]
        body: Manifest = {"selector": self.selector(spec.name), "ports": ports}
        if headless:
            # A StatefulSet's governing Service: DNS names the pod itself.
            body["clusterIP"] = "None"
        made: list[pulumi.Resource] = [
            Service(
                f"{name}-service",
                metadata=self.meta(spec.name, spec.component, spec.name),
                spec=body,
                opts=self.opts(parent),
            )
        ]
        edge = [p for p in spec.ports if p.publish is not None and p.publish_ip == "0.0.0.0"]  # noqa: S104
        if edge:
            # The public edge; loopback-published operator UIs stay ClusterIP.
            made.append(
                Service(
                    f"{name}-edge",
                    metadata=self.meta(f"{spec.name}-edge", spec.component, spec.name),
                    spec={
                        "type": "LoadBalancer",
                        # Keep the client's address for nginx's access logs.
                        "externalTrafficPolicy": "Local",
                        "selector": self.selector(spec.name),
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
                    opts=self.opts(parent),
                )
            )
        if spec.workload == "service" and spec.replicas > 1:
            # One A record per ready replica, for Prometheus' dns_sd_configs.
            made.append(
                Service(
                    f"{name}-pods",
                    metadata=self.meta(f"{spec.name}-pods", spec.component, spec.name),
                    spec={**body, "clusterIP": "None"},
                    opts=self.opts(parent),
                )
            )
        return made

    def _replicated(self, name: str, spec: ServiceSpec, parent: pulumi.Resource) -> None:
        PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self.meta(spec.name, spec.component, spec.name),
            # One pod at a time may go, so nodes drain while the rest serve.
            spec={"maxUnavailable": 1, "selector": {"matchLabels": self.selector(spec.name)}},
            opts=self.opts(parent),
        )
        HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=self.meta(spec.name, spec.component, spec.name),
            spec={
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": spec.name,
                },
                "minReplicas": spec.replicas,
                "maxReplicas": max(spec.replicas, self.app_max_replicas),
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
            opts=self.opts(parent),
        )

    # -- log collector -------------------------------------------------------
    def _log_collector(self) -> None:
        spec = ServiceSpec(
            name=LOG_COLLECTOR,
            component="logging",
            image=self._args.log_collector_image,
            resources=Resources(memory_mb=128, cpus=0.2),
            ports=(),
            connects_to=("logstash",),
            writable_paths=("/tmp",),
            ship_logs=False,
        )
        self._graph.add(spec)
        name = f"{self._name}-{LOG_COLLECTOR}"
        ca = self._args.log_collector_ca
        if ca is None:
            raise ValueError("the log collector verifies Logstash: log_collector_ca is needed")
        files: dict[str, pulumi.Input[str]] = {
            "/fluent-bit/etc/fluent-bit.conf": fluent_bit_conf(
                namespace=self.namespace,
                logstash_host="logstash",
                gelf_port=_GELF_PORT,
                stack=self.stack,
                # ship_logs=False (the logging stack, this collector) holds here too.
                exclude_containers=sorted(
                    n for n, s in self._graph.services.items() if not s.ship_logs
                ),
            ),
            "/fluent-bit/etc/parsers.conf": parsers_conf(),
            CA_FILE: ca,
        }
        config_map = ConfigMap(
            f"{name}-files",
            metadata=self.meta(None, spec.component, spec.name, annotations=_files_note(files)),
            data={_key(path): text for path, text in files.items()},
            opts=self.opts(self),
        )
        volumes: list[Manifest] = [
            {"name": "files", "configMap": {"name": config_map.metadata.name}},
            {"name": "scratch-0", "emptyDir": {"sizeLimit": "256Mi"}},
            # The one hostPath: node log files, read-only.
            {"name": "node-logs", "hostPath": {"path": "/var/log", "type": "Directory"}},
            # Read positions and the disk buffer, per namespace, outliving the pod.
            {
                "name": "collector-state",
                "hostPath": {
                    "path": f"/var/lib/luna-log-collector/{self.namespace}",
                    "type": "DirectoryOrCreate",
                },
            },
        ]
        mounts: list[Manifest] = [
            {"name": "files", "mountPath": path, "subPath": _key(path), "readOnly": True}
            for path in files
        ]
        mounts += [
            {"name": "scratch-0", "mountPath": "/tmp"},
            {"name": "node-logs", "mountPath": "/var/log", "readOnly": True},
            {"name": "collector-state", "mountPath": STATE_DIR},
        ]
        template = self._template(spec, volumes, mounts, [], root=True)
        container = template["spec"]["containers"][0]
        container["ports"] = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
        probe = {"httpGet": {"path": HEALTH_PATH, "port": HTTP_PORT}, "periodSeconds": 15}
        container["readinessProbe"] = probe
        container["livenessProbe"] = {**probe, "failureThreshold": 5}
        template["spec"]["tolerations"] = [{"operator": "Exists", "effect": "NoSchedule"}]
        DaemonSet(
            name,
            metadata=self.meta(
                LOG_COLLECTOR, spec.component, spec.name, skips=self._skips(spec, root=True)
            ),
            spec={
                "selector": {"matchLabels": self.selector(LOG_COLLECTOR)},
                "template": template,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            },
            opts=self.opts(self),
        )

    # -- NetworkPolicies -----------------------------------------------------
    def _policy(
        self,
        name: str,
        selector: Mapping[str, str],
        *,
        ingress: list[Manifest] | None = None,
        egress: list[Manifest] | None = None,
        service: str = "luna",
        protect: bool = False,
    ) -> None:
        types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
        body: Manifest = {"podSelector": {"matchLabels": dict(selector)}, "policyTypes": types}
        if ingress is not None:
            body["ingress"] = ingress
        if egress is not None:
            body["egress"] = egress
        NetworkPolicy(
            f"{self._name}-netpol-{name}",
            metadata=self.meta(name, "network", service),
            spec=body,
            # Protected with the data it fences: `pulumi destroy --exclude-protected`
            # never leaves a retained database reachable by everyone.
            opts=self.opts(self, protect=protect),
        )

    def _service_policy(self, service: str, spec: ServiceSpec) -> None:
        """Ingress from the declared sources, egress to the declared targets only."""
        ingress: list[Manifest] = []
        sources = self._graph.sources(service)
        if sources and spec.ports:
            ingress.append(
                {
                    "from": [{"podSelector": {"matchLabels": self.selector(s)}} for s in sources],
                    "ports": _policy_ports(spec),
                }
            )
        edge = [p for p in spec.ports if p.publish is not None and p.publish_ip == "0.0.0.0"]  # noqa: S104
        if edge:
            ingress.append(
                {
                    "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                    "ports": [{"protocol": p.protocol.upper(), "port": p.port} for p in edge],
                }
            )
        egress: list[Manifest] = [
            {
                "to": [{"podSelector": {"matchLabels": self.selector(target)}}],
                "ports": _policy_ports(self._graph.services[target]),
            }
            for target in sorted(set(spec.connects_to))
            if self._graph.services[target].ports
        ]
        if service == LOG_COLLECTOR:
            egress = [
                {
                    "to": [{"podSelector": {"matchLabels": self.selector("logstash")}}],
                    "ports": [{"protocol": "TCP", "port": _GELF_PORT}],
                }
            ]
        if spec.internet_egress:
            egress.append(
                {
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": _PRIVATE}}],
                    "ports": [{"protocol": "TCP", "port": 443}],
                }
            )
        if not ingress and not egress:
            return
        self._policy(
            service,
            self.selector(service),
            ingress=ingress or None,
            egress=egress or None,
            service=service,
            protect=any(m.volume in self._protected_volumes for m in spec.mounts),
        )


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


def _policy_ports(spec: ServiceSpec) -> list[Manifest]:
    return [{"protocol": p.protocol.upper(), "port": p.port} for p in spec.ports]


def _restart(template: Manifest, policy: str) -> Manifest:
    return {**template, "spec": {**template["spec"], "restartPolicy": policy}}


def _key(path: str) -> str:
    """A ConfigMap/Secret key for a file path: dashes, never underscores (SDK key translation)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", path.strip("/"))


def _files_note(files: Mapping[str, object]) -> dict[str, str]:
    return {FILES_ANNOTATION: json.dumps({_key(p): p for p in files}, sort_keys=True)}

"""The Kubernetes platform: one namespace per stack, hardened pods, default-deny network.

Every :class:`~components.spec.ServiceSpec` becomes a workload by its
``workload`` (Deployment, StatefulSet, Job, CronJob), a Service named after it
(its DNS name, as on Docker), a ConfigMap/Secret for its files and a Secret
for its secret environment. Segmentation follows the declared flows: the
namespace denies all traffic, then :meth:`KubernetesPlatform.finish` opens
exactly one ingress rule on the target and one egress rule on the source per
flow. See docs/kubernetes.md.

This module is the platform itself (the namespace, storage, and the names,
labels and options every object shares); each concern has its own module:
``pods`` (the pod template, files, env, pull credentials), ``workloads``
(controllers, Services, scaling), ``jobs``, ``network`` (NetworkPolicies),
``collector`` (the log collector) and ``postgres`` (CloudNativePG, imported
only by a stack that runs it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.core.v1 import Namespace, PersistentVolumeClaim
from pulumi_kubernetes.provider import Provider

from components.platforms import Deployment, Platform, RegistryAuth
from components.platforms.kubernetes.collector import collector_spec, deploy_collector
from components.platforms.kubernetes.jobs import job_name
from components.platforms.kubernetes.network import (
    baseline_policies,
    postgres_policies,
    service_policy,
)
from components.platforms.kubernetes.pods import (
    FILES_ANNOTATION,
    pod_inputs,
    pod_template,
    registry_secret,
)
from components.platforms.kubernetes.tls_front import sidecar
from components.platforms.kubernetes.workloads import deploy_workload
from components.spec import Port, PostgresService, PostgresSpec, ServiceSpec, VolumeSpec

__all__ = ["FILES_ANNOTATION", "KubernetesPlatform", "KubernetesPlatformArgs", "job_name"]

Manifest = dict[str, Any]


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
    """``install``: Helm releases of the pinned CloudNativePG and Barman Cloud plugin
    charts (postgres/cnpg_install.py); ``prerequisite``: both are installed by the
    cluster's admins and their CRDs are checked first. cert-manager is a
    prerequisite either way."""
    cluster_identifier: str | None = None
    """What the provider is replaced for (``luna-<stack>`` when unset). Without one,
    pulumi-kubernetes replaces its provider, and with it every object, whenever
    the kubeconfig's active cluster entry changes (a renamed context, a new CA or
    endpoint of the same cluster); protected objects then fail the update
    (provider.go ``DiffConfig``). Change it only to move the stack to another cluster."""


class KubernetesPlatform(Platform):
    """Creates Kubernetes objects for Luna services in the stack's namespace.

    Usage::

        platform = KubernetesPlatform("luna-kubernetes", KubernetesPlatformArgs(stack="prod"))
        LunaApp("luna-app", LunaAppArgs(platform=platform, ...))
        platform.finish()
    """

    provider: Provider
    """The explicit provider every object uses: never the ambient kubeconfig default."""
    data_provider: Provider
    """The same cluster with mutable Secrets: only the Secrets kept with the database."""
    namespace: str

    def __init__(
        self, name: str, args: KubernetesPlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:platform:KubernetesPlatform", name, args.stack, opts)
        self._args = args
        self.namespace = f"luna-{args.stack}"
        self.provider = self._new_provider(f"{name}-provider", args)
        # The database's Secrets are protected with the Cluster: a rotation must
        # patch them in place, which pulumi-kubernetes does only with
        # enableSecretMutable (provider/pkg/provider/diff.go forceNewProperties;
        # provider.go Configure). Every other Secret keeps the default: its data
        # change replaces it under a new generated name, which is what rolls the
        # pods that read it (pods.py), so a mutable default would leave them stale.
        self.data_provider = self._new_provider(
            f"{name}-data-provider", args, enable_secret_mutable=True
        )
        self._ns = Namespace(
            f"{name}-namespace",
            metadata={
                "name": self.namespace,
                "labels": {
                    **self.labels("namespace", "luna"),
                    # Enforced: the log collector, the one pod that needs a hostPath
                    # and root, lives in its own namespace (collector.py).
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            },
            # Deleting a namespace deletes every PVC in it, protected or not.
            opts=self.opts(self, protect=args.protect_data),
        )
        self._volumes: dict[str, PersistentVolumeClaim] = {}
        self._protected_volumes: set[str] = set()
        self._protected_services: set[str] = set()
        self._operator: list[pulumi.Resource] | None = None
        self._pull_secret = registry_secret(self, args.registry) if args.registry else None
        baseline_policies(self, protect=args.protect_data)
        self.register_outputs({"namespace": self.namespace})

    def _new_provider(
        self, name: str, args: KubernetesPlatformArgs, *, enable_secret_mutable: bool = False
    ) -> Provider:
        # One clusterIdentifier for both: moving an object from one provider to
        # the other is then no replacement (pulumi/pulumi step_generator.go
        # providerChanged asks the new provider's DiffConfig).
        return Provider(
            name,
            kubeconfig=args.kubeconfig,
            context=args.context,
            namespace=self.namespace,
            cluster_identifier=args.cluster_identifier or f"luna-{args.stack}",
            # Explicit either way: PULUMI_K8S_ENABLE_SECRET_MUTABLE in an operator's
            # shell would otherwise decide (the SDK reads it when this is None).
            enable_secret_mutable=enable_secret_mutable,
            opts=pulumi.ResourceOptions(parent=self),
        )

    # -- Platform ----------------------------------------------------------
    @property
    def name(self) -> str:
        return "kubernetes"

    @property
    def crosses_hosts(self) -> bool:
        return True

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

    def _realise(
        self, name: str, spec: ServiceSpec, parent: pulumi.Resource, after: list[pulumi.Resource]
    ) -> Deployment:
        volumes, mounts, env = pod_inputs(self, name, spec, parent, self._volumes)
        sidecars = []
        if spec.tls_front is not None:
            container, more = sidecar(self, name, spec, parent=parent)
            sidecars.append(container)
            volumes += more
        template = pod_template(self, spec, volumes, mounts, env, sidecars=sidecars)
        return deploy_workload(self, name, spec, template, parent=parent, depends=after)

    def service_url(self, spec: ServiceSpec, port: str) -> str:
        """Operator UIs stay inside the cluster: reach them with ``kubectl port-forward``.

        The URL is what ``kubectl -n luna-<stack> port-forward svc/<name> <publish>:<port>``
        makes local.
        """
        for p in spec.ports:
            if p.name == port and p.publish is not None:
                return f"http://localhost:{p.publish}"
        raise ValueError(f"{spec.name} does not publish a port named {port!r}")

    def _complete(self) -> None:
        """Add the log collector, then write the NetworkPolicies from the whole flow graph."""
        if self._args.ship_logs and "logstash" in self._graph.services:
            self._log_collector()
        for service, spec in self._graph.services.items():
            service_policy(
                self,
                service,
                spec,
                self._graph,
                protected_volumes=self._protected_volumes,
                protected=service in self._protected_services,
            )

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
        self._add_flows(
            ServiceSpec(
                name=spec.name,
                image=spec.image,
                resources=spec.resources,
                ports=(Port("postgres", 5432),),
                internet_egress=spec.backup is not None,
                # The object store's port (endpoint host[:port], always TLS).
                internet_ports=(_endpoint_port(spec.backup.endpoint),)
                if spec.backup is not None
                else (443,),
                component="database",
            )
        )
        operator = self._cnpg_operator() if self._args.cnpg_operator == "install" else []
        made = deploy_cnpg(self, name, spec, parent=parent, operator=operator)
        if spec.protect:
            # Its flows (clients in, the object store out) go with the retained
            # cluster: `destroy --exclude-protected` leaves one that can archive.
            self._protected_services.add(spec.name)
        postgres_policies(
            self,
            spec.name,
            metrics_port=METRICS_PORT,
            protect=spec.protect,
            store_port=_endpoint_port(spec.backup.endpoint) if spec.backup else None,
        )
        return made

    def _cnpg_operator(self) -> list[pulumi.Resource]:
        if self._operator is None:
            from components.platforms.kubernetes.cnpg_install import install

            self._operator = install(self)
        return self._operator

    def _log_collector(self) -> None:
        spec = collector_spec(self._args.log_collector_image)
        self._graph.add(spec)
        ca = self._args.log_collector_ca
        if ca is None:
            raise ValueError("the log collector verifies Logstash: log_collector_ca is needed")
        deploy_collector(
            self, spec, ca=ca, services=self._graph.services, protect=self._args.protect_data
        )

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
        mutable_secret: bool = False,
    ) -> pulumi.ResourceOptions:
        """The explicit provider, after the namespace; protected data is also retained.

        ``mutable_secret``: a Secret patched in place on a data change (the data
        provider), so that it can be protected.
        """
        deps = list(depends_on)
        if hasattr(self, "_ns"):
            deps.append(self._ns)
        return pulumi.ResourceOptions(
            parent=parent,
            provider=self.data_provider if mutable_secret else self.provider,
            depends_on=deps,
            protect=protect,
            retain_on_delete=protect,
            delete_before_replace=delete_before_replace,
        )


def _endpoint_port(endpoint: str) -> int:
    host, _, port = endpoint.rpartition(":")
    return int(port) if host and port.isdigit() else 443

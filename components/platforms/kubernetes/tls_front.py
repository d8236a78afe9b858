"""Kubernetes' realisation of ``ServiceSpec.tls_front``: a TLS sidecar in each pod.

The edge (nginx) reaches the app across nodes, so it speaks TLS to it and
verifies the certificate against the stack CA (components/proxy.py). The app
image is the app team's (Next.js' ``next start`` serves plain HTTP only), so the
TLS is terminated in the same pod by a sidecar of the project's own pinned
nginx image, which forwards on the pod's loopback: the plain hop never leaves
the pod's network namespace. docs/architecture.md argues the choice.

What it adds to the pod: one hardened container (the app's non-root user, a
read-only root, ``/tmp`` as its only writable path, every capability dropped),
its nginx.conf in a ConfigMap, and its certificate and key in a Secret. Both
are generated-name objects: a renewed certificate is a new Secret, which rolls
the pods (pods.py). The Service gains the ``tls`` port; network.py lets the edge
reach that port only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi_kubernetes.core.v1 import ConfigMap, Secret

from components.configs.tls_front import TlsFrontSettings, tls_front_conf
from components.platforms.kubernetes.pods import FILES_ANNOTATION
from components.spec import Port, ServiceSpec, TlsFront

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = ["CONTAINER", "PORT_NAME", "front_port", "sidecar"]

Manifest = dict[str, Any]
CONTAINER = "tls-front"
PORT_NAME = "tls"
DIR = "/etc/luna/tls-front"
CONF = f"{DIR}/nginx.conf"


def front_port(spec: ServiceSpec) -> Port | None:
    """The TLS port the spec's front adds to its Service, if it has one."""
    return Port(PORT_NAME, spec.tls_front.port) if spec.tls_front is not None else None


def sidecar(
    platform: KubernetesPlatform, name: str, spec: ServiceSpec, *, parent: pulumi.Resource
) -> tuple[Manifest, list[Manifest]]:
    """The sidecar container and the volumes it needs (creates its ConfigMap and Secret)."""
    front = spec.tls_front
    assert front is not None
    conf = tls_front_conf(
        TlsFrontSettings(
            port=front.port,
            target=front.target,
            cert_path=f"{DIR}/tls.crt",
            key_path=f"{DIR}/tls.key",
        )
    )
    config = ConfigMap(
        f"{name}-tls-front",
        # The render writes it out like any shipped file (infra/render.py files()).
        metadata=platform.meta(
            None,
            spec.component,
            spec.name,
            annotations={FILES_ANNOTATION: json.dumps({"nginx.conf": CONF})},
        ),
        data={"nginx.conf": conf},
        opts=platform.opts(parent),
    )
    pair = Secret(
        f"{name}-tls-front",
        metadata=platform.meta(None, spec.component, spec.name),
        type="kubernetes.io/tls",
        string_data={
            "tls.crt": front.cert_pem,
            "tls.key": pulumi.Output.secret(front.key_pem),
        },
        opts=platform.opts(parent),
    )
    volumes: list[Manifest] = [
        {
            "name": "tls-front",
            "projected": {
                "defaultMode": 0o440,
                "sources": [
                    {"configMap": {"name": config.metadata.name}},
                    {"secret": {"name": pair.metadata.name}},
                ],
            },
        },
        {"name": "tls-front-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    return _container(front, spec.drain_s), volumes


def _container(front: TlsFront, drain_s: int) -> Manifest:
    probe = {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 10, "timeoutSeconds": 3}
    container: Manifest = {
        "name": CONTAINER,
        "image": front.image,
        "imagePullPolicy": "IfNotPresent" if "@sha256:" in front.image else "Always",
        "command": ["nginx", "-c", CONF, "-g", "daemon off;"],
        "ports": [{"name": PORT_NAME, "containerPort": front.port, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": "tls-front", "mountPath": DIR, "readOnly": True},
            {"name": "tls-front-tmp", "mountPath": "/tmp"},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        # The pod's user (the app's uid:gid) and seccomp apply; nginx needs no root
        # to listen on an unprivileged port and writes only to /tmp.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 3},
    }
    if drain_s:
        # It serves as long as the app does while load balancers drop the pod.
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(drain_s)]}}}
    return container

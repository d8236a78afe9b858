"""The preflight's Kubernetes checks: read-only GETs against the cluster's API server.

Paths and response shapes follow the Kubernetes API reference (kubernetes.io/docs/
reference/kubernetes-api/): CustomResourceDefinition (apiextensions.k8s.io/v1),
Deployment (apps/v1, ``spec.template.spec.containers[].image``), StorageClass
(storage.k8s.io/v1, ``reclaimPolicy``; the default carries the annotation
``storageclass.kubernetes.io/is-default-class: "true"``), Node (``status.conditions``
type Ready), APIService (apiregistration.k8s.io/v1, condition Available) for
metrics-server's ``v1beta1.metrics.k8s.io``.

The client is the standard library's: the kubeconfig's current (or named)
context gives the server, its CA and a bearer token or client certificate.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from infra.preflight_checks import Check

__all__ = ["CNPG_CRDS", "CNPG_OPERATOR_MINOR", "KubeApi", "KubeconfigError", "kube_checks"]

CNPG_OPERATOR_MINOR: Final = "1.30"
"""The CloudNativePG minor the Cluster and CRD tests are written for."""
CNPG_CRDS: Final = (
    "clusters.postgresql.cnpg.io",
    "scheduledbackups.postgresql.cnpg.io",
    # The Barman Cloud plugin (cloudnative-pg/plugin-barman-cloud): backups' object store.
    "objectstores.barmancloud.cnpg.io",
)
_OPERATOR_SELECTOR: Final = "app.kubernetes.io/name=cloudnative-pg"
"""The label the operator's chart and manifest both give its Deployment."""
_DEFAULT_CLASS: Final = "storageclass.kubernetes.io/is-default-class"


class KubeconfigError(Exception):
    """The kubeconfig cannot name a reachable cluster (exit 2: fix the input)."""


@dataclass(frozen=True)
class KubeApi:
    server: str
    context: ssl.SSLContext
    token: str | None

    @classmethod
    def from_kubeconfig(cls, text: str, context_name: str | None = None) -> KubeApi:
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            raise KubeconfigError("the kubeconfig is not YAML") from None
        if not isinstance(doc, dict):
            raise KubeconfigError(
                "the kubeconfig is not a YAML mapping (clusters, contexts, users)"
            )
        name = context_name or doc.get("current-context")
        ctx = _named(doc, "contexts", name, "context")
        cluster = _named(doc, "clusters", ctx.get("cluster"), "cluster")
        user = _named(doc, "users", ctx.get("user"), "user") if ctx.get("user") else {}
        if cluster.get("insecure-skip-tls-verify"):
            raise KubeconfigError("the kubeconfig skips TLS verification; give the cluster's CA")
        # Trust the cluster's own CA alone when the kubeconfig names one, as kubectl does.
        data, path = cluster.get("certificate-authority-data"), cluster.get("certificate-authority")
        tls = (
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if data or path
            else ssl.create_default_context()
        )
        if data:
            tls.load_verify_locations(cadata=base64.b64decode(data).decode())
        elif path:
            tls.load_verify_locations(cafile=path)
        if user.get("client-certificate-data") and user.get("client-key-data"):
            _load_client_pair(tls, user["client-certificate-data"], user["client-key-data"])
        server = str(cluster.get("server") or "").rstrip("/")
        if not server.startswith("https://"):
            raise KubeconfigError(f"the cluster's server must be https://, not {server!r}")
        return cls(server=server, context=tls, token=user.get("token"))

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when the API answers 404."""
        # The server is https:// (checked when read), so no file: or custom scheme.
        request = urllib.request.Request(self.server + path, headers=self._headers())  # noqa: S310
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=15) as resp:  # noqa: S310
                return dict(json.load(resp))
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _named(doc: dict[str, Any], section: str, name: Any, field: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if item.get("name") == name:
            return dict(item.get(field) or {})
    raise KubeconfigError(f"the kubeconfig has no {field} named {name!r}")


def _load_client_pair(tls: ssl.SSLContext, cert_b64: str, key_b64: str) -> None:
    # ssl loads a client pair only from files; they live for this call, mode 0600.
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
        cert.write_bytes(base64.b64decode(cert_b64))
        key.write_bytes(base64.b64decode(key_b64))
        key.chmod(0o600)
        tls.load_cert_chain(cert, key)


def kube_checks(api: KubeApi, *, stack: str, storage_class: str | None) -> list[Check]:
    """Every Kubernetes prerequisite; an unreachable API fails each row that needed it."""
    rows: list[Check] = []
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("cnpg crds", lambda: _crds(api)),
        ("cnpg operator", lambda: _operator(api)),
        ("storage class", lambda: _storage(api, stack, storage_class)),
        ("nodes", lambda: _nodes(api, stack)),
        ("metrics-server", lambda: _metrics_server(api)),
    ]
    for name, step in steps:
        try:
            rows += step()
        except (urllib.error.URLError, OSError, ValueError) as err:
            rows.append(Check(name, "FAIL", f"API {api.server}: {err}"))
    return rows


def _crds(api: KubeApi) -> list[Check]:
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
    return [
        Check(f"crd {crd}", "ok", "installed")
        if api.get(base + crd)
        else Check(f"crd {crd}", "FAIL", "not installed (docs/kubernetes.md: prerequisites)")
        for crd in CNPG_CRDS
    ]


def _operator(api: KubeApi) -> list[Check]:
    found = api.get(f"/apis/apps/v1/deployments?labelSelector={_OPERATOR_SELECTOR}") or {}
    images = [
        c.get("image", "")
        for item in found.get("items") or []
        for c in item.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    ]
    if not images:
        return [Check("cnpg operator", "FAIL", f"no Deployment labelled {_OPERATOR_SELECTOR}")]
    tags = [image.rsplit(":", 1)[-1].split("@")[0] for image in images]
    ok = all(tag.startswith(CNPG_OPERATOR_MINOR + ".") for tag in tags)
    want = f"{CNPG_OPERATOR_MINOR}.x needed"
    return [Check("cnpg operator", "ok" if ok else "FAIL", f"{', '.join(tags)} ({want})")]


def _storage(api: KubeApi, stack: str, name: str | None) -> list[Check]:
    if name:
        found = api.get(f"/apis/storage.k8s.io/v1/storageclasses/{name}")
        classes = [found] if found else []
    else:
        listed = api.get("/apis/storage.k8s.io/v1/storageclasses") or {}
        classes = [
            c for c in listed.get("items") or []
            if (c.get("metadata", {}).get("annotations") or {}).get(_DEFAULT_CLASS) == "true"
        ]  # fmt: skip
    if not classes:
        what = f"StorageClass {name}" if name else "a default StorageClass"
        return [Check("storage class", "FAIL", f"no {what} (set luna:storageClass)")]
    sc = classes[0]
    policy = sc.get("reclaimPolicy", "Delete")
    # A prod volume whose claim is deleted must outlive it (a retained database).
    ok = policy == "Retain" or stack != "prod"
    label = sc.get("metadata", {}).get("name", "?")
    need = "; Retain needed in prod" if stack == "prod" else ""
    return [Check("storage class", "ok" if ok else "FAIL", f"{label}: reclaim {policy}{need}")]


def _nodes(api: KubeApi, stack: str) -> list[Check]:
    items = (api.get("/api/v1/nodes") or {}).get("items") or []
    ready = [
        n for n in items
        if any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in n.get("status", {}).get("conditions") or [])
    ]  # fmt: skip
    # Prod runs three PostgreSQL instances with required anti-affinity and a quorum.
    need = 3 if stack == "prod" else 1
    ok = len(ready) >= need
    return [Check("nodes", "ok" if ok else "FAIL", f"{len(ready)} Ready (at least {need})")]


def _metrics_server(api: KubeApi) -> list[Check]:
    svc = api.get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io")
    conditions = (svc or {}).get("status", {}).get("conditions") or []
    ok = any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)
    detail = "v1beta1.metrics.k8s.io Available" if ok else "v1beta1.metrics.k8s.io not Available"
    # The autoscalers read CPU from it; without it they never scale.
    return [Check("metrics-server", "ok" if ok else "FAIL", detail)]

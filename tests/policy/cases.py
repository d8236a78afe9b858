"""Hand-built resources that violate (or satisfy) one policy each, render-shaped."""

from __future__ import annotations

import json
from typing import Any

from tests.policy.support import resource

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"

GOOD_SC = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 1001,
}


def deployment(
    name: str,
    *,
    env: list[dict[str, Any]] | None = None,
    sc: dict[str, Any] | None = None,
    stack: str = "prod",
    typ: str = DEPLOYMENT,
) -> dict[str, Any]:
    container = {
        "name": name,
        "image": "ghcr.io/luna-app/x:1.0.0",
        "env": env or [],
        "securityContext": sc or GOOD_SC,
    }
    return resource(
        typ,
        f"luna-{name}",
        {
            "apiVersion": "apps/v1",
            "kind": typ.rsplit(":", 1)[-1],
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": name}},
                    "spec": {"securityContext": {"runAsNonRoot": True}, "containers": [container]},
                }
            },
        },
        stack=stack,
    )


def container(service: str, *, stack: str = "prod", **inputs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": f"luna-{stack}-{service}-0123abcd",
        "labels": [{"label": "com.luna.service", "value": service}],
        "user": "1001:1001",
        "capabilities": {"drops": ["ALL"], "adds": []},
        "securityOpts": ["no-new-privileges:true"],
        "readOnly": True,
        "ports": [],
        "envs": [],
        "networksAdvanced": [],
    }
    return resource(CONTAINER, f"luna-{service}", {**base, **inputs}, stack=stack)


def configmap(name: str, data: dict[str, str], stack: str = "prod") -> dict[str, Any]:
    return resource(CONFIGMAP, name, {"metadata": {"name": name}, "data": data}, stack=stack)


def ilm(name: str, delete_after: str) -> str:
    body = {"policy": {"phases": {"delete": {"min_age": delete_after, "actions": {"delete": {}}}}}}
    return f"put PUT /_ilm/policy/{name} '{json.dumps(body)}'\n"


NGINX_WEAK = """http {
    server {
        listen 8443 ssl;
        ssl_protocols TLSv1 TLSv1.2;
    }
}
"""
RULES = """groups:
- name: luna
  rules:
  - alert: LunaCrisisEndpointDown
    expr: probe_success == 0
    labels: {severity: critical}
"""
AM_NULL = """route:
  receiver: "null"
  routes:
  - matchers: ['severity="critical"']
    receiver: "null"
receivers:
- name: "null"
- name: chat
  slack_configs: [{channel: "#luna"}]
"""
AM_PAGER = """route:
  receiver: chat
  routes:
  - matchers: ['severity="critical"']
    receiver: pager
receivers:
- name: pager
  pagerduty_configs: [{routing_key: "[secret]"}]
- name: chat
  slack_configs: [{channel: "#luna"}]
"""


def database(stack: str = "prod", *, command: list[str] | None = None) -> dict[str, Any]:
    return container(
        "database", stack=stack, envs=["POSTGRES_USER=luna"], command=command or ["postgres"]
    )


# policy name -> (resources, name of the resource the violation must name, or None)
VIOLATIONS: dict[str, tuple[list[dict[str, Any]], str | None]] = {
    "internal-tls-postgres": (
        [
            deployment(
                "app",
                env=[
                    {
                        "name": "DATABASE_URL",
                        "value": "postgresql://u@database:5432/luna?sslmode=disable",
                    }
                ],
            )
        ],
        "luna-app",
    ),
    "internal-tls-redis": (
        [deployment("app", env=[{"name": "REDIS_ADDR", "value": "redis://cache:6379"}])],
        "luna-app",
    ),
    "internal-tls-elasticsearch": (
        [configmap("luna-logstash-files", {"p.conf": 'hosts => ["http://elasticsearch:9200"]'})],
        "luna-logstash-files",
    ),
    "edge-tls": ([configmap("luna-proxy-files", {"nginx.conf": NGINX_WEAK})], "luna-proxy-files"),
    "no-public-data-service": (
        [
            container(
                "database",
                ports=[{"internal": 5432, "external": 5432, "ip": "0.0.0.0", "protocol": "tcp"}],  # noqa: S104,
            )
        ],
        "luna-database",
    ),
    "pod-security-restricted": (
        [
            resource(
                "kubernetes:core/v1:Namespace",
                "luna-ns",
                {
                    "metadata": {
                        "name": "luna-prod",
                        "labels": {"pod-security.kubernetes.io/enforce": "baseline"},
                    }
                },
            )
        ],
        "luna-ns",
    ),
    "container-hardening": ([container("app", privileged=True)], "luna-app"),
    "no-plaintext-secret": (
        [deployment("app", env=[{"name": "DB_PASSWORD", "value": "hunter2hunter2"}])],
        "luna-app",
    ),
    "image-pinned": (
        [resource("docker:index/remoteImage:RemoteImage", "luna-image", {"name": "redis:latest"})],
        "luna-image",
    ),
    "image-digest-prod": (
        [resource("docker:index/remoteImage:RemoteImage", "luna-image", {"name": "redis:7.4.1"})],
        "luna-image",
    ),
    "prod-data-protected": (
        [resource("kubernetes:core/v1:PersistentVolumeClaim", "luna-database-data", {})],
        "luna-database-data",
    ),
    "log-retention-bound": (
        [configmap("luna-es-setup", {"es-setup.sh": ilm("luna-logs", "90d")})],
        "luna-es-setup",
    ),
    "phi-network-isolation": (
        [
            resource(NETWORK, "luna-net-cache", {"name": "luna-prod-cache", "internal": False}),
            container("cache", networksAdvanced=[{"name": "luna-prod-cache"}]),
        ],
        "luna-cache",
    ),
    "no-superuser-client": (
        [database(), deployment("exporter", env=[{"name": "DATA_SOURCE_USER", "value": "luna"}])],
        "luna-exporter",
    ),
    "database-audit-logging": ([database()], "luna-database"),
    "audit-retention": (
        [configmap("luna-es-setup", {"s.sh": ilm("luna-logs", "30d") + ilm("luna-audit", "365d")})],
        "luna-es-setup",
    ),
    "offsite-backup": ([database("staging")], "luna-database"),
    "restore-drill-scheduled": ([database("staging")], "luna-database"),
    "paging-receiver": ([configmap("luna-alertmanager", {"am.yml": AM_NULL})], None),
    "alert-routes": (
        [configmap("luna-rules", {"r.yml": RULES}), configmap("luna-am", {"am.yml": AM_NULL})],
        "luna-rules",
    ),
}

# Evidence each capability-dependent policy must recognise once the capability lands.
SATISFIED: dict[str, list[dict[str, Any]]] = {
    "database-audit-logging": [
        database(
            command=[
                "postgres",
                "-c",
                "shared_preload_libraries=pgaudit",
                "-c",
                "pgaudit.log=write,ddl",
            ]
        ),
    ],
    "audit-retention": [
        configmap("luna-es-setup", {"s.sh": ilm("luna-logs", "30d") + ilm("luna-audit", "2190d")})
    ],
    "offsite-backup": [
        database("staging"),
        configmap("luna-pgbackrest", {"pgbackrest.conf": "[global]\nrepo1-type=s3\n"}, "staging"),
    ],
    "restore-drill-scheduled": [
        database("staging"),
        deployment("restore-drill", stack="staging", typ="kubernetes:batch/v1:CronJob"),
    ],
    "paging-receiver": [configmap("luna-alertmanager", {"am.yml": AM_PAGER})],
    "alert-routes": [
        configmap("luna-rules", {"r.yml": RULES}),
        configmap("luna-am", {"a": AM_PAGER}),
    ],
    "no-superuser-client": [
        database(),
        deployment("exporter", env=[{"name": "DATA_SOURCE_USER", "value": "luna_monitor"}]),
    ],
}

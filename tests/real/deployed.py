"""What a rendered stack deploys and who can reach whom, per platform.

Docker: a service name is a network alias; a container resolves the aliases
of the networks it joins (Docker's embedded DNS). Kubernetes: a service name
is a Service in the stack's namespace, resolvable from every pod there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from infra.mocks import unwrap
from tests.real.support import RenderedStack

__all__ = ["env_of", "reachable", "service_names", "url_hosts"]

DOCKER = "docker:index/container:Container"
K8S_SERVICE = "kubernetes:core/v1:Service"
LOOPBACK = {"127.0.0.1", "localhost"}

_URL_HOST = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^@/\s\"']*@)?([A-Za-z0-9_.-]+)")


def url_hosts(text: str) -> set[str]:
    return set(_URL_HOST.findall(text))


_ADMIT = re.compile(r"docker network connect ((?:--alias \S+ )+)(\S+) ")


def admitted(stack: RenderedStack) -> list[tuple[str, set[str]]]:
    """``(network, aliases)`` an admission gate grants healthy replicas
    (components/platforms/docker/gate.py): they join under the service's name."""
    return [
        (network, set(aliases.split()) - {"--alias"})
        for job in stack.records("command:local:Command")
        for aliases, network in _ADMIT.findall(job["create"])
    ]


def service_names(stack: RenderedStack) -> set[str]:
    if stack.platform == "docker":
        return {
            alias
            for c in stack.records(DOCKER)
            for net in c.get("networksAdvanced") or []
            for alias in net.get("aliases") or []
        } | {a for _, aliases in admitted(stack) for a in aliases}
    names = {s["metadata"]["name"] for s in stack.records(K8S_SERVICE)}
    # The CloudNativePG operator creates <cluster>-rw, -ro and -r for every Cluster
    # (cloudnative-pg pkg/specs/services.go).
    for cluster in stack.records("kubernetes:postgresql.cnpg.io/v1:Cluster"):
        names |= {f"{cluster['metadata']['name']}-{s}" for s in ("rw", "ro", "r")}
    return names


def reachable(stack: RenderedStack, consumer: str) -> set[str]:
    """Names the service ``consumer`` can resolve (itself and loopback included)."""
    if stack.platform != "docker":
        return service_names(stack) | LOOPBACK
    containers = stack.records(DOCKER)
    own = [c for c in containers if c.get("hostname") == consumer]
    networks = {n["name"] for c in own for n in c.get("networksAdvanced") or []}
    for job in stack.records("command:local:Command"):
        # A one-shot job joins its networks with `--network` / `docker network connect`.
        if f" --name luna-{stack.stack}-{consumer} " in job["create"]:
            own.append(job)
            networks |= set(
                re.findall(r"(?:--network|docker network connect) (\S+)", job["create"])
            )
    assert own, f"{stack.stack}: no container for service {consumer!r}"
    names = {consumer, *LOOPBACK}
    for c in containers:
        for net in c.get("networksAdvanced") or []:
            if net["name"] in networks:
                names.update(net.get("aliases") or [])
    for network, aliases in admitted(stack):
        if network in networks:
            names |= aliases
    return names


def _walk_env(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        if set(value) >= {"name", "value"} and isinstance(value["value"], str):
            yield value["name"], value["value"]
        for v in value.values():
            yield from _walk_env(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_env(v)


def env_of(stack: RenderedStack) -> dict[str, dict[str, str]]:
    """service → environment (secrets in clear), plus its args under ``"<args>"``."""
    result: dict[str, dict[str, str]] = {}
    if stack.platform == "docker":
        for c in stack.records(DOCKER):
            env = dict(e.split("=", 1) for e in c.get("envs") or [])
            env["<args>"] = " ".join([*(c.get("entrypoints") or []), *(c.get("command") or [])])
            result[c["hostname"]] = env
        for r in stack.rendered.monitor.records.values():
            if r.type != "command:local:Command":
                continue
            # A one-shot job: plain variables in its script, secret ones in its environment.
            script = unwrap(r.inputs["create"])
            if "docker start --attach" not in script:
                continue  # the admission gate, live files, reload: no job
            name = re.search(r"docker create --name luna-[a-z]+-(\S+)", script)
            assert name, f"{r.name}: no container in its script"
            env = dict(re.findall(r"--env (\w+)=(\S+)", script))
            env.update(unwrap(r.inputs.get("environment") or {}))
            result[name.group(1)] = env
        return result
    for kind in ("Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet"):
        for r in stack.rendered.monitor.records.values():
            if r.type.endswith(f":{kind}") and r.type.startswith("kubernetes:"):
                inputs = stack.records(r.type)
                for obj in inputs:
                    name = obj["metadata"]["name"]
                    result[name] = dict(_walk_env(obj.get("spec")))
                break
    return result

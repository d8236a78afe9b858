"""A Mermaid diagram of what a render deploys, so the docs' diagrams cannot drift.

docs/platforms.md carries one per platform (``python -m infra.docs_config --write``).
What is drawn comes from the render alone:

- Docker: every container by component; a client joins the internal network
  of each service it talks to (``luna-<stack>-<service>``), which gives the
  arrows; host ports; which containers ship logs with the gelf driver.
- Kubernetes: every workload by component; the NetworkPolicies' ingress rules
  give the arrows; the LoadBalancer Service; the log collector DaemonSet.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from infra.mocks import unwrap
from infra.render import Rendered, autoscalers

__all__ = ["mermaid", "overview"]

_NAME = "app.kubernetes.io/name"
_COMPONENT = "app.kubernetes.io/component"
_SHAPES = {
    "service": '{id}(["{label}"])',
    "stateful": '{id}[("{label}")]',
    "job": '{id}[/"{label}"/]',
    "daemon": '{id}{{{{"{label}"}}}}',
}


def _id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name)


def _draw(
    nodes: dict[str, tuple[str, str, str]],
    edges: set[tuple[str, str, str]],
    extra: list[str],
) -> str:
    """nodes: name -> (component, shape, label); edges: (from, to, label)."""
    lines = ["flowchart LR"]
    by_component: dict[str, list[str]] = defaultdict(list)
    for name, (component, _, _) in sorted(nodes.items()):
        by_component[component].append(name)
    for component, names in sorted(by_component.items()):
        lines.append(f"  subgraph {_id('c_' + component)}[{component}]")
        for name in names:
            _, shape, label = nodes[name]
            lines.append("    " + _SHAPES[shape].format(id=_id(name), label=label))
        lines.append("  end")
    lines += extra
    for source, target, label in sorted(edges):
        arrow = f"-. {label} .->" if label else "-->"
        lines.append(f"  {_id(source)} {arrow} {_id(target)}")
    return "\n".join(lines)


_COMPONENTS = {
    "luna:components:LunaApp": "app",
    "luna:components:Database": "database",
    "luna:components:Logging": "logging",
    "luna:components:Monitoring": "monitoring",
    "luna:components:Cache": "cache",
    "luna:components:ReverseProxy": "proxy",
}
"""A component's type token -> the ``com.luna.component`` its containers carry."""


Graph = tuple[dict[str, tuple[str, str, str]], set[tuple[str, str, str]], list[str]]


def _docker(rendered: Rendered, stack: str) -> str:
    return _draw(*_docker_graph(rendered, stack))


def _docker_graph(rendered: Rendered, stack: str) -> Graph:
    """Containers (name -> component, shape, label), their flows, and host ports."""
    nodes: dict[str, tuple[str, str, str]] = {}
    edges: set[tuple[str, str, str]] = set()
    extra: list[str] = []
    members: list[tuple[str, dict[str, Any]]] = []
    count: dict[str, int] = defaultdict(int)
    prefix = f"luna-{stack}-"
    for rec in rendered.monitor.records.values():
        if rec.type == "command:local:Command":
            # A one-shot job: its script names the container and the networks it joins.
            script = str(unwrap(rec.inputs.get("create") or ""))
            name = re.search(rf"docker create --name {prefix}(\S+)", script)
            if name:
                service = name.group(1)
                component = _COMPONENTS.get(rec.urn.split("::")[2].split("$")[0], "luna")
                nets = re.findall(r"(?:--network|network connect) (\S+)", script)
                members.append((service, {"networksAdvanced": [{"name": n} for n in nets]}))
                nodes[service] = (component, "job", service)
            continue
        if rec.type != "docker:index/container:Container":
            continue
        inputs = unwrap(rec.inputs)
        labels = {x["label"]: x["value"] for x in inputs.get("labels") or []}
        service = labels["com.luna.service"]
        members.append((service, inputs))
        one_shot = inputs.get("restart", "no") == "no"
        count[service] += 1
        label = f"{service} x{count[service]}" if count[service] > 1 else service
        nodes[service] = (labels["com.luna.component"], "job" if one_shot else "service", label)
    for service, inputs in members:
        for network in inputs.get("networksAdvanced") or []:
            target = str(network["name"]).removeprefix(prefix)
            if target != service and target in nodes:
                edges.add((service, target, ""))
        for port in inputs.get("ports") or []:
            where = "host" if port.get("ip", "0.0.0.0") == "0.0.0.0" else "host loopback"  # noqa: S104
            extra.append(f"  {_id(where)}(({where}))")
            edges.add((where, service, f":{int(port['external'])}"))
        if inputs.get("logDriver") == "gelf" and "logstash" in nodes:
            edges.add((service, "logstash", "logs"))
    return nodes, edges, sorted(set(extra))


def overview(rendered: Rendered, stack: str) -> str:
    """The README's picture: Luna's components and who talks to whom, from a Docker
    render's containers and networks (the per-platform diagrams show every piece)."""
    nodes, edges, _ = _docker_graph(rendered, stack)
    component = {name: node[0] for name, node in nodes.items()}
    members: dict[str, list[str]] = defaultdict(list)
    for name, (comp, shape, _) in sorted(nodes.items()):
        members[comp].append(name + (" (job)" if shape == "job" else ""))
    lines = ["flowchart LR", "  users((users))"]
    for comp, names in sorted(members.items()):
        lines.append(f'  {_id(comp)}["{comp}<br/>{"<br/>".join(names)}"]')
    flows: set[tuple[str, str, str]] = set()
    for source, target, label in edges:
        if source == "host" and target in component:
            flows.add(("users", component[target], label))
        elif source in component and target in component:
            a, b = component[source], component[target]
            if a != b:
                flows.add((a, b, label))
    for a, b, label in sorted(flows):
        arrow = f"-. {label} .->" if label else "-->"
        lines.append(f"  {_id(a)} {arrow} {_id(b)}")
    return "\n".join(lines)


def _kubernetes(rendered: Rendered) -> str:
    nodes: dict[str, tuple[str, str, str]] = {}
    edges: set[tuple[str, str, str]] = set()
    extra: list[str] = []
    shapes = {"Deployment": "service", "StatefulSet": "stateful", "Job": "job"}
    shapes |= {"CronJob": "job", "DaemonSet": "daemon"}
    # CloudNativePG's objects: the operator makes the pods and the base-backup Jobs.
    shapes |= {"Cluster": "stateful", "ScheduledBackup": "job"}
    manifests = rendered.manifests()
    hpa = autoscalers(manifests)
    for obj in manifests:
        kind, labels = obj["kind"], obj["metadata"].get("labels") or {}
        if kind not in shapes:
            continue
        name = labels[_NAME]
        if kind == "ScheduledBackup":
            # It carries its cluster's labels; drawn apart from the cluster it backs up.
            name = obj["metadata"]["name"]
        label = f"{name} ({kind})"
        if kind == "Cluster":
            label = f"{name} x{obj['spec']['instances']} (Cluster)"
        if obj["metadata"]["name"] in hpa:
            scale = hpa[obj["metadata"]["name"]]
            label = f"{name} x{scale['minReplicas']}-{scale['maxReplicas']} (HPA)"
        elif kind in ("Deployment", "StatefulSet") and obj["spec"].get("replicas", 1) > 1:
            label = f"{name} x{obj['spec']['replicas']}"
        nodes[name] = (labels.get(_COMPONENT, name), shapes[kind], label)
    for obj in manifests:
        if obj["kind"] == "NetworkPolicy":
            target = (obj["spec"].get("podSelector") or {}).get("matchLabels", {}).get(_NAME)
            for rule in obj["spec"].get("ingress") or []:
                for peer in rule.get("from") or []:
                    source = (peer.get("podSelector") or {}).get("matchLabels", {}).get(_NAME)
                    if source in nodes and target in nodes and source != target:
                        edges.add((source, target, ""))
        if obj["kind"] == "Service" and obj["spec"].get("type") == "LoadBalancer":
            target = obj["spec"]["selector"][_NAME]
            ports = ", ".join(f":{int(p['port'])}" for p in obj["spec"]["ports"])
            extra.append("  internet((internet))")
            edges.add(("internet", target, f"LoadBalancer {ports}"))
    for name, (_, shape, _) in nodes.items():
        if shape == "daemon":
            extra.append("  pods((every pod's stdout))")
            edges.add(("pods", name, "logs"))
    return _draw(nodes, edges, sorted(set(extra)))


def mermaid(rendered: Rendered, platform: str, stack: str) -> str:
    """The render as a Mermaid flowchart (without the code fence)."""
    return _docker(rendered, stack) if platform == "docker" else _kubernetes(rendered)

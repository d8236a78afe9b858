"""A stand-in Kubernetes API server that serves a render's manifests, for the real kubectl.

No API server runs here (../shared/FACTS.md). The docs' ``kubectl`` commands run with
the real kubectl against this stand-in instead, so kubectl itself parses every flag
and resource name; the stand-in answers what an API server holding the rendered
objects would answer. Its responses follow the API reference (kubernetes.io/docs/
reference/using-api/api-concepts/: discovery at ``/api``, ``/apis`` and
``/apis/<group>/<version>``; ``GET`` of an object or a list, ``labelSelector``; a
``Status`` with code 404 for an object that does not exist). It serves what kubectl
accepts as legacy (unaggregated) discovery and plain JSON objects, not Tables.

Besides the manifests it serves the pods CloudNativePG creates for each ``Cluster``
(cloudnative-pg ``pkg/specs/pods.go``: ``<cluster>-<serial>``, serials from 1; labels
from ``pkg/utils/labels_annotations.go``: ``cnpg.io/cluster``, ``cnpg.io/instanceName``,
``cnpg.io/instanceRole``), since the runbooks look at those.

``kubectl cnpg`` is a kubectl plugin (a ``kubectl-cnpg`` program on PATH, which kubectl
runs with the remaining arguments). :func:`cnpg_plugin` is its stand-in: the ``status
CLUSTER`` and ``promote CLUSTER INSTANCE`` commands with their flags (cloudnative-pg
``internal/cmd/plugin/status/cmd.go``: ``-v/--verbose``, ``-o/--output text|json``;
``internal/cmd/plugin/promote/cmd.go``: two arguments, a bare number meaning
``CLUSTER-<n>``), plus kubectl's ``-n/--namespace``, ``--context``, ``--kubeconfig``;
it reads the cluster and the instance from this API.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

__all__ = ["cnpg_plugin", "kubeconfig", "load_objects", "serve"]

Obj = dict[str, Any]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass"}  # fmt: skip


def _plural(kind: str) -> str:
    low = kind.lower()
    if low.endswith("y"):
        return low[:-1] + "ies"
    return low + ("es" if low.endswith(("s", "x")) else "s")


def _cnpg_pods(cluster: Obj) -> list[Obj]:
    name, ns = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    pods = []
    for serial in range(1, int(cluster["spec"].get("instances", 1)) + 1):
        instance = f"{name}-{serial}"
        role = "primary" if serial == 1 else "replica"
        labels = {"cnpg.io/cluster": name, "cnpg.io/instanceName": instance,
                  "cnpg.io/instanceRole": role, "role": role}  # fmt: skip
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": instance, "namespace": ns, "labels": labels,
                                  "creationTimestamp": "2026-12-01T00:00:00Z"},
                     "spec": {"containers": [{"name": "postgres"}]},
                     "status": {"phase": "Running"}})  # fmt: skip
    return pods


def load_objects(manifests: list[Obj]) -> list[Obj]:
    """The render's manifests, and the pods CloudNativePG would create for its Clusters."""
    objects = [o for o in manifests if o]
    objects += [p for o in objects if o.get("kind") == "Cluster" for p in _cnpg_pods(o)]
    return objects


def _group_version(obj: Obj) -> tuple[str, str]:
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    return group, version


def _discovery(objects: list[Obj]) -> dict[str, Obj]:
    resources: dict[str, dict[str, Obj]] = {}
    for o in objects:
        group, version = _group_version(o)
        gv = f"{group}/{version}" if group else version
        kind = o["kind"]
        resources.setdefault(gv, {})[kind] = {
            "name": _plural(kind), "singularName": kind.lower(), "kind": kind,
            "namespaced": kind not in CLUSTER_SCOPED, "verbs": ["get", "list"],
        }  # fmt: skip
    resources.setdefault("v1", {})
    paths: dict[str, Obj] = {
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
        "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
    }  # fmt: skip
    groups = []
    for gv, kinds in resources.items():
        path = f"/apis/{gv}" if "/" in gv else f"/api/{gv}"
        paths[path] = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                       "resources": list(kinds.values())}  # fmt: skip
        if "/" in gv:
            entry = {"groupVersion": gv, "version": gv.split("/")[1]}
            groups.append({"name": gv.split("/")[0], "versions": [entry],
                           "preferredVersion": entry})  # fmt: skip
    paths["/apis"] = {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    return paths


def _matches(obj: Obj, selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _answer(objects: list[Obj], discovery: dict[str, Obj], url: str) -> tuple[int, Obj]:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    if parts.path in discovery:
        return 200, discovery[parts.path]
    segs = parts.path.strip("/").split("/")
    gv = segs[1] if segs[0] == "api" else "/".join(segs[1:3])
    rest = segs[2:] if segs[0] == "api" else segs[3:]
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
    found = [o for o in objects
             if (f"{_group_version(o)[0]}/{_group_version(o)[1]}".lstrip("/")) == gv
             and _plural(o["kind"]) == plural
             and (namespace is None or o["metadata"].get("namespace") == namespace)]  # fmt: skip
    if name is not None:
        hit = next((o for o in found if o["metadata"]["name"] == name), None)
        if hit is None:
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "NotFound", "code": 404,
                         "message": f'{plural} "{name}" not found'}  # fmt: skip
        return 200, hit
    selector = parse_qs(parts.query).get("labelSelector", [""])[0]
    items = [o for o in found if _matches(o, selector)]
    kind = (items[0]["kind"] if items else plural.rstrip("s").capitalize()) + "List"
    return 200, {"kind": kind, "apiVersion": gv, "metadata": {}, "items": items}


@contextmanager
def serve(objects: list[Obj]) -> Iterator[str]:
    """The stand-in on 127.0.0.1 (plain HTTP), for the block's duration; yields its URL."""
    discovery = _discovery(objects)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, body = _answer(objects, discovery, self.path)
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(url: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": url}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "u"}}],
        "users": [{"name": "u", "user": {}}],
    })  # fmt: skip


def _get(server: str, path: str) -> Obj | None:
    try:
        with urllib.request.urlopen(server + path, timeout=10) as reply:  # noqa: S310 - our http URL
            body: Obj = json.load(reply)
            return body
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


def cnpg_plugin(argv: Sequence[str], server: str) -> tuple[int, str]:
    """The ``kubectl cnpg`` stand-in: (exit code, what it prints)."""
    args, namespace, positional = list(argv), "default", []
    flags = {"-v": 0, "--verbose": 0, "-o": 1, "--output": 1, "--context": 1, "--kubeconfig": 1}
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name in ("-n", "--namespace"):
            namespace = value if eq else args.pop(0)
        elif name.startswith("-"):
            if name not in flags:
                return 1, f"Error: unknown flag: {name}"
            if flags[name] and not eq:
                value = args.pop(0)
            if name in ("-o", "--output") and value not in ("text", "json"):
                return 1, f"Error: output {value!r}: one of text|json"
        else:
            positional.append(arg)
    want = {"status": 1, "promote": 2}
    if not positional or positional[0] not in want:
        return 1, f"Error: unknown command {positional[:1]} for kubectl-cnpg"
    command, rest = positional[0], positional[1:]
    if command == "status" and len(rest) != want[command]:
        return 1, f"Error: {command} requires {want[command]} argument(s), got {rest}"
    if command == "promote" and len(rest) != 2:
        return 1, f"Error: promote requires 2 argument(s), got {rest}"
    base = f"/apis/postgresql.cnpg.io/v1/namespaces/{namespace}/clusters/{rest[0]}"
    if _get(server, base) is None:
        return 1, f'Error: clusters.postgresql.cnpg.io "{rest[0]}" not found in {namespace}'
    if command == "status":
        return 0, f"Cluster Summary\nName: {namespace}/{rest[0]}"
    node = f"{rest[0]}-{rest[1]}" if rest[1].isdigit() else rest[1]
    if _get(server, f"/api/v1/namespaces/{namespace}/pods/{node}") is None:
        return 1, f'Error: pods "{node}" not found in {namespace}'
    return 0, f"{node} will be promoted (stand-in: nothing changed)"


def main() -> int:
    """``python -m tests.support.kube_api cnpg ARGS...``: the plugin, with ``LUNA_KUBE_API``."""
    import os

    if sys.argv[1:2] != ["cnpg"]:
        print("usage: python -m tests.support.kube_api cnpg ARGS...", file=sys.stderr)
        return 2
    code, text = cnpg_plugin(sys.argv[2:], os.environ["LUNA_KUBE_API"])
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())

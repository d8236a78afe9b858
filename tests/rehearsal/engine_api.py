"""The Docker Engine API calls the provider makes, over the daemon's unix socket.

The applier speaks the API rather than the CLI where the CLI would say
something else: ``docker create --health-cmd`` always makes a ``CMD-SHELL``
check, while the provider sends the program's ``["CMD", ...]`` as it is; the
provider sends ``NanoCpus``, ``Init``, ``Tmpfs`` and ``Mounts`` exactly as
below. :func:`create_body` is the body of ``ContainerCreate`` that
resourceDockerContainerCreate builds (kreuzwerker/terraform-provider-docker
v4.5.0, internal/provider/resource_docker_container_funcs.go): ``container.Config``
from env, command, entrypoint, user, labels, healthcheck (durations parsed with
Go's ``time.ParseDuration``), exposed ports; ``container.HostConfig`` from
restart, mounts, read_only, log_driver/log_opts, tmpfs, port bindings,
capabilities, security_opts, memory and memory_swap (MiB), cpus (NanoCPUs),
init.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any
from urllib.parse import quote

__all__ = ["EngineApi", "create_body", "go_nanoseconds"]

API = "/v1.41"
"""Docker 20.10's API version (Debian's docker.io)."""


def go_nanoseconds(text: str) -> int:
    """Go's ``time.ParseDuration`` for the forms the program writes (``1m30s``, ``5s``)."""
    parts = re.findall(r"(\d+)(h|ms|m|s)", text)
    if "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration the rehearsal parses: {text!r}")
    scale = {"h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6}
    return sum(int(n) * scale[u] for n, u in parts)


def _health(h: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not h:
        return None
    out: dict[str, Any] = {"Test": [str(t) for t in h.get("tests") or []]}
    for key, field in (("interval", "Interval"), ("timeout", "Timeout"),
                       ("startPeriod", "StartPeriod")):  # fmt: skip
        if h.get(key):
            out[field] = go_nanoseconds(str(h[key]))
    if h.get("retries"):
        out["Retries"] = int(h["retries"])
    return out


def create_body(
    i: Mapping[str, Any], image: str, *, publish_ip: Callable[[str], str] = lambda ip: ip
) -> dict[str, Any]:
    """The ContainerCreate body for the container inputs ``i`` (wire names).

    ``publish_ip`` maps each port binding's host address (the rehearsal's loopback rewrite).
    """
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in i.get("ports") or []:
        key = f"{p['internal']}/{p.get('protocol') or 'tcp'}"
        exposed[key] = {}
        host_ip = publish_ip(str(p.get("ip") or "0.0.0.0"))  # noqa: S104 - the schema default
        bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": str(p["external"])})
    caps = i.get("capabilities") or {}
    mounts = [
        {"Type": m["type"], "Source": m["source"], "Target": m["target"],
         "ReadOnly": bool(m.get("readOnly"))}
        for m in i.get("mounts") or []
    ]  # fmt: skip
    config: dict[str, Any] = {
        "Image": image,
        "Hostname": str(i.get("hostname") or ""),
        "Env": [str(e) for e in i.get("envs") or []],
        "Labels": {x["label"]: x["value"] for x in i.get("labels") or []},
        "User": str(i.get("user") or ""),
        "ExposedPorts": exposed or None,
        "Healthcheck": _health(i.get("healthcheck")),
    }
    if i.get("stopSignal"):  # d.GetOk("stop_signal") -> containerConfig.StopSignal
        config["StopSignal"] = str(i["stopSignal"])
    if i.get("command"):
        config["Cmd"] = [str(c) for c in i["command"]]
    if i.get("entrypoints"):
        config["Entrypoint"] = [str(c) for c in i["entrypoints"]]
    host: dict[str, Any] = {
        "RestartPolicy": {"Name": str(i.get("restart") or "no"),
                          "MaximumRetryCount": int(i.get("maxRetryCount") or 0)},
        "Mounts": mounts,
        "ReadonlyRootfs": bool(i.get("readOnly")),
        "LogConfig": {"Type": str(i.get("logDriver") or ""),
                      "Config": {k: str(v) for k, v in (i.get("logOpts") or {}).items()}},
        "Tmpfs": dict(i.get("tmpfs") or {}) or None,
        "PortBindings": bindings or None,
        "CapAdd": list(caps.get("adds") or []) or None,
        "CapDrop": list(caps.get("drops") or []) or None,
        "SecurityOpt": list(i.get("securityOpts") or []) or None,
        "Memory": int(i.get("memory") or 0) * 2**20,
        "MemorySwap": int(i.get("memorySwap") or 0) * 2**20 if int(i.get("memorySwap") or 0) > 0
        else int(i.get("memorySwap") or 0),
        "Init": bool(i.get("init")),
    }  # fmt: skip
    if i.get("cpus"):
        host["NanoCpus"] = round(Fraction(str(i["cpus"])) * 10**9)
    return {**config, "HostConfig": host}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class EngineApi:
    """``request(method, path, body)`` against the daemon; errors raise with its message."""

    def __init__(self, socket_path: str, *, timeout: float = 120) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> Any:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            if raw is not None:
                headers = {"Content-Type": "application/x-tar"}
                conn.request(method, API + path, body=raw, headers=headers)
            elif body is not None:
                data = json.dumps(body).encode()
                conn.request(method, API + path, body=data,
                             headers={"Content-Type": "application/json"})  # fmt: skip
            else:
                conn.request(method, API + path)
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
        finally:
            conn.close()
        if response.status >= 300:
            message = text
            with contextlib.suppress(ValueError):
                message = json.loads(text).get("message", text)
            raise RuntimeError(f"{method} {path}: {response.status} {message}")
        return json.loads(text) if text.strip() else None

    def create(self, name: str, body: Mapping[str, Any]) -> str:
        """ContainerCreate; the new container's ID."""
        return str(self.request("POST", f"/containers/create?name={quote(name)}", body)["Id"])

    def connect(self, network: str, cid: str, aliases: list[str]) -> None:
        body = {"Container": cid, "EndpointConfig": {"Aliases": aliases or None}}
        self.request("POST", f"/networks/{quote(network)}/connect", body)

    def disconnect(self, network: str, cid: str) -> None:
        self.request("POST", f"/networks/{quote(network)}/disconnect", {"Container": cid})

    def copy_to(self, cid: str, tar: bytes) -> None:
        """CopyToContainer into ``/``."""
        self.request("PUT", f"/containers/{cid}/archive?path=%2F", raw=tar)

    def start(self, cid: str) -> None:
        self.request("POST", f"/containers/{cid}/start")

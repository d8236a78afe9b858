"""The log pipeline loses nothing and does not feed on itself (parsed from the render).

No fluent-bit or Logstash runs here (neither is packaged in Debian 12), so the
rendered files are parsed: fluent-bit's ``Exclude_Path`` is a glob(3) list
(fluent-bit plugins/in_tail/tail_scan_glob.c matches it with fnmatch), which
Python's fnmatch reads the same way for ``*`` and ``?``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.real.conftest import FULL_STACKS, stack_id
from tests.real.support import RenderedStack
from tests.support.tools import need

FLUENT_BIT = "/fluent-bit/etc/fluent-bit.conf"
LOGSTASH_YML = "/usr/share/logstash/config/logstash.yml"
LOGGING_STACK = ("elasticsearch", "elasticsearch-setup", "logstash", "kibana", "log-collector")
CONTAINER_ID = "0123456789abcdef" * 4


@pytest.fixture(params=[(s, "kubernetes") for s in FULL_STACKS], ids=stack_id)
def kube(request: pytest.FixtureRequest, stacks: Callable[[str, str], RenderedStack]) -> Any:
    return stacks(*request.param)


def _section(conf: str, name: str) -> dict[str, str]:
    body = conf.split(f"[{name}]", 1)[1].split("\n[", 1)[0]
    pairs = (line.split(None, 1) for line in body.strip().splitlines() if line.strip())
    return {p[0]: p[1].strip() if len(p) > 1 else "" for p in pairs}


def _daemonset(stack: RenderedStack) -> dict[str, Any]:
    (ds,) = stack.records("kubernetes:apps/v1:DaemonSet")
    return ds


def test_collector_keeps_positions_and_buffers_on_disk(kube: RenderedStack) -> None:
    conf = kube.file("log-collector", FLUENT_BIT)
    service, tail, out = (_section(conf, s) for s in ("SERVICE", "INPUT", "OUTPUT"))
    pod = _daemonset(kube)["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def host_dir(path: str) -> str | None:
        """The node directory behind ``path`` in the collector, if it is a hostPath."""
        for mount_path, mount in mounts.items():
            if path.startswith(mount_path.rstrip("/") + "/") and not mount.get("readOnly"):
                host = volumes[mount["name"]].get("hostPath")
                return str(host["path"]) if host else None
        return None

    db, storage = tail["DB"], service["storage.path"]
    assert host_dir(db), f"{kube.stack}: read positions {db} are not on the node"
    assert host_dir(storage), f"{kube.stack}: the buffer {storage} is not on the node"
    assert kube.stack in str(host_dir(db)), f"{kube.stack}: stacks share {host_dir(db)}"
    assert tail.get("storage.type") == "filesystem", f"{kube.stack}: buffer in memory: {tail}"
    assert "Mem_Buf_Limit" not in tail, f"{kube.stack}: input pauses at {tail['Mem_Buf_Limit']}"
    assert out["Retry_Limit"] in ("no_limits", "False"), f"{kube.stack}: drops after retries"


def test_logging_stack_does_not_ship_its_own_logs(kube: RenderedStack) -> None:
    tail = _section(kube.file("log-collector", FLUENT_BIT), "INPUT")
    namespace = f"luna-{kube.stack}"
    excluded = tail.get("Exclude_Path", "").split(",")

    def read(pod: str, container: str) -> bool:
        path = f"/var/log/containers/{pod}_{namespace}_{container}-{CONTAINER_ID}.log"
        return fnmatch.fnmatchcase(path, tail["Path"]) and not any(
            fnmatch.fnmatchcase(path, e) for e in excluded if e
        )

    shipped = [c for c in LOGGING_STACK if read(f"{c}-0", c)]
    assert not shipped, f"{kube.stack}: the collector ships {shipped} into the logging stack"
    for container in ("app", "database", "proxy", "cache", "elasticsearch-exporter"):
        assert read(f"{container}-7d9f-x2", container), f"{kube.stack}: {container} not read"
    other = f"/var/log/containers/app-1_luna-dev_app-{CONTAINER_ID}.log"
    assert not fnmatch.fnmatchcase(other, tail["Path"]), f"{kube.stack}: reads another stack"


@pytest.mark.parametrize("platform", ["docker", "kubernetes"])
@pytest.mark.parametrize("name", FULL_STACKS)
def test_logstash_queue_is_persisted_on_a_volume(
    name: str, platform: str, stacks: Callable[[str, str], RenderedStack]
) -> None:
    stack = stacks(name, platform)
    settings = yaml.safe_load(stack.file("logstash", LOGSTASH_YML))
    assert settings["queue.type"] == "persisted", settings
    queue = settings["path.queue"]
    if platform == "docker":
        (ls,) = [
            c
            for c in stack.records("docker:index/container:Container")
            if c["hostname"] == "logstash"
        ]
        targets = [m["target"] for m in ls.get("mounts") or [] if m.get("type") == "volume"]
    else:
        (sts,) = [
            s
            for s in stack.records("kubernetes:apps/v1:StatefulSet")
            if s["spec"]["serviceName"] == "logstash"
        ]
        pod = sts["spec"]["template"]["spec"]
        claims = {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        targets = [
            m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m["name"] in claims
        ]
    assert any(queue.startswith(t.rstrip("/") + "/") for t in targets), (
        f"{name}/{platform}: queue {queue} is not on a volume ({targets})"
    )
    assert re.fullmatch(r"\d+[kmg]b", settings["queue.max_bytes"]), settings


@pytest.mark.parametrize("platform", ["docker", "kubernetes"])
def test_slow_queries_come_from_pg_stat_statements(
    platform: str, stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> None:
    stack = stacks("prod", platform)
    exporter = stack.records(
        "docker:index/container:Container"
        if platform == "docker"
        else "kubernetes:apps/v1:Deployment"
    )
    text = json.dumps([r for r in exporter if "postgres-exporter" in json.dumps(r)])
    assert "--collector.stat_statements" in text, (
        f"{platform}: the exporter skips pg_stat_statements"
    )
    dashboard = json.loads(stack.file("grafana", "/etc/grafana/dashboards/luna-overview.json"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    slow = [e for e in exprs if "pg_stat_statements_seconds_total" in e]
    assert slow, f"{platform}: no Grafana panel reads pg_stat_statements"
    # promtool parses the panel's PromQL as it would a recording rule's.
    rules = tmp_path / "panel.yml"
    rules.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "panel", "rules": [{"record": "luna:slow", "expr": slow[0]}]}]}
        )
    )
    result = subprocess.run(
        [need("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"promtool: {result.stdout}{result.stderr}"

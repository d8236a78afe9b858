"""Logstash, Elasticsearch setup and Grafana provisioning: parsed and checked (no daemons here).

The redaction itself is tested in test_redaction.py, with Logstash's string
handling modelled and Ruby's regexp engine running the patterns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
import yaml

from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.deployed import env_of, service_names, url_hosts
from tests.real.support import RenderedStack

PIPELINE = "/usr/share/logstash/pipeline/logstash.conf"
ES_SETUP = "/opt/luna/es-setup.sh"
DATASOURCES = "/etc/grafana/provisioning/datasources/luna.yaml"
PROVIDERS = "/etc/grafana/provisioning/dashboards/luna.yaml"
DASHBOARD = "/etc/grafana/dashboards/luna-overview.json"


@pytest.fixture(params=FULL_STACK_PARAMS, ids=stack_id)
def stack(
    request: pytest.FixtureRequest, stacks: Callable[[str, str], RenderedStack]
) -> RenderedStack:
    return stacks(*request.param)


def test_gelf_input_matches_the_log_shippers(stack: RenderedStack) -> None:
    pipeline = stack.file("logstash", PIPELINE)
    gelf = re.search(r"gelf\s*\{(.*?)\}", pipeline, re.S)
    assert gelf, f"{stack.stack}: no gelf input"
    port = int(re.search(r"port\s*=>\s*(\d+)", gelf.group(1)).group(1))  # type: ignore[union-attr]
    udp = re.search(r"use_udp\s*=>\s*true", gelf.group(1)) is not None
    tcp = re.search(r"use_tcp\s*=>\s*true", gelf.group(1)) is not None
    if stack.platform == "docker":
        # The daemon's gelf driver sends UDP to the host loopback, where Logstash publishes.
        containers = stack.records("docker:index/container:Container")
        addresses = {
            c["logOpts"]["gelf-address"] for c in containers if c.get("logDriver") == "gelf"
        }
        assert addresses == {f"udp://127.0.0.1:{port}"}, f"{stack.stack}: shippers {addresses}"
        assert udp, f"{stack.stack}: Logstash does not listen on UDP"
        (logstash,) = [c for c in containers if c["hostname"] == "logstash"]
        published = {
            (p["ip"], p["external"], p["internal"], p["protocol"])
            for p in logstash.get("ports") or []
        }
        assert ("127.0.0.1", port, port, "udp") in published, f"{stack.stack}: {published}"
    else:
        conf = stack.file("log-collector", "/fluent-bit/etc/fluent-bit.conf")
        output = conf[conf.index("[OUTPUT]") :]
        assert re.search(r"Name\s+gelf", output), f"{stack.stack}: fluent-bit output {output}"
        assert re.search(rf"Port\s+{port}\b", output), f"{stack.stack}: not port {port}"
        assert re.search(r"Host\s+logstash\b", output), f"{stack.stack}: not to logstash"
        assert tcp and re.search(r"Mode\s+tcp", output), f"{stack.stack}: protocol mismatch"


def test_elasticsearch_output_uses_secret_credentials_and_stack_indices(
    stack: RenderedStack,
) -> None:
    pipeline = stack.file("logstash", PIPELINE)
    output = pipeline[pipeline.index("output {") :]
    user = re.search(r'user\s*=>\s*"([^"]+)"', output)
    password = re.search(r'password\s*=>\s*"\$\{(\w+)\}"', output)
    index = re.search(r'index\s*=>\s*"([^"]+)"', output)
    assert user and password and index, f"{stack.stack}: output lacks user/password/index"
    assert re.fullmatch(
        rf"luna-{stack.stack}-%\{{\[@metadata\]\[index\]\}}-%\{{\+YYYY\.MM\.dd\}}", index.group(1)
    ), f"{stack.stack}: index {index.group(1)}"
    assert "elasticsearch" in url_hosts(output) and url_hosts(output) <= service_names(stack)
    if stack.platform == "docker":
        # (On Kubernetes the variable comes from a Secret reference, checked by tests/.)
        env = env_of(stack)
        secret = env["logstash"].get(password.group(1))
        # The variable is set, from the same generated password es-setup gives the user.
        assert secret and secret == env["elasticsearch-setup"]["LOGSTASH_PASSWORD"], stack.stack
        assert secret.startswith("mock-password-"), f"{stack.stack}: not a generated password"
    assert password.group(1) not in pipeline.replace("${" + password.group(1) + "}", ""), (
        f"{stack.stack}: the password appears in the pipeline"
    )
    setup = stack.file("elasticsearch-setup", ES_SETUP)
    assert f"/_security/user/{user.group(1)}" in setup, f"{stack.stack}: user never created"
    role = json.loads(re.search(r"luna_logs_writer '(\{.*?\})'\n", setup).group(1))  # type: ignore[union-attr]
    assert role["indices"][0]["names"] == [
        f"luna-{stack.stack}-logs-*",
        f"luna-{stack.stack}-audit-*",
    ], role
    assert "delete_index" not in role["indices"][0]["privileges"], role


def test_grafana_provisioning_points_at_the_deployed_prometheus(stack: RenderedStack) -> None:
    ds = yaml.safe_load(stack.file("grafana", DATASOURCES))["datasources"]
    assert [d["type"] for d in ds] == ["prometheus"], ds
    assert url_hosts(ds[0]["url"]) == {"prometheus"}, f"{stack.stack}: {ds[0]['url']}"
    assert "prometheus" in service_names(stack), f"{stack.stack}: no prometheus service"
    uid = ds[0]["uid"]
    providers = yaml.safe_load(stack.file("grafana", PROVIDERS))["providers"]
    folder = providers[0]["options"]["path"]
    assert DASHBOARD.startswith(folder + "/"), f"{stack.stack}: dashboard outside {folder}"
    dashboard = json.loads(stack.file("grafana", DASHBOARD))
    assert stack.stack in dashboard["title"], dashboard["title"]
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert uids == {uid}, f"{stack.stack}: panels use datasources {uids}, provisioned {uid}"
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for job in ("app", "crisis-probe", "postgres", "redis", "nginx"):
        assert f'job="{job}"' in exprs, f"{stack.stack}: dashboard has no {job} panel"

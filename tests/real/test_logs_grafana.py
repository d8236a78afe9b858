"""Logstash, Elasticsearch setup and Grafana provisioning: parsed and checked (no daemons here).

The redaction test applies the gsub patterns taken from the rendered pipeline
(Ruby string literals decoded; the patterns use only syntax Ruby's Onigmo
and Python's ``re`` read the same way) to sample log lines.
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

PERSONAL = [
    "login failed for jane.doe+therapy@example.com",
    "contact: Mary_O'Neil@mail.example.co.uk, backup j.smith@clinic.org",
    "crisis callback requested at 555-123-4567",
    "callback (555) 123-4567 or 555.123.4567 or 5551234567",
    "US +1 555 123 4567 / +1-555-123-4567",
    "UK +44 20 7946 0958, DE +49 30 901820",
    "FR +33 6 12 34 56 78, AU +61 2 9374 4000, IE +353 1 234 5678, JP +81 3-1234-5678",
]
SECRET_BITS = [
    "jane.doe+therapy@example.com",
    "Mary_O'Neil@mail.example.co.uk",
    "j.smith@clinic.org",
    "123-4567",
    "123 4567",
    "7946 0958",
    "901820",
    "12 34 56 78",
    "9374 4000",
    "234 5678",
    "1234-5678",
    "5551234567",
    "555.123.4567",
]
# Operational detail that must survive redaction.
KEEP = [
    "2026-01-15T10:42:07.123Z",
    "2026-01-15 10:42:07 +0200",
    "POST /api/journal 503 in 1234ms",
    "status=200 duration=0.532s bytes=5120",
    "request_id=123e4567-e89b-12d3-a456-426614174000",
    "trace=550e8400-e29b-41d4-a716-446655440000 span=00f067aa0ba902b7",
    "user 4821 mood=7 upstream=10.0.3.12:3000",
    "epoch_ms=1768473727123",
]


def _ruby_string(literal: str) -> str:
    assert literal.startswith('"') and literal.endswith('"'), literal
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def redactions(pipeline: str) -> list[tuple[re.Pattern[str], str]]:
    block = re.search(r"gsub\s*=>\s*\[(.*?)\n\s*\]", pipeline, re.S)
    assert block, "no gsub in the pipeline"
    triples = re.findall(r'"message",\s*("(?:[^"\\]|\\.)*"),\s*("(?:[^"\\]|\\.)*")', block.group(1))
    assert triples, "gsub has no message patterns"
    return [(re.compile(_ruby_string(rx)), _ruby_string(repl)) for rx, repl in triples]


def redact(pipeline: str, message: str) -> str:
    for pattern, replacement in redactions(pipeline):
        message = pattern.sub(replacement, message)
    return message


@pytest.fixture(params=FULL_STACK_PARAMS, ids=stack_id)
def stack(
    request: pytest.FixtureRequest, stacks: Callable[[str, str], RenderedStack]
) -> RenderedStack:
    return stacks(*request.param)


def test_pipeline_redacts_emails_and_phone_numbers(stack: RenderedStack) -> None:
    pipeline = stack.file("logstash", PIPELINE)
    # The filter runs before the output, on every event.
    assert pipeline.index("filter {") < pipeline.index("output {"), stack.stack
    for line in PERSONAL:
        out = redact(pipeline, line)
        leaked = [bit for bit in SECRET_BITS if bit in out]
        assert not leaked, f"{stack.stack}: {PIPELINE} leaks {leaked} in {out!r}"
        assert "redacted]" in out, f"{stack.stack}: nothing redacted in {line!r}"
    for line in KEEP:
        assert redact(pipeline, line) == line, (
            f"{stack.stack}: {PIPELINE} mangles {line!r} into {redact(pipeline, line)!r}"
        )


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
    assert re.fullmatch(rf"luna-{stack.stack}-logs-%\{{\+YYYY\.MM\.dd\}}", index.group(1)), (
        f"{stack.stack}: index {index.group(1)}"
    )
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
    assert role["indices"][0]["names"] == [f"luna-{stack.stack}-logs-*"], role
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

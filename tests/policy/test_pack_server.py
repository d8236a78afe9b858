"""The pack as the Pulumi CLI starts it: ``python -u -m pulumi.policy <engine> .`` in
the pack's directory (pulumi/pulumi sdk/python/dist/pulumi-analyzer-policy-python),
which prints its gRPC port; the CLI then calls the Analyzer service on it."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc

from policy.luna_policies import POLICIES
from tests.support.tools import REPO


@pytest.mark.slow
def test_cli_started_pack_serves_every_policy_and_blocks_a_violation() -> None:
    with subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=REPO / "policy",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        try:
            _exercise(server)
        finally:
            server.terminate()


def _exercise(server: subprocess.Popen[str]) -> None:
    assert server.stdout is not None
    port = int(server.stdout.readline().strip())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
        served = {p.name: p for p in info.policies}
        assert sorted(served) == sorted(p.name for p in POLICIES)
        assert all(p.framework.reference for p in served.values())
        props = struct_pb2.Struct()
        json_format.ParseDict(
            {
                "labels": [{"label": "com.luna.service", "value": "app"}],
                "privileged": True,
                "user": "1001:1001",
                "capabilities": {"drops": ["ALL"]},
                "securityOpts": ["no-new-privileges:true"],
                "readOnly": True,
            },
            props,
        )
        urn = "urn:pulumi:prod::luna::docker:index/container:Container::luna-app-web-0"
        answer = stub.Analyze(
            proto.AnalyzeRequest(
                type="docker:index/container:Container",
                properties=props,
                urn=urn,
                name="luna-app-web-0",
            ),
            timeout=30,
        )
    found = [(d.policyName, d.enforcementLevel) for d in answer.diagnostics]
    assert ("container-hardening", proto.MANDATORY) in found, json.dumps(str(found))
    print(f"pack served {len(served)} policies on port {port}; violation: {found}")

"""A render imports the SDK of its own platform only (scripts/render_cost.py measures the cost)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import REPO

_PROBE = """
import sys
from infra.render import main
code = main(["--stack", "prod", "--config", "platform={platform}", "--out", sys.argv[1]])
print(sorted({{m.split(".")[0] for m in sys.modules if m.startswith("pulumi_")}}))
sys.exit(code)
"""
_FOREIGN = {"docker": "pulumi_kubernetes", "kubernetes": "pulumi_docker"}


@pytest.mark.slow  # a fresh interpreter per platform, to see what it imports
@pytest.mark.parametrize("platform", ["docker", "kubernetes"])
def test_a_render_imports_only_its_platform_sdk(platform: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(platform=platform), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sdks = json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"'))
    assert _FOREIGN[platform] not in sdks, f"a {platform} render imported {sdks}"
    # Every stack has its internal CA (components/certificates.py): the TLS SDK is its own.
    assert "pulumi_tls" in sdks, f"prod on {platform} has no internal CA: {sdks}"
    print(f"\nprod on {platform} imports {sdks}")


def test_the_cost_script_finds_the_sdk_modules_of_each_type_token() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import render_cost
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert render_cost._module("kubernetes:apps/v1:Deployment") == "pulumi_kubernetes.apps.v1"
    assert (
        render_cost._module("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        == "pulumi_kubernetes.networking.v1"
    )
    assert render_cost._module("docker:index/container:Container") == "pulumi_docker"
    assert render_cost._module("pulumi:providers:kubernetes") == "pulumi_kubernetes.provider"
    assert (
        render_cost._module("kubernetes:postgresql.cnpg.io/v1:Cluster")
        == "pulumi_kubernetes.apiextensions.CustomResource"
    )
    assert render_cost._module("command:local:Command") == "pulumi_command.local"
    assert render_cost._module("random:index/randomPassword:RandomPassword") == "pulumi_random"


@pytest.mark.slow  # about 15 s: per platform a probe render, 3 importers, a full render
def test_prod_renders_cost_at_most_1_3x_their_sdk_imports() -> None:
    """The issue's bound (#15), measured by the script the README gives."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "render_cost.py"), "--runs", "3", "--max", "1.3"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    ratios = dict(re.findall(r"^prod on (\w+): .*? ratio ([\d.]+)x", proc.stdout, re.M))
    print(f"\n{proc.stdout}")
    assert set(ratios) == {"docker", "kubernetes"}, proc.stdout + proc.stderr
    assert proc.returncode == 0, f"render cost above 1.3x: {ratios} ({proc.stderr.strip()})"

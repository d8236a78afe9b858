"""The offline render as a user runs it: `python -m infra.render --stack S --out DIR`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import REPO

FIELDS = {"urn", "type", "name", "parent", "dependencies", "protect", "retain_on_delete", "inputs"}


# Each is a whole program in a subprocess (3-6 s): dev keeps the CLI in the fast
# suite; staging and prod run with the slow tests (CI runs both).
@pytest.mark.parametrize(
    "stack",
    [
        "dev",
        pytest.param("staging", marks=pytest.mark.slow),
        pytest.param("prod", marks=pytest.mark.slow),
    ],
)
def test_render_cli_writes_resources_and_files(stack: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.render", "--stack", stack, "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{stack}: {proc.stderr}"
    resources = json.loads((tmp_path / "resources.json").read_text())
    for entry in resources:
        assert set(entry) >= FIELDS, f"{entry.get('name')} lacks {FIELDS - set(entry)}"
    text = (tmp_path / "resources.json").read_text()
    assert "3000.0" not in text, "numbers must be ints, not floats"
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    assert outputs["database_url"] == "[secret]", outputs
    if stack != "dev":
        assert list(tmp_path.glob("files/**/nginx.conf")), f"{stack}: no nginx.conf"
        assert list(tmp_path.glob("files/**/logstash.conf")), f"{stack}: no logstash pipeline"
        assert list(tmp_path.glob("files/**/luna-overview.json")), f"{stack}: no dashboard"

"""The demo app honours the app contract (docs/app-contract.md), run for real on loopback.

The same server is every app replica of tests/real (support.start_standin), and
the pipeline's smoke and crisis checks pass against it behind the rendered nginx
(test_nginx.py). Its Dockerfile is checked here by checkov's dockerfile framework;
test_demo_image.py builds the image with a real Docker daemon and runs it, on a
stand-in of the base image (no registry here to pull the official one from).
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from components.app import APP_PORT, APP_UID, node_http_check
from tests.real.support import start_standin
from tests.support.tools import REPO, need

pytestmark = pytest.mark.slow

DEMO = REPO / "demo-app"


def _get(port: int, path: str) -> tuple[int, str, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo-app installed as its Dockerfile does: `npm ci --omit=dev --offline`."""
    folder = tmp_path_factory.mktemp("demo") / "app"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("node_modules"))
    proc = subprocess.run(
        [need("npm"), "ci", "--omit=dev", "--offline", "--no-audit", "--no-fund"],
        cwd=folder, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"npm ci failed: {proc.stderr}"
    return folder


def _migrate(folder: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    """The contract's migrate command, as components/app.py runs it."""
    return subprocess.run(
        [need("npx"), "--no-install", "prisma", "migrate", "deploy"],
        cwd=folder, env={"PATH": str(Path(need("node")).parent), "DATABASE_URL": database_url,
                         "HOME": str(folder)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_unhealthy_until_migrated_then_health_crisis_and_metrics(
    installed: Path, tmp_path: Path
) -> None:
    url = f"file:{tmp_path / 'data' / 'dev.db'}"
    app = start_standin("demo-0", env={"DATABASE_URL": url})
    try:
        status, body, _ = _get(app.port, "/api/health")
        assert status == 503, f"health before the migration: {status} {body}"
        done = _migrate(installed, url)
        assert done.returncode == 0, f"migrate: {done.stdout}{done.stderr}"
        status, body, headers = _get(app.port, "/api/health")
        assert status == 200 and json.loads(body)["status"] == "ok", body
        status, body, _ = _get(app.port, "/api/crisis/health")
        assert status == 200 and json.loads(body)["status"] == "ok", body
        status, body, _ = _get(app.port, "/journal?id=1")
        assert status == 200 and body.split()[:2] == ["demo-0", "0"], body
        status, metrics, headers = _get(app.port, "/api/metrics")
    finally:
        app.kill()
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), headers
    for name in ("http_requests_total", "http_request_duration_seconds_bucket"):
        assert re.search(rf"^{name}\{{", metrics, re.M), f"metrics lack {name}:\n{metrics}"
    assert re.search(r'route="/api/health",status="503"\} 1$', metrics, re.M), metrics
    lint = subprocess.run(
        [need("promtool"), "check", "metrics"], input=metrics,
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, f"promtool check metrics: {lint.stdout}{lint.stderr}"


def test_migrate_against_postgres_fails_when_the_server_is_unreachable(installed: Path) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        ok = _migrate(installed, f"postgresql://luna:x@127.0.0.1:{port}/luna")
        assert ok.returncode == 0, f"{ok.stdout}{ok.stderr}"
    refused = _migrate(installed, f"postgresql://luna:x@127.0.0.1:{port}/luna")
    assert refused.returncode != 0 and "ECONNREFUSED" in refused.stderr, refused.stderr
    wrong = subprocess.run(
        [need("npx"), "--no-install", "prisma", "db", "push"], cwd=installed,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert wrong.returncode != 0, "only `migrate deploy` is part of the contract"


def test_dockerfile_matches_the_contract_and_passes_checkov() -> None:
    text = (DEMO / "Dockerfile").read_text()
    assert re.search(rf"^USER {APP_UID}$", text, re.M), "the image must run as the contract's uid"
    assert f"EXPOSE {APP_PORT}" in text
    health = re.search(r"HEALTHCHECK .*?CMD (\[[^\n]*\])$", text, re.S | re.M)
    assert health, "no HEALTHCHECK"
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    health_path = declared["luna:healthPath"]["default"]
    assert tuple(json.loads(health.group(1))) == node_http_check(APP_PORT, health_path), (
        "the image's HEALTHCHECK differs from the check the platforms run"
    )
    server = (DEMO / "server.js").read_text()
    for key in ("healthPath", "crisisPath", "metricsPath"):
        default = declared[f"luna:{key}"]["default"]
        assert f"'{default}'" in server, f"the demo does not serve the default {key} {default}"
    proc = subprocess.run(
        [need("checkov"), "-f", str(DEMO / "Dockerfile"), "--framework", "dockerfile",
         "--skip-download", "--compact", "--quiet", "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [c["check_id"] for c in report["results"]["failed_checks"]]
    assert proc.returncode == 0 and not failed, f"checkov dockerfile failed: {failed}"
    print(f"\ncheckov dockerfile: {summary['passed']} passed, {summary['failed']} failed")

"""``python -m policy.check`` on real renders: clean ones pass on every stack and
platform, planted violations fail naming the resource, bad arguments exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc

from infra.render import write
from policy import capabilities
from policy.check import analyze, main, requests_from_render
from tests.conftest import PLATFORMS, STACKS, rendered
from tests.policy.support import by
from tests.support.tools import REPO


def render_dir(tmp_path: Path, stack: str, platform: str) -> Path:
    out = tmp_path / f"{stack}-{platform}"
    write(rendered(stack, platform), out)
    return out


def check(out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    code = main([str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out.splitlines()


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("stack", STACKS)
def test_clean_render_passes(
    stack: str, platform: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = check(render_dir(tmp_path, stack, platform), capsys)
    mandatory = [line for line in lines if line.startswith("MANDATORY")]
    assert code == 0 and not mandatory, "\n".join(mandatory)
    print(f"{stack}-{platform}: exit {code}, 0 mandatory, {len(lines)} advisory")


def plant(out: Path, pick: str, change: Any) -> str:
    """Apply ``change`` to the resource named ``pick`` (or the first starting with it)."""
    path = out / "resources.json"
    resources = json.loads(path.read_text())
    named = [r for r in resources if r["custom"] and r["name"] == pick]
    # A container or workload of that name (its generation RandomId shares the prefix).
    workloads = [r for r in resources if r["custom"] and r["name"].startswith(pick)
                 and not r["type"].startswith(("random:", "command:"))]  # fmt: skip
    target = (named or workloads)[0]
    change(target)
    path.write_text(json.dumps(resources))
    return str(target["name"])


def _unprotect(r: dict[str, Any]) -> None:
    r["protect"] = False


def _publish_5432(r: dict[str, Any]) -> None:
    r["inputs"]["ports"] = [
        {"internal": 5432, "external": 5432, "ip": "0.0.0.0", "protocol": "tcp"}  # noqa: S104
    ]


def _latest(r: dict[str, Any]) -> None:
    r["inputs"]["spec"]["template"]["spec"]["containers"][0]["image"] = (
        "ghcr.io/luna-app/luna-web:latest"
    )


def _privileged(r: dict[str, Any]) -> None:
    r["inputs"]["privileged"] = True


PLANTED = [
    ("prod", "kubernetes", "luna-logging-es-data", _unprotect, "prod-data-protected"),
    ("prod", "docker", "luna-database-postgres", _publish_5432, "no-public-data-service"),
    ("staging", "kubernetes", "luna-app-web", _latest, "image-pinned"),
    ("staging", "docker", "luna-app-web", _privileged, "container-hardening"),
]


@pytest.mark.parametrize(("stack", "platform", "pick", "change", "policy"), PLANTED)
def test_planted_violation_fails_the_check(
    stack: str,
    platform: str,
    pick: str,
    change: Any,
    policy: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = render_dir(tmp_path, stack, platform)
    name = plant(out, pick, change)
    code, lines = check(out, capsys)
    hits = [line for line in lines if f" {name} | {policy} |" in line]
    assert code == 1 and hits and hits[0].startswith("MANDATORY"), "\n".join(lines)
    print(f"{stack}-{platform}: planted {policy} -> exit {code}: {hits[0]}")


def test_planted_sslmode_disable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mandatory once TLS to PostgreSQL is in main; until then advisory, and the
    pack config (as `--policy-pack-config`) raises it to mandatory."""
    out = render_dir(tmp_path, "prod", "kubernetes")

    def add_url(r: dict[str, Any]) -> None:
        env = r["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]
        env.append({"name": "PGSSLMODE", "value": "disable"})

    name = plant(out, "luna-app-web", add_url)
    code, lines = check(out, capsys)
    hits = [line for line in lines if f" {name} | internal-tls-postgres |" in line]
    assert hits, "\n".join(lines)
    assert code == (1 if capabilities.TLS_POSTGRES.landed else 0)
    config = tmp_path / "pack-config.json"
    config.write_text(json.dumps({"internal-tls-postgres": "mandatory"}))
    code, lines = check(out, capsys, "--policy-pack-config", str(config))
    assert code == 1 and f"MANDATORY {name} | internal-tls-postgres |" in "\n".join(lines)
    print(f"planted PGSSLMODE=disable: {hits[0]}; exit {code} when mandatory")


def test_preview_sees_inside_secret_values() -> None:
    """The engine hands the pack secret values unwrapped (analyzer_plugin.go marshals
    with KeepSecrets; pulumi-policy's Analyze drops the wrapper), so a weak sslmode inside
    the app's *secret* DATABASE_URL is caught at preview though the render masks it."""
    r = rendered("prod", "kubernetes")
    rows = []
    for rec in r.monitor.records.values():
        inputs = rec.inputs
        if rec.type == "kubernetes:core/v1:Secret" and "app-web-env" in rec.name:
            # Still a secret on the wire, as the engine sends it.
            data = dict(rpc.unwrap_rpc_secret(inputs["stringData"]))
            data["DATABASE_URL"] = "postgresql://luna:pw@database:5432/luna?sslmode=disable"
            inputs = {**inputs, "stringData": rpc.wrap_rpc_secret(data)}
        rows.append(
            {
                "urn": rec.urn,
                "type": rec.type,
                "name": rec.name,
                "custom": rec.custom,
                "protect": rec.protect,
                "inputs": inputs,
            }
        )
    singles, stack = requests_from_render(rows)
    found = by(analyze(singles, stack), "internal-tls-postgres")
    assert any("app-web-env" in v.resource for v in found), [v.line() for v in found]
    assert not [v for v in found if ":pw@" in v.line()]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["/nonexistent"], "no resources.json"),
        (["{tmp}"], "not JSON"),
        (["{tmp}", "--policy-pack-config", "{tmp}/resources.json"], "not JSON"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "resources.json").write_text("{broken")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and needle in err[-1], err


def test_unknown_policy_in_pack_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "resources.json").write_text("[]")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"no-such-policy": "mandatory"}))
    assert main([str(tmp_path), "--policy-pack-config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-policy" in err[0]


def test_importing_the_pack_neither_blocks_nor_serves() -> None:
    """PolicyPack(...) would start a gRPC server and block; importing must do neither."""
    probe = (
        "import os, threading\n"
        "import policy, policy.luna_policies, policy.check\n"
        "def target(fd):\n"
        "    try:\n"
        "        return os.readlink(f'/proc/self/fd/{fd}')\n"
        "    except OSError:\n"
        "        return ''  # the directory listing's own descriptor, closed by now\n"
        "sockets = [f for f in os.listdir('/proc/self/fd') if target(f).startswith('socket:')]\n"
        "print(len(policy.luna_policies.POLICIES), len(sockets), threading.active_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    policies, sockets, threads = map(int, done.stdout.split())
    assert policies >= 20 and sockets == 0 and threads == 1, done.stdout


def test_the_edges_nginx_conf_is_judged_where_docker_ships_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On Docker nginx.conf reaches nginx through its live-files writer, whose
    environment holds only the program's own text (components/platforms/docker/
    rollout.py): a weakened conf there fails the check, naming the writer."""
    out = render_dir(tmp_path, "prod", "docker")
    path = out / "resources.json"
    resources = json.loads(path.read_text())
    (writer,) = [r for r in resources if r["name"] == "luna-proxy-nginx-files"]
    env = writer["inputs"]["environment"]
    (conf,) = [k for k, v in env.items() if isinstance(v, str) and "ssl_protocols" in v]
    env[conf] = env[conf].replace("TLSv1.2 TLSv1.3", "TLSv1.1 TLSv1.2")
    path.write_text(json.dumps(resources))
    code, lines = check(out, capsys)
    hits = [line for line in lines if "| edge-tls |" in line and "TLSv1.1" in line]
    assert code == 1 and hits and hits[0].startswith("MANDATORY luna-proxy-nginx-files"), lines


@pytest.mark.parametrize("platform", PLATFORMS)
def test_at_preview_prod_pages_and_routes_every_alert(platform: str) -> None:
    """Offline the Alertmanager config is masked (not judged); at preview the engine hands
    it over, and prod's real config has a pager and routes every rule to a notifier."""
    r = rendered("prod", platform)
    rows = [
        {"urn": rec.urn, "type": rec.type, "name": rec.name, "custom": rec.custom,
         "protect": rec.protect, "inputs": rec.inputs}
        for rec in r.monitor.records.values()
    ]  # fmt: skip
    singles, stack = requests_from_render(rows)
    skipped: list[str] = []
    preview = {name: {"secretsMasked": False} for name in ("paging-receiver", "alert-routes")}
    found = analyze(singles, stack, preview, skipped)
    judged = [v.line() for v in found if v.policy in ("paging-receiver", "alert-routes")]
    assert not judged and not skipped, (judged, skipped)

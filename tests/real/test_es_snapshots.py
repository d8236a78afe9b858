"""The rendered Elasticsearch setup script, run with real curl against a recording HTTPS server.

No Elasticsearch runs here, so the server stands in for its REST API: it answers
200 and records each call. What is checked against Elastic's API reference
(elastic/elasticsearch, docs/reference/snapshot-restore/apis/put-repo-api.asciidoc
and repository-s3.asciidoc; docs/reference/slm/apis/slm-put.asciidoc):

- ``PUT /_snapshot/<repo>``: ``type`` ``s3`` and its ``settings`` (``bucket``
  required; ``client``, ``base_path``, ``server_side_encryption``), then
  ``POST /_snapshot/<repo>/_verify``;
- ``PUT /_slm/policy/<id>``: ``schedule`` (a cron expression with seconds),
  ``name`` (date math allowed), ``repository``, ``config.indices``,
  ``retention.expire_after`` (a time unit), ``min_count`` <= ``max_count``.

And that no secret is on a command line: a ``curl`` wrapper first on PATH records
every argument vector (what ``/proc/<pid>/cmdline`` shows any local user), and none
may hold a password.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.real.support import RenderedStack, render_stack
from tests.support.tls import make_ca_signed_pair
from tests.support.tools import need

pytestmark = pytest.mark.slow

ES_SETUP = "/opt/luna/es-setup.sh"
SECRETS = {
    "ELASTIC_PASSWORD": "elastic-Pa55-0123456789abcdef",
    "KIBANA_PASSWORD": "kibana-Pa55-0123456789abcdef",
    "LOGSTASH_PASSWORD": "logstash-Pa55-0123456789abcdef",
    "OPERATOR_PASSWORD": "operator-Pa55-0123456789abcdef",
}
Call = tuple[str, str, str, Any]
"""(method, path, Authorization header, JSON body)."""


@pytest.fixture(scope="module", params=["docker", "kubernetes"])
def stack(request: pytest.FixtureRequest) -> RenderedStack:
    return render_stack("prod", platform=request.param)


def _serve(tmp: Path) -> tuple[ThreadingHTTPServer, list[Call], Path]:
    pair = make_ca_signed_pair(tmp, common_name="elasticsearch", alt_names="DNS:localhost")
    calls: list[Call] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            path = self.path.split("?")[0]
            auth = self.headers.get("Authorization", "")
            calls.append((self.command, path, auth, json.loads(body) if body else None))
            reply = b'{"status":"green","acknowledged":true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_PUT = do_POST = _record  # noqa: N815 - http.server names them

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls, pair.ca


@pytest.fixture(scope="module")
def run(
    stack: RenderedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Call], list[list[str]], str]]:
    tmp = tmp_path_factory.mktemp("es")
    server, calls, ca = _serve(tmp)
    port = server.server_address[1]
    script = stack.file("elasticsearch-setup", ES_SETUP)
    text = re.sub(r'^es="https://elasticsearch:9200"$', f'es="https://localhost:{port}"',
                  script, flags=re.M)  # fmt: skip
    text = re.sub(r'^ca=".*"$', f'ca="{ca}"', text, flags=re.M)
    assert text.count(f"localhost:{port}") == 1 and str(ca) in text
    (tmp / "setup.sh").write_text(text)
    # A curl that records its argument vector, then runs the real one.
    bindir = tmp / "bin"
    bindir.mkdir()
    log = tmp / "argv.jsonl"
    (bindir / "curl").write_text(
        "#!/usr/bin/python3\nimport json, os, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n"
        f"os.execv({need('curl')!r}, [{need('curl')!r}, *sys.argv[1:]])\n"
    )
    (bindir / "curl").chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", **SECRETS}
    proc = subprocess.run(["/bin/sh", str(tmp / "setup.sh")], env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    server.shutdown()
    server.server_close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argvs = [json.loads(line) for line in log.read_text().splitlines()]
    yield calls, argvs, proc.stdout


def _one(calls: list[Call], method: str, pattern: str) -> tuple[str, Any]:
    found = [
        (path, body) for m, path, _, body in calls if m == method and re.fullmatch(pattern, path)
    ]
    assert len(found) == 1, f"{method} {pattern}: {[(m, p) for m, p, _, _ in calls]}"
    return found[0]


def test_snapshot_repository_is_s3_in_the_stacks_bucket(
    stack: RenderedStack, run: tuple[list[Call], list[list[str]], str]
) -> None:
    calls, _, _ = run
    path, repo = _one(calls, "PUT", r"/_snapshot/[a-z0-9-]+")
    name = path.rsplit("/", 1)[1]
    assert repo["type"] == "s3", repo
    settings = repo["settings"]
    assert settings["bucket"] == stack.setting("backupBucket"), settings
    assert settings["base_path"] == "luna-prod/elasticsearch"
    assert settings["server_side_encryption"] is True
    assert set(settings) <= {"bucket", "client", "base_path", "server_side_encryption",
                             "chunk_size", "compress", "storage_class", "canned_acl"}  # fmt: skip
    _one(calls, "POST", rf"/_snapshot/{name}/_verify")
    # After the repository exists, never before.
    order = [f"{m} {p}" for m, p, _, _ in calls]
    assert order.index(f"PUT /_snapshot/{name}") < order.index(f"POST /_snapshot/{name}/_verify")


def test_slm_policy_snapshots_the_audit_index_daily_for_six_years(
    run: tuple[list[Call], list[list[str]], str],
) -> None:
    calls, _, _ = run
    _, policy = _one(calls, "PUT", r"/_slm/policy/[a-z0-9-]+")
    assert set(policy) <= {"schedule", "name", "repository", "config", "retention"}, policy
    # Quartz cron (seconds first), once a day.
    sec, minute, hour, dom, month, dow = policy["schedule"].split()
    assert (sec, dom, month, dow) == ("0", "*", "*", "?") and hour.isdigit() and minute.isdigit()
    assert re.fullmatch(r"<luna-prod-audit-\{now/d\}>", policy["name"]), policy["name"]
    repo_path, _ = _one(calls, "PUT", r"/_snapshot/[a-z0-9-]+")
    assert policy["repository"] == repo_path.rsplit("/", 1)[1]
    assert policy["config"]["indices"] == ["luna-prod-audit-*"]
    assert policy["config"]["include_global_state"] is False
    retention = policy["retention"]
    days = int(re.fullmatch(r"(\d+)d", retention["expire_after"]).group(1))  # type: ignore[union-attr]
    assert days >= 2192, f"snapshots expire after {days} days: less than six calendar years"
    assert 1 <= retention["min_count"] <= retention["max_count"]
    assert retention["max_count"] >= days, "max_count would delete daily snapshots early"


def test_no_secret_reaches_a_command_line(run: tuple[list[Call], list[list[str]], str]) -> None:
    calls, argvs, _ = run
    assert len(argvs) >= len(calls) >= 10, (len(argvs), len(calls))
    leaked = [a for a in argvs for s in SECRETS.values() if any(s in arg for arg in a)]
    assert not leaked, f"a secret on a curl command line: {leaked[:1]}"
    # Yet every call authenticated as elastic, and the passwords arrived in the bodies.
    assert all(auth.startswith("Basic ") for _, _, auth, _ in calls)
    _, kibana = _one(calls, "POST", r"/_security/user/kibana_system/_password")
    assert kibana == {"password": SECRETS["KIBANA_PASSWORD"]}


def test_the_leak_check_can_fail(tmp_path: Path) -> None:
    """The same wrapper sees a password passed the old way (``-u elastic:$PASS``)."""
    log = tmp_path / "argv.jsonl"
    wrapper = tmp_path / "curl"
    record = f"open({str(log)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n"
    wrapper.write_text("#!/usr/bin/python3\nimport json, sys\n" + record)
    wrapper.chmod(0o755)
    subprocess.run(["/bin/sh", "-c", 'curl -u "elastic:$ELASTIC_PASSWORD" https://x'],
                   env={"PATH": f"{tmp_path}:/usr/bin:/bin", **SECRETS}, check=True)  # fmt: skip
    assert SECRETS["ELASTIC_PASSWORD"] in log.read_text()
    assert os.access(wrapper, os.X_OK)

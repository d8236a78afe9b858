"""A stand-in Elasticsearch API for the runbooks' ``curl`` blocks, on https://localhost:9200.

Nothing here runs Elasticsearch (../shared/FACTS.md). The runbook's commands run with
the real curl against this stand-in, which knows what the *rendered* setup script
(``/opt/luna/es-setup.sh``) creates: its snapshot repositories (``PUT /_snapshot/<repo>``)
and snapshot lifecycle policies (``PUT /_slm/policy/<id>`` with the policy body). It
answers as Elastic's API references say, for the three calls the runbook makes:

- "Get snapshot lifecycle policy" ``GET /_slm/policy/<id>``: ``{<id>: {policy: …}}``, 404
  ``resource_not_found_exception`` for another id;
- "Get snapshot" ``GET /_snapshot/<repo>/_all``: ``{"snapshots": [...]}``, 404
  ``repository_missing_exception`` for another repository;
- "Restore snapshot" ``POST /_snapshot/<repo>/<snapshot>/_restore`` with a JSON body
  (``Content-Type: application/json``, else 406 as Elasticsearch answers): 200 when the
  snapshot name is one the policy makes (``<luna-prod-audit-{now/d}>`` gives
  ``luna-prod-audit-2026.11.26-<suffix>``) and the body's indices are ones it snapshots.

Every call needs HTTP basic auth as ``elastic`` with the password given (401 otherwise).
It is a stand-in: it proves the commands reach the paths, names and bodies the setup
script defines, not what a real cluster would restore.

``python -m tests.support.es_api SETUP CERT KEY PASSWORD BLOCK`` serves on
127.0.0.1:9200, runs ``bash -e BLOCK`` in the current folder and exits with its code;
run it in a private network namespace (``unshare -n``) so the port is its own.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["answer", "serve", "setup_state"]

_PUT = re.compile(r"^put PUT (/_snapshot|/_slm/policy)/([\w.-]+) '(.*)'$", re.M)


def setup_state(script: str) -> tuple[set[str], dict[str, Any]]:
    """(repositories, policies) the rendered setup script creates."""
    repos, policies = set(), {}
    for kind, name, body in _PUT.findall(script):
        if kind == "/_snapshot":
            repos.add(name)
        else:
            policies[name] = json.loads(body)
    return repos, policies


def _error(code: int, kind: str, reason: str) -> tuple[int, Any]:
    return code, {"error": {"type": kind, "reason": reason}, "status": code}


def _snapshot_name_ok(name: str, policies: dict[str, Any]) -> bool:
    for policy in policies.values():
        # "<luna-prod-audit-{now/d}>": date math, then SLM appends "-<random suffix>".
        prefix = re.sub(r"\{now/d\}.*", "", str(policy["name"]).strip("<>"))
        if re.fullmatch(re.escape(prefix) + r"\d{4}\.\d{2}\.\d{2}-[\w-]+", name):
            return True
    return False


def answer(
    method: str, path: str, headers: dict[str, str], body: bytes, *,
    password: str, repos: set[str], policies: dict[str, Any],
) -> tuple[int, Any]:  # fmt: skip
    expected = "Basic " + base64.b64encode(f"elastic:{password}".encode()).decode()
    if headers.get("authorization") != expected:
        return _error(401, "security_exception", "missing or wrong authentication")
    route = path.split("?")[0].strip("/").split("/")
    if method == "GET" and route[:2] == ["_slm", "policy"] and len(route) == 3:
        if route[2] not in policies:
            return _error(404, "resource_not_found_exception", f"snapshot lifecycle policy "
                          f"or policies [{route[2]}] not found")  # fmt: skip
        return 200, {route[2]: {"version": 1, "policy": policies[route[2]]}}
    if route[:1] == ["_snapshot"] and len(route) >= 3 and route[1] not in repos:
        return _error(404, "repository_missing_exception", f"[{route[1]}] missing")
    if method == "GET" and route[:1] == ["_snapshot"] and route[2:] == ["_all"]:
        return 200, {"snapshots": [], "total": 0, "remaining": 0}
    if method == "POST" and route[:1] == ["_snapshot"] and route[3:] == ["_restore"]:
        if headers.get("content-type", "").split(";")[0] != "application/json":
            return _error(406, "media_type_header_exception", "Content-Type not supported")
        request = json.loads(body or b"{}")
        patterns = [p for pol in policies.values() for p in pol["config"]["indices"]]
        indices = str(request.get("indices", "")).split(",")
        if not _snapshot_name_ok(route[2], policies):
            return _error(404, "snapshot_missing_exception", f"[{route[1]}:{route[2]}] is missing")
        if not all(any(fnmatch.fnmatch(i, p) for p in patterns) for i in indices):
            return _error(400, "illegal_argument_exception", f"{indices} not in {patterns}")
        return 200, {"accepted": True}
    return _error(400, "illegal_argument_exception", f"no handler for {method} {path}")


@contextmanager
def serve(script: str, cert: str, key: str, password: str, port: int) -> Iterator[list[str]]:
    """The stand-in on 127.0.0.1:``port`` over TLS; yields the calls it answered."""
    repos, policies = setup_state(script)
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            code, doc = answer(self.command, self.path, headers, body, password=password,
                               repos=repos, policies=policies)  # fmt: skip
            calls.append(f"{self.command} {self.path} -> {code}")
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply  # noqa: N815 - http.server's names

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield calls
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str]) -> int:
    setup, cert, key, password, block = argv
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open(setup) as f, serve(f.read(), cert, key, password, 9200) as calls:
        proc = subprocess.run(["bash", "-e", block], check=False)
    print("\n".join(calls), file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

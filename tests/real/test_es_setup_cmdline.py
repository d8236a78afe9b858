"""The shipped es-setup.sh, run against a real HTTPS server standing in for
Elasticsearch's REST API: every password reaches the server, none reaches a
command line (/proc/<pid>/cmdline, readable by every user of the host).

Adaptations, each an asserted substitution: the Elasticsearch URL (to the
stand-in on 127.0.0.1, certificate for ``localhost`` from a test CA) and the CA
path. The stand-in answers every call 200 after 150 ms, so each curl lives long
enough to be sampled many times.
"""

from __future__ import annotations

import base64
import http.server
import secrets
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from tests.real.support import RenderedStack, substitute
from tests.support.cmdline import watch_cmdlines
from tests.support.tls import make_ca_signed_pair
from tests.support.tools import need

pytestmark = pytest.mark.slow

ES_SETUP = "/opt/luna/es-setup.sh"
PASSWORDS = ("ELASTIC_PASSWORD", "KIBANA_PASSWORD", "LOGSTASH_PASSWORD", "OPERATOR_PASSWORD")


class _Api(http.server.BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[str, str, str, bytes]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.calls.append((self.command, self.path, self.headers.get("Authorization", ""), body))
        time.sleep(0.15)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("platform", ["docker", "kubernetes"])
def test_es_setup_puts_no_password_on_a_command_line(
    platform: str, stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> None:
    need("curl")
    stack = stacks("staging", platform)
    script = stack.file("elasticsearch-setup", ES_SETUP)
    pair = make_ca_signed_pair(tmp_path, common_name="localhost", alt_names="DNS:localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pair.cert), str(pair.key))
    _Api.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    what = f"staging/{platform}: {ES_SETUP}"
    script = substitute(
        script, 'es="https://elasticsearch:9200"', f'es="https://localhost:{port}"', what=what
    )
    script = substitute(
        script, 'ca="/usr/share/elasticsearch/config/certs/ca.crt"', f'ca="{pair.ca}"', what=what
    )
    (tmp_path / "es-setup.sh").write_text(script)
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    env |= {name: secrets.token_urlsafe(24) for name in PASSWORDS}
    try:
        with watch_cmdlines([env[n] for n in PASSWORDS]) as seen:
            run = subprocess.run(
                [need("sh"), str(tmp_path / "es-setup.sh")],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, f"{what}: exit {run.returncode}\n{run.stdout}{run.stderr}"
    curls = seen.argvs_matching("curl")
    print(f"\n{what}: {len(_Api.calls)} API calls, {seen.samples} samples, "
          f"{len(curls)} distinct curl command lines seen")  # fmt: skip
    # The sampler saw the calls it guards, and every secret travelled to the API.
    assert len(curls) >= 5, f"{what}: the sampler saw {len(curls)} curl command lines"
    auth = {base64.b64decode(a.split()[1]).decode() for _, _, a, _ in _Api.calls}
    assert auth == {f"elastic:{env['ELASTIC_PASSWORD']}"}, f"{what}: credentials sent: {len(auth)}"
    bodies = b"".join(body for *_, body in _Api.calls).decode()
    for name in PASSWORDS[1:]:
        assert env[name] in bodies, f"{what}: {name} never reached the API"
    assert not seen.leaks, f"{what}: passwords on a command line:\n" + "\n".join(seen.leaks)
    assert not list(tmp_path.glob("tmp*")), f"{what}: the credentials file was left behind"

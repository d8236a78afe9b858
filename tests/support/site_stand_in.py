"""A stand-in Luna site at the docs' own URLs, for their smoke-check commands as written.

The docs' ``smoke_check.py check|perf --url https://staging.luna-app.com`` (or
``https://luna-app.com``) reach a deployed site. Here they reach this stand-in
instead: run under ``unshare -n -m`` (a private network and mount namespace), it
binds ``/etc/hosts`` to a file that maps the docs' hosts to 127.0.0.1, then serves

- HTTPS on 127.0.0.1:443 with a certificate for those hosts, signed by a throwaway
  CA (the test hands the CA as ``staging-ca.pem`` for ``--cafile``, and as
  ``SSL_CERT_FILE`` for a command without one, as an operator's trust store would);
- ``/``, ``/api/health`` and ``/api/crisis/health`` with the security headers the
  edge sends (tests/pipeline/test_smoke_check.py's healthy deployment);
- HTTP on 127.0.0.1:80 answering 301 to https, as the edge's port 80 does.

It proves the documented commands parse and pass against a healthy site; the
smoke check's judgement of unhealthy sites is tests/pipeline/test_smoke_check.py's.

``python -m tests.support.site_stand_in HOSTS_FILE CERT KEY -- COMMAND`` runs
``bash -c COMMAND`` and exits with its status.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HOSTS", "main"]

HOSTS = ("staging.luna-app.com", "luna-app.com")
SECURE_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}
ROUTES = ("/", "/api/health", "/api/crisis/health")


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        known = self.path.split("?")[0] in ROUTES
        body = b'{"status":"ok"}' if known else b"not found"
        self.send_response(200 if known else 404)
        for name, value in SECURE_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Redirect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        host = (self.headers.get("Host") or HOSTS[0]).split(":")[0]
        self.send_response(301)
        self.send_header("Location", f"https://{host}{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _start(server: ThreadingHTTPServer) -> None:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str]) -> int:
    hosts_file, cert, key, sep, command = argv
    assert sep == "--", "usage: HOSTS_FILE CERT KEY -- COMMAND"
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "--bind", hosts_file, "/etc/hosts"], check=True)
    site = ThreadingHTTPServer(("127.0.0.1", 443), _Site)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    site.socket = context.wrap_socket(site.socket, server_side=True)
    _start(site)
    _start(ThreadingHTTPServer(("127.0.0.1", 80), _Redirect))
    return subprocess.run(["bash", "-c", command], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A stand-in app replica: ``python -m tests.real.standin ID [HOST [PORT]]``.

Binds HOST:PORT (default 127.0.0.1:0), prints the port, and answers every
request with ``ID <bytes of body received>``. It sets ``X-Powered-By`` like
Next.js does, so the proxy test can show nginx hides it, and echoes the
forwarding headers it received as ``X-Seen-<name>``. A separate process, so
a test can kill it like a crashed replica (every socket closes, keep-alive ones
included).
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _handler(ident: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            body = f"{ident} {length - remaining}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Powered-By", "Next.js")
            # What the proxy told the app about the client, for the edge tests.
            for name in ("X-Forwarded-For", "X-Real-IP", "Forwarded", "Host"):
                self.send_header(f"X-Seen-{name}", self.headers.get(name, "-"))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_HEAD = do_PUT = _answer  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    server = ThreadingHTTPServer((host, port), _handler(sys.argv[1]))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

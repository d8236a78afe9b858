"""What the stack talks to beyond its host, standing beside it: an object store,
the pager and chat, and the DNS that names them.

How containers reach services of this host, with a daemon that has no iptables
rules (tests/real/docker_host.py): a host address of our own, ``198.18.N.1/32``
(RFC 2544's benchmarking range, never routed), on a bridge device with no
ports. A container with a default route (its service's ``-edge`` network)
sends to it through its network's gateway, and the kernel delivers it locally:
no NAT, no iptables. The listeners bind that address only, never a wildcard.
Names are answered by a small DNS server on the same address, which the daemon
is given with ``--dns`` (the host's resolver, as far as containers know):
``*.rehearsal.test`` is that address; other names are asked of this host's
resolver (image builds fetch Debian packages), though no container can reach them.

- the object store: moto behind stunnel (tests/real/s3.py), reached as
  ``s3.rehearsal.test:443`` through a relay that can take it down;
- the pager and chat: :class:`Receiver`, an HTTPS server that records each POST,
  as ``hooks.rehearsal.test:8443``.

The images trust that CA as they would trust a public one: the rehearsal adds it
to the stand-in's CA bundle (:func:`trust_ca`), the one file that differs.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import io
import json
import os
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.proxy import ProxyResolver
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from tests.real.docker_host import DockerHost
from tests.real.s3 import LocalS3, local_s3
from tests.support.tools import need

__all__ = ["DOMAIN", "Receiver", "World", "side_address", "trust_ca", "world"]

DOMAIN = "rehearsal.test"
S3_HOST = f"s3.{DOMAIN}"
HOOKS_HOST = f"hooks.{DOMAIN}"
HOOKS_PORT = 8443
BUNDLE = "etc/ssl/certs/ca-certificates.crt"
"""Debian's CA bundle (ca-certificates), which OpenSSL and Go programs read."""


@contextlib.contextmanager
def side_address() -> Iterator[tuple[str, str]]:
    """Two host addresses of our own on a port-less bridge device, removed afterwards:
    the world's (DNS, object store, hooks) and the edge's public one (:meth:`World.publish`).

    The subnet ``198.18.<n>.0/24`` is one no device holds, chosen and claimed under
    a host-wide lock: two rehearsals at once (xdist workers whose pids agree mod
    250, or two in one process) never share an address. The device is named after
    the process and the subnet (``lunarh<pid>x<n>``, 15 characters at most)."""
    ip = need("ip")
    with open("/run/lock/luna-rehearsal-subnets", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        held = subprocess.run([ip, "-o", "addr"], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip
        start = os.getpid() % 250
        free = [n for n in ((start + i) % 250 + 1 for i in range(250))
                if f" 198.18.{n}.1/" not in held]  # fmt: skip
        if not free:
            raise OSError("no free 198.18.<n>.0/24 for a rehearsal's side addresses")
        n = free[0]
        device = f"lunarh{os.getpid() % 100000}x{n}"
        address, public = f"198.18.{n}.1", f"198.18.{n}.2"
        subprocess.run([ip, "link", "del", device], capture_output=True, check=False)
        steps = (
            ["link", "add", device, "type", "bridge"],
            ["addr", "add", f"{address}/32", "dev", device],
            ["addr", "add", f"{public}/32", "dev", device],
            ["link", "set", device, "up"],
        )
        for args in steps:
            subprocess.run([ip, *args], capture_output=True, text=True, check=True)
    try:
        yield address, public
    finally:
        subprocess.run([ip, "link", "del", device], capture_output=True, check=False)


def _host_resolver() -> str | None:
    """The first nameserver of this host's /etc/resolv.conf."""
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            return words[1]
    return None


class _Names(BaseResolver):  # type: ignore[misc]
    """``*.rehearsal.test`` is ``address``; any other name is asked of the host's
    resolver. The image builds need that (``docker build --network host`` fetches
    Debian packages, with the daemon's DNS); containers still reach nothing
    beyond this host, since the daemon routes nothing out (no NAT)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.names: dict[str, str] = {}
        """Other names this server answers (:meth:`World.publish`)."""
        upstream = _host_resolver()
        self.upstream = ProxyResolver(upstream, 53, 5) if upstream else None

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = str(request.q.qname).rstrip(".")
        mine = self.names.get(qname)
        if mine is None and (qname == DOMAIN or qname.endswith("." + DOMAIN)):
            mine = self.address
        if mine is not None:
            reply = request.reply()
            if request.q.qtype == QTYPE.A:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(mine), ttl=60))
            return reply
        if self.upstream is not None:
            return self.upstream.resolve(request, handler)
        reply = request.reply()
        reply.header.rcode = RCODE.NXDOMAIN
        return reply


@dataclass
class Receiver:
    """Records every POST: ``(seconds since start, path, body)``."""

    posts: list[tuple[float, str, str]] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def since(self, t0: float) -> list[tuple[float, str, str]]:
        with self.lock:
            return [p for p in self.posts if p[0] >= t0 - self.start]


def _serve_hooks(receiver: Receiver, address: str, cert: Path, key: Path) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.posts.append((time.monotonic() - receiver.start, self.path,
                                       body.decode(errors="replace")))  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, HOOKS_PORT), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class World:
    address: str
    s3: LocalS3
    receiver: Receiver
    ca: Path
    """The CA of the object store's and the hooks' certificates."""
    relay: Relay
    """The object store as containers reach it (:meth:`Relay.outage`)."""
    names: _Names
    public: str
    """The edge's public address: what the stack's host name resolves to."""
    relays: list[Relay] = field(default_factory=list)

    def publish(self, host: str, edge: str) -> None:
        """``host`` resolves to :attr:`public`, whose port 443 relays to the edge as the
        daemon published it (``edge``, a loopback address): the stack's public URL as
        a container reaches it, like a public address hairpinned back to the host.
        The blackbox exporter's edge probe needs it (LunaCrisisEdgeDown otherwise
        fires throughout, as the public name has no other answer here)."""
        self.relays.append(Relay((self.public, 443), (edge, 443)))
        self.names.names[host] = self.public

    @property
    def hook_url(self) -> str:
        return f"https://{HOOKS_HOST}:{HOOKS_PORT}"


@contextlib.contextmanager
def world(root: Path, address: str, public: str, *, buckets: tuple[str, ...]) -> Iterator[World]:
    """DNS, object store and hooks on ``address``; stopped afterwards."""
    names = _Names(address)
    dns = DNSServer(names, port=53, address=address, logger=DNSLogger("-request,-reply"))
    dns.start_thread()
    hooks_dir = root / "hooks-tls"
    hooks_dir.mkdir()
    with local_s3(root, buckets=buckets, host=S3_HOST) as s3:
        # One CA for both: the hooks' pair is signed by the object store's CA.
        pair = _sign_with(s3.ca.parent, hooks_dir, HOOKS_HOST)
        receiver = Receiver()
        server = _serve_hooks(receiver, address, pair[0], pair[1])
        relay = Relay((address, 443), ("127.0.0.1", s3.tls_port))
        w = World(address, s3, receiver, s3.ca, relay, names, public)
        try:
            yield w
        finally:
            for each in (relay, *w.relays):
                each.close()
            server.shutdown()
            dns.stop()


class Relay:
    """The object store's address as containers see it: a TCP relay to stunnel.

    :meth:`outage` makes the store unreachable the way a dead network does:
    open connections go silent and new ones are accepted and never answered
    (nothing is refused, so clients wait for their own timeouts).
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.down = threading.Event()
        self._server = socket.create_server(listen, reuse_port=False)
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def outage(self, on: bool) -> None:
        if on:
            self.down.set()
        else:
            self.down.clear()
            for s in self._held:
                with contextlib.suppress(OSError):
                    s.close()
            self._held.clear()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down.is_set():
                self._held.append(client)  # accepted, never answered
                continue
            threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, 10)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                while self.down.is_set():  # the network died mid-stream: silence
                    time.sleep(0.5)
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _sign_with(ca_dir: Path, out: Path, host: str) -> tuple[Path, Path]:
    openssl = need("openssl")
    key, csr, cert, ext = out / "tls.key", out / "tls.csr", out / "tls.crt", out / "tls.ext"
    ext.write_text(f"subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\n")
    for command in (
        [openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", f"/CN={host}", "-keyout", str(key), "-out", str(csr)],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.crt"),
         "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-days", "2",
         "-extfile", str(ext), "-out", str(cert)],
    ):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
    return cert, key


def trust_ca(host: DockerHost, image: str, ca_pem: str) -> None:
    """Append ``ca_pem`` to ``image``'s CA bundle and commit it under the same tag."""
    cid = host.docker("create", image, "true").stdout.strip()
    try:
        got = subprocess.run(["docker", "cp", f"{cid}:/{BUNDLE}", "-"], env=host.env,
                             capture_output=True, check=False, timeout=60)  # fmt: skip
        bundle = ""
        if got.returncode == 0:  # no bundle (no ca-certificates package): ours alone
            with tarfile.open(fileobj=io.BytesIO(got.stdout)) as archive:
                member = archive.getmembers()[0]
                if member.issym():
                    raise AssertionError(f"{image}: {BUNDLE} is a symlink")
                extracted = archive.extractfile(member)
                assert extracted is not None
                bundle = extracted.read().decode()
        text = bundle.rstrip("\n") + "\n" + ca_pem
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as archive:
            for parent in ("etc/ssl", "etc/ssl/certs"):
                folder = tarfile.TarInfo(parent)
                folder.type, folder.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(folder)
            info = tarfile.TarInfo(BUNDLE)
            info.size, info.mode = len(text.encode()), 0o644
            archive.addfile(info, io.BytesIO(text.encode()))
        subprocess.run(["docker", "cp", "-", f"{cid}:/"], input=buf.getvalue(), env=host.env,
                       capture_output=True, check=True, timeout=60)  # fmt: skip
        host.docker("commit", cid, image)
    finally:
        host.docker("rm", "-f", cid, check=False)


def posts_json(receiver: Receiver) -> list[object]:
    """Each recorded body parsed as JSON where it is JSON."""
    out: list[object] = []
    for _, _, body in receiver.posts:
        with contextlib.suppress(ValueError):
            out.append(json.loads(body))
    return out

"""A minimal RESP2 client on a raw socket: enough to talk to redis-server in tests."""

from __future__ import annotations

import socket
import ssl
from types import TracebackType

__all__ = ["RedisError", "Resp"]

Reply = str | int | bytes | list["Reply"] | None


class RedisError(Exception):
    """An error reply (``-ERR ...``, ``-NOAUTH ...``), returned rather than raised by default."""


class Resp:
    """``Resp(port)``; with ``tls`` (a client context), over TLS checked for ``server_hostname``."""

    def __init__(
        self,
        port: int,
        *,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout)
        try:
            self._sock = (
                tls.wrap_socket(raw, server_hostname=server_hostname) if tls is not None else raw
            )
        except BaseException:
            raw.close()
            raise
        self._buf = self._sock.makefile("rb")

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._buf.close()
        self._sock.close()

    @staticmethod
    def encode(*args: str | bytes | int) -> bytes:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts += [f"${len(data)}\r\n".encode(), data, b"\r\n"]
        return b"".join(parts)

    def send(self, *commands: tuple[str | bytes | int, ...]) -> None:
        self._sock.sendall(b"".join(self.encode(*c) for c in commands))

    def read(self) -> Reply | RedisError:
        line = self._buf.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self._buf.read(n + 2)[:-2]
        if kind == b"*":
            items: list[Reply] = []
            for _ in range(int(rest)):
                item = self.read()
                assert not isinstance(item, RedisError), item
                items.append(item)
            return items
        raise ValueError(f"unexpected RESP line {line!r}")

    def __call__(self, *args: str | bytes | int) -> Reply | RedisError:
        self.send(args)
        return self.read()

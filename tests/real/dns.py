"""A stand-in for Docker's embedded DNS server, as nginx's ``resolver`` sees it.

Docker answers a network alias with one A record per running container that
carries it, in shuffled order (libnetwork resolver.go, ``ResolveName`` and
``shuffleAddr``), registered when the
container joins the network at start and removed when it leaves at stop. Here the
tests register and remove the stand-in replicas themselves, in that order. It
answers on 127.0.0.1 only, with dnslib's server.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

__all__ = ["ReplicaDns", "replica_dns"]

TTL = 600  # Docker's embedded DNS answers with a 600 s TTL; nginx's `valid=` overrides it.


class ReplicaDns(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[str]] = {}
        self.port = 0

    def add(self, name: str, ip: str) -> None:
        with self._lock:
            self._records.setdefault(name, []).append(ip)

    def remove(self, name: str, ip: str) -> None:
        with self._lock:
            self._records[name].remove(ip)

    def addresses(self, name: str) -> list[str]:
        with self._lock:
            return list(self._records.get(name, []))

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        found = self.addresses(name)
        # Docker shuffles the records of a name on every answer (libnetwork
        # resolver.go, shuffleAddr), so clients spread over the replicas.
        random.shuffle(found)
        if request.q.qtype == QTYPE.A and found:
            for ip in found:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        elif not found:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@contextmanager
def replica_dns() -> Iterator[ReplicaDns]:
    resolver = ReplicaDns()
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(resolver, port=0, address="127.0.0.1", logger=quiet)
    resolver.port = int(server.server.server_address[1])
    server.start_thread()
    try:
        yield resolver
    finally:
        server.stop()
        server.server.server_close()

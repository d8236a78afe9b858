"""The metadata scenario's parts without a daemon: the stand-in is reached by
forwarding from a network namespace (as a container's traffic is), the host rule
stops it, and both leave nothing behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.rehearsal.scenarios.metadata import PROBE, host_rule, stand_in
from tests.support.tools import need

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def client_namespace() -> Iterator[str]:
    """A namespace routed through the host like a container on an ``-edge`` network."""
    ip, n = need("ip"), os.getpid() % 100000
    ns, host_end, ns_end = f"lunamdc{n}", f"lunamdch{n}", f"lunamdcp{n}"
    net = f"10.251.{n % 250}"
    steps = (
        ["netns", "add", ns],
        ["link", "add", host_end, "type", "veth", "peer", "name", ns_end],
        ["link", "set", ns_end, "netns", ns],
        ["addr", "add", f"{net}.1/24", "dev", host_end],
        ["link", "set", host_end, "up"],
        ["-n", ns, "addr", "add", f"{net}.2/24", "dev", ns_end],
        ["-n", ns, "link", "set", ns_end, "up"],
        ["-n", ns, "route", "add", "default", "via", f"{net}.1"],
    )
    try:
        for args in steps:
            subprocess.run([ip, *args], capture_output=True, text=True, check=True)
        yield ns
    finally:
        subprocess.run([ip, "link", "del", host_end], capture_output=True, check=False)
        subprocess.run([ip, "netns", "del", ns], capture_output=True, check=False)


def _get(ns: str) -> str:
    argv = [need("ip"), "netns", "exec", ns, "sh", "-c", PROBE]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout


def _chains() -> str:
    return "".join(
        subprocess.run([need(t), "-S"], capture_output=True, text=True, check=True).stdout
        for t in ("iptables", "ip6tables")
    )


def test_the_host_rule_stops_forwarded_metadata_requests() -> None:
    before = _chains()
    with client_namespace() as ns, stand_in("token-7f3a") as server_ns:
        assert "token-7f3a" in _get(ns), "the control: the stand-in must be reachable"
        with host_rule() as rules:
            assert "-A DOCKER-USER -d 169.254.0.0/16 -j DROP" in rules
            assert "-A DOCKER-USER -d fe80::/10 -j DROP" in rules
            got = _get(ns)
            assert "client=wget" in got and "token-7f3a" not in got
        assert "token-7f3a" in _get(ns), "the rule was not removed"
    assert _chains() == before
    listed = subprocess.run([need("ip"), "netns", "list"], capture_output=True, text=True)
    assert server_ns not in listed.stdout

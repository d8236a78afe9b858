"""m. Metadata: 169.254.169.254 is unreachable from every container once the
Docker host applies the control docs/compliance.md gives.

A cloud host reaches its metadata service by forwarding: a container's packet to
169.254.169.254 leaves its network's bridge, crosses the host's FORWARD path
(where Docker's ``DOCKER-USER`` chain sits) and goes out of another interface.
The stand-in is built the same way: busybox ``httpd`` on 169.254.169.254:80 in a
network namespace of its own, joined to the host by a veth pair, with a host
route for 169.254.169.254/32 through it. It answers a random token, so a reply
is known to come from it.

Two rounds, each an HTTP GET from inside every running container of the stack,
with whatever client the image ships (wget, curl, python3, node, bash /dev/tcp):

1. control, without the host rule: at least one container with an ``-edge``
   network must reach it, or the check below proves nothing;
2. with the documented rule, ``iptables -I DOCKER-USER -d 169.254.0.0/16 -j DROP``
   (and ``ip6tables -I DOCKER-USER -d fe80::/10 -j DROP``): no container may.

The private daemon runs with ``--iptables=false`` (tests/real/docker_host.py), so
it creates no ``DOCKER-USER`` chain: the scenario creates it and jumps to it from
FORWARD first, as dockerd does (moby libnetwork/firewall_linux.go), and removes
exactly what it added afterwards. The rules are host-wide while they exist: two
rehearsals running this scenario at the same time would see each other's rule.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.rehearsal.outcome import Outcome
from tests.rehearsal.session import Rehearsal
from tests.support.tools import need

__all__ = ["METADATA", "PROBE", "host_rule", "probe", "run", "stand_in"]

METADATA = "169.254.169.254"
HOST_SIDE = "169.254.169.1"
"""The host's end of the veth pair: the stand-in's default route (its replies)."""
RULES = (("iptables", "169.254.0.0/16"), ("ip6tables", "fe80::/10"))
"""The host control of docs/compliance.md: (tool, destination dropped)."""

_PY = (
    "import urllib.request as u;"
    ' print(u.urlopen("http://169.254.169.254/", timeout=5).read().decode())'
)
_JS = (
    'const r = require("http").get("http://169.254.169.254/", {timeout: 5000},'
    ' s => s.on("data", d => process.stdout.write(d)));'
    ' r.on("timeout", () => { console.error("timeout"); process.exit(1); });'
    ' r.on("error", e => { console.error(e.message); process.exit(1); });'
)
_TCP = 'exec 3<>/dev/tcp/169.254.169.254/80 && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3'
PROBE = f"""
u=http://169.254.169.254/
have() {{ command -v "$1" >/dev/null 2>&1; }}
get() {{
  case $1 in
  wget) t=""  # GNU wget retries 20 times unless told; busybox has no -t
    wget --help 2>&1 | grep -q -- --tries && t="-t 1"
    wget -q -T 5 $t -O - "$u" ;;
  curl) curl -sS -m 5 "$u" ;;
  python3) python3 -c '{_PY}' ;;
  node) node -e '{_JS}' ;;
  bash) timeout 6 bash -c '{_TCP}' ;;
  esac
}}
c=none; o="no HTTP client in the image"; r=127
for k in wget curl python3 node bash; do
  have $k || continue
  c=$k; o=$(get $k 2>&1); r=$?
  # A client that crashed (signal) or could not run proves nothing: try the next.
  [ $r -lt 126 ] && break
  echo "client=$k crashed exit=$r"
done
echo "client=$c exit=$r"
echo "$o" | tail -n 3
"""
"""A GET of the stand-in with the first client the image has; prints the client,
its exit status and the last lines of its output (the token when it got through)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("ip"), *args], capture_output=True, text=True, check=check)


@contextlib.contextmanager
def stand_in(token: str) -> Iterator[str]:
    """The metadata service behind a veth pair, answering ``token``; removed afterwards.
    Yields the namespace's name."""
    n = str(time.monotonic_ns() % 100000)
    ns, host_end, ns_end = f"lunamd{n}", f"lunamdh{n}", f"lunamdp{n}"
    root = Path(tempfile.mkdtemp(prefix="luna-metadata-"))
    (root / "index.html").write_text(token + "\n")
    server: subprocess.Popen[bytes] | None = None
    try:
        for args in (
            ["netns", "add", ns],
            ["link", "add", host_end, "type", "veth", "peer", "name", ns_end],
            ["link", "set", ns_end, "netns", ns],
            ["addr", "add", f"{HOST_SIDE}/32", "dev", host_end],
            ["link", "set", host_end, "up"],
            ["-n", ns, "addr", "add", f"{METADATA}/32", "dev", ns_end],
            ["-n", ns, "link", "set", ns_end, "up"],
            ["-n", ns, "link", "set", "lo", "up"],
            ["-n", ns, "route", "add", f"{HOST_SIDE}/32", "dev", ns_end],
            ["-n", ns, "route", "add", "default", "via", HOST_SIDE, "dev", ns_end],
            ["route", "add", f"{METADATA}/32", "dev", host_end],
        ):
            _ip(*args)
        server = subprocess.Popen([need("ip"), "netns", "exec", ns, need("busybox"), "httpd",
                                   "-f", "-p", f"{METADATA}:80", "-h", str(root)])  # fmt: skip
        _wait_listening(ns)
        yield ns
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        _ip("route", "del", f"{METADATA}/32", "dev", host_end, check=False)
        _ip("link", "del", host_end, check=False)
        _ip("netns", "del", ns, check=False)
        for f in root.iterdir():
            f.unlink()
        root.rmdir()


def _wait_listening(ns: str) -> None:
    for _ in range(50):
        listening = subprocess.run([need("ip"), "netns", "exec", ns, need("ss"), "-ltnH"],
                                   capture_output=True, text=True, check=False).stdout  # fmt: skip
        if f"{METADATA}:80" in listening:
            return
        time.sleep(0.1)
    raise AssertionError(f"the metadata stand-in never listened on {METADATA}:80")


def _table(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need(tool), "-w", "5", *args], capture_output=True, text=True,
                          check=check)  # fmt: skip


@contextlib.contextmanager
def host_rule() -> Iterator[list[str]]:
    """The documented DROP rules in DOCKER-USER (chain and FORWARD jump created when
    missing); exactly what was added is removed afterwards. Yields the rules as listed."""
    undo: list[tuple[str, list[str]]] = []
    try:
        for tool, destination in RULES:
            if _table(tool, "-n", "-L", "DOCKER-USER", check=False).returncode != 0:
                _table(tool, "-N", "DOCKER-USER")
                undo.append((tool, ["-X", "DOCKER-USER"]))
            if _table(tool, "-C", "FORWARD", "-j", "DOCKER-USER", check=False).returncode != 0:
                _table(tool, "-I", "FORWARD", "-j", "DOCKER-USER")
                undo.append((tool, ["-D", "FORWARD", "-j", "DOCKER-USER"]))
            # As docs/compliance.md gives it, word for word.
            _table(tool, "-I", "DOCKER-USER", "-d", destination, "-j", "DROP")
            undo.append((tool, ["-D", "DOCKER-USER", "-d", destination, "-j", "DROP"]))
        yield [line for tool, _ in RULES
               for line in _table(tool, "-S", "DOCKER-USER").stdout.splitlines()]  # fmt: skip
    finally:
        for tool, args in reversed(undo):
            _table(tool, *args, check=False)


def probe(r: Rehearsal, container: str, token: str) -> tuple[bool, str]:
    """(reached the stand-in, one line: client, exit status, last output)."""
    proc = r.host.docker("exec", container, "sh", "-c", PROBE, check=False)
    text = (proc.stdout + proc.stderr).strip()
    line = " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())[:220]
    return token in proc.stdout, line or f"docker exec exit {proc.returncode}"


def _probed(line: str) -> bool:
    """Whether a client ran to its own verdict: the last status is not ``none``
    and not a crash or a command that could not run (exit 126 and up)."""
    found = re.findall(r"client=(\w+) exit=(\d+)", line)
    return bool(found) and found[-1][0] != "none" and int(found[-1][1]) < 126


def _networks(r: Rehearsal, container: str) -> list[str]:
    out = r.docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                   container, check=False)  # fmt: skip
    return out.split()


def _round(r: Rehearsal, token: str) -> dict[str, tuple[bool, str]]:
    """Every running container probed at once: a blocked probe waits out its client's
    5 s timeout, and one after another the round took a minute."""
    running = sorted(r.docker("ps", "--format", "{{.Names}}").split())
    with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
        probes = pool.map(lambda name: probe(r, name, token), running)
        return dict(zip(running, probes, strict=True))


def run(r: Rehearsal) -> Outcome:
    token = "luna-metadata-" + secrets.token_hex(8)
    with stand_in(token):
        control = _round(r, token)
        with host_rule() as rules:
            blocked = _round(r, token)
    reached_without = sorted(n for n, (got, _) in control.items() if got)
    reached_with = sorted(n for n, (got, _) in blocked.items() if got)
    unprobed = sorted(n for n, (_, line) in blocked.items() if not _probed(line))
    nets = {n: _networks(r, n) for n in control}
    edged = {n for n, names in nets.items() if any(x.endswith("-edge") for x in names)}
    lines = ["host rule: " + "; ".join(rules), "container | networks | without rule | with rule"]
    for name in sorted(control):
        lines.append(f"{name} | {' '.join(nets[name]) or '-'} | "
                     f"{'REACHED' if control[name][0] else 'no'}: {control[name][1]} | "
                     f"{'REACHED' if blocked.get(name, (False, ''))[0] else 'no'}: "
                     f"{blocked.get(name, (False, 'not running'))[1]}")  # fmt: skip
    control_ok = any(n in edged for n in reached_without)
    ok = control_ok and not reached_with and not unprobed and bool(blocked)
    figure = (f"with the host rule {len(reached_with)}/{len(blocked)} containers reach "
              f"{METADATA}; without it {len(reached_without)}/{len(control)}")  # fmt: skip
    if not control_ok:
        lines.insert(0, "the control failed: no container with an -edge network reached the "
                        "stand-in without the rule, so the check proves nothing")  # fmt: skip
    if unprobed:
        lines.insert(0, f"not probed (no shell or no HTTP client): {', '.join(unprobed)}")
    return Outcome("metadata", ok, figure, "\n".join(lines))

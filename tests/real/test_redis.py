"""A real redis-server (Debian's Redis 7) with the rendered redis.conf: TLS only,
ACL users, eviction.

Adaptations, each asserted: ``bind 0.0.0.0`` and ``tls-port 6380`` to loopback and
a free port; the certificate paths to a throwaway CA and a server pair it signed
for the names the render's certificate request asks for; the ``include`` of the
secret ACL file (masked in the render) to a file made by the same builder the
Cache component uses, with test passwords that carry quotes, ``\\x41``, ``@:/#``
and spaces. ``port 0`` is left as rendered. The server is started the way the
container starts it: ``redis-server <conf>``.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.cache import TLS, redis_health_check
from components.configs.redis import APP_USER, EXPORTER_USER, redis_acl_conf
from infra.mocks import unwrap
from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.resp import RedisError, Resp
from tests.real.support import Daemon, RenderedStack, free_port, substitute, wait_for_port
from tests.support.tls import CaSignedPair, make_ca_signed_pair
from tests.support.tools import need

pytestmark = pytest.mark.slow

CONF = "/usr/local/etc/redis/redis.conf"
ACL_CONF = "/usr/local/etc/redis/auth.conf"
# What a hostile redisPassword looks like: a quote, a redis.conf escape, URL syntax.
APP_PASSWORD = 'luna-app "Pa55" \\x41 @:/#?%'
EXPORTER_PASSWORD = "luna-exporter-Pa55word-0123456789"


@dataclass
class Cache:
    stack: RenderedStack
    port: int
    daemon: Daemon
    pair: CaSignedPair
    other_ca: CaSignedPair
    server_name: str

    def tls(self, ca: Path | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(ca or self.pair.ca))

    def client(self, user: str | None = APP_USER) -> Resp:
        c = Resp(self.port, tls=self.tls(), server_hostname=self.server_name)
        if user is not None:
            password = {APP_USER: APP_PASSWORD, EXPORTER_USER: EXPORTER_PASSWORD}[user]
            assert c("AUTH", user, password) == "OK", f"{self.stack.stack}: AUTH {user} refused"
        return c


def _certificate_names(stack: RenderedStack) -> list[str]:
    """The DNS names the render's certificate request for the cache asks for."""
    (csr,) = [
        unwrap(r.inputs)
        for r in stack.rendered.monitor.records.values()
        if r.type == "tls:index/certRequest:CertRequest" and r.name.endswith("-cache-csr")
    ]
    return list(csr["dnsNames"])


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CaSignedPair:
    """A CA the server does not use: a client trusting only it must be refused."""
    return make_ca_signed_pair(
        tmp_path_factory.mktemp("other-ca"), common_name="cache", alt_names="DNS:cache"
    )


@pytest.fixture(params=FULL_STACK_PARAMS, ids=stack_id)
def cache(
    request: pytest.FixtureRequest,
    stacks: Callable[[str, str], RenderedStack],
    tmp_path: Path,
    other_ca: CaSignedPair,
) -> Iterator[Cache]:
    redis_server = need("redis-server")
    stack = stacks(*request.param)
    what = f"{stack.stack}/{stack.platform}: {CONF}"
    assert stack.file("cache", ACL_CONF) == "[secret]\n", f"{what}: the ACL file is not secret"
    assert stack.file("cache", TLS.key_file) == "[secret]\n", f"{what}: the TLS key is not secret"
    names = _certificate_names(stack)
    assert names[0] == "cache" and "localhost" in names, f"{what}: certificate names {names}"
    pair = make_ca_signed_pair(
        tmp_path, common_name=names[0], alt_names=",".join(f"DNS:{n}" for n in names)
    )
    conf = stack.file("cache", CONF)
    port = free_port()
    assert re.search(r"^port 0$", conf, re.M), f"{what}: a plaintext port is configured"
    conf = substitute(conf, "\nbind 0.0.0.0\n", "\nbind 127.0.0.1\n", what=what)
    conf = substitute(conf, "\ntls-port 6380\n", f"\ntls-port {port}\n", what=what)
    for path, local in (
        (TLS.cert_file, pair.cert),
        (TLS.key_file, pair.key),
        (TLS.ca_file, pair.ca),
    ):
        conf = substitute(conf, f" {path}\n", f" {local}\n", what=what)
    conf = substitute(
        conf, f"\ninclude {ACL_CONF}\n", f"\ninclude {tmp_path}/acl.conf\n", what=what
    )
    (tmp_path / "acl.conf").write_text(
        redis_acl_conf(app_password=APP_PASSWORD, exporter_password=EXPORTER_PASSWORD)
    )
    (tmp_path / "redis.conf").write_text(conf)
    daemon = Daemon(
        [redis_server, str(tmp_path / "redis.conf")], log=tmp_path / "redis.log", cwd=tmp_path
    )
    try:
        wait_for_port(port, proc=daemon.proc, what=f"{stack.stack} redis-server", log=daemon.log)
        yield Cache(stack, port, daemon, pair, other_ca, server_name=names[0])
    finally:
        daemon.stop()
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("appendonly*")), (
        f"{stack.stack}: the cache wrote data to disk"
    )


def _listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes matched in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_only_the_tls_port_listens_and_clients_verify_the_ca(cache: Cache) -> None:
    stack = f"{cache.stack.stack}/{cache.stack.platform}"
    ports = _listening_ports(cache.daemon.proc.pid)
    assert ports == {cache.port}, f"{stack}: redis listens on {ports}, not only TLS {cache.port}"
    # A plaintext client on the TLS port gets no answer: the server expects a handshake.
    with socket.create_connection(("127.0.0.1", cache.port), 5) as raw:
        raw.sendall(Resp.encode("PING"))
        raw.settimeout(5)
        try:
            answer = raw.recv(64)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert b"PONG" not in answer and b"NOAUTH" not in answer, f"{stack}: plaintext got {answer!r}"
    # A client that trusts another CA refuses the server.
    with pytest.raises(ssl.SSLCertVerificationError):
        Resp(cache.port, tls=cache.tls(cache.other_ca.ca), server_hostname=cache.server_name)
    # A client that checks the name the app uses, with the stack's CA, gets Redis.
    with cache.client(user=None) as c:
        reply = c("PING")
        assert isinstance(reply, RedisError) and str(reply).startswith("NOAUTH"), (
            f"{stack}: unauthenticated PING over TLS got {reply!r}"
        )


def test_default_user_is_refused(cache: Cache) -> None:
    stack = cache.stack.stack
    with cache.client(user=None) as c:
        for command in (("PING",), ("GET", "session:1"), ("SET", "x", "1"), ("KEYS", "*")):
            reply = c(*command)
            assert isinstance(reply, RedisError) and str(reply).startswith("NOAUTH"), (
                f"{stack}: unauthenticated {command[0]} answered {reply!r}"
            )
        for auth in (("AUTH", "default", ""), ("AUTH", "default", APP_PASSWORD), ("AUTH", "x")):
            reply = c(*auth)
            assert isinstance(reply, RedisError) and str(reply).startswith("WRONGPASS"), (
                f"{stack}: {auth[:2]} got {reply!r}"
            )
        wrong = c("AUTH", APP_USER, "not-the-password")
        assert isinstance(wrong, RedisError) and str(wrong).startswith("WRONGPASS"), stack
        assert c("AUTH", APP_USER, APP_PASSWORD) == "OK", f"{stack}: the app password was refused"
        assert c("PING") == "PONG", stack


DANGEROUS = [
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG", "SET", "maxmemory", "1mb"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("DEBUG", "SLEEP", "0"),
    ("MONITOR",),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("SHUTDOWN", "NOSAVE"),
    ("MODULE", "LIST"),
    ("ACL", "LIST"),
    ("CLIENT", "KILL", "TYPE", "normal"),
]


def test_app_user_has_its_data_commands_and_none_of_the_dangerous_ones(cache: Cache) -> None:
    stack = cache.stack.stack
    with cache.client(APP_USER) as c:
        assert c("SET", "session:1", "alice", "EX", "60") == "OK", stack
        assert c("INCR", "rate:1") == 1 and c("EXPIRE", "rate:1", "60") == 1, stack
        assert c("EVAL", "return redis.call('GET', KEYS[1])", 1, "session:1") == b"alice", stack
        refused = []
        for command in DANGEROUS:
            reply = c(*command)
            # DEBUG and MODULE are refused to everyone before the ACL is consulted
            # (enable-debug-command / enable-module-command no).
            by_server = command[0] in ("DEBUG", "MODULE") and "command not allowed" in str(reply)
            assert isinstance(reply, RedisError) and (
                str(reply).startswith("NOPERM") or by_server
            ), f"{stack}: the app user ran {' '.join(command)}: {reply!r}"
            refused.append(command[0])
        # Nor through a script.
        reply = c("EVAL", "return redis.call('FLUSHALL')", 0)
        assert isinstance(reply, RedisError), f"{stack}: FLUSHALL from a script: {reply!r}"
        assert c("GET", "session:1") == b"alice", f"{stack}: data lost"
    print(f"{stack}/{cache.stack.platform}: app user refused {len(refused)} commands: {refused}")


def _probe(name: str, arity: int) -> list[str]:
    """``name`` (``container|sub`` for a subcommand) with filler up to its arity.

    Redis checks the arity before the ACL (src/server.c, processCommand), so a call
    with too few arguments would be refused for the wrong reason.
    """
    words = name.split("|")
    return [*words, *["x"] * max(0, abs(arity) - len(words))]


def test_app_user_is_refused_every_command_the_server_classes_dangerous(cache: Cache) -> None:
    """Every command the running server puts in @dangerous, not a list kept by hand.

    Debian's Redis 7.0 classes them here; the pinned image runs 7.4, whose
    @dangerous holds the same commands and more (redis src/commands/*.json,
    "acl_categories"), and the rule removes the category the server knows, whatever
    it holds. INFO, SORT and RESTORE-ASKING are @dangerous without being @admin.
    """
    stack = cache.stack.stack
    with cache.client(APP_USER) as c:
        names = c("COMMAND", "LIST", "FILTERBY", "ACLCAT", "dangerous")
        assert isinstance(names, list) and len(names) > 40, f"{stack}: @dangerous is {names!r}"
        allowed = []
        for raw in sorted(n for n in names if isinstance(n, bytes)):
            name = raw.decode()
            info = c("COMMAND", "INFO", name)
            assert isinstance(info, list) and isinstance(info[0], list), f"{name}: {info!r}"
            arity = info[0][1]
            assert isinstance(arity, int), f"{name}: COMMAND INFO {info!r}"
            reply = c(*_probe(name, arity))
            # DEBUG and MODULE are refused to everyone before the ACL is consulted.
            by_server = name.startswith(("debug", "module")) and "not allowed" in str(reply)
            refused = str(reply).startswith("NOPERM") or by_server
            if not (isinstance(reply, RedisError) and refused):
                allowed.append(f"{name}: {reply!r}")
        assert not allowed, f"{stack}: the app user ran @dangerous commands: {allowed}"


def test_exporter_user_reads_info_and_nothing_else(cache: Cache) -> None:
    stack = cache.stack.stack
    with cache.client(APP_USER) as app:
        app("SET", "session:1", "alice")
    with cache.client(EXPORTER_USER) as c:
        info = c("INFO", "all")
        assert isinstance(info, bytes) and b"redis_version:" in info, f"{stack}: INFO {info!r}"
        assert b"used_memory:" in info, stack
        maxmemory = c("CONFIG", "GET", "maxmemory")
        assert isinstance(maxmemory, list) and maxmemory[0] == b"maxmemory", (
            f"{stack}: {maxmemory!r}"
        )
        assert isinstance(c("SLOWLOG", "LEN"), int), f"{stack}: SLOWLOG LEN refused"
        # Everything that returns a value: keys, dumps, and SLOWLOG GET, whose
        # entries carry a slow command's arguments.
        for command in (("GET", "session:1"), ("SET", "x", "1"), ("KEYS", "*"), ("FLUSHALL",),
                        ("CONFIG", "SET", "maxmemory", "1mb"), ("SCAN", "0"),
                        ("SLOWLOG", "GET", "10"), ("DUMP", "session:1"), ("MGET", "session:1"),
                        ("HGETALL", "session:1"), ("MONITOR",),
                        ("OBJECT", "ENCODING", "session:1"),
                        ("EVAL", "return redis.call('GET', KEYS[1])", "1", "session:1"),
                        ):  # fmt: skip
            reply = c(*command)
            assert isinstance(reply, RedisError) and str(reply).startswith("NOPERM"), (
                f"{stack}: the exporter ran {' '.join(command)}: {reply!r}"
            )


def test_health_check_runs_with_redis_cli_over_verified_tls(cache: Cache) -> None:
    """The container's health command, with only the port and the CA path adapted."""
    command = list(redis_health_check(TLS.ca_file, 6380))
    command[0] = need("redis-cli")
    command[command.index("6380")] = str(cache.port)
    command[command.index(TLS.ca_file)] = str(cache.pair.ca)
    env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": EXPORTER_PASSWORD}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "PONG", (
        f"{cache.stack.stack}: health check got {done.returncode} {done.stdout!r} {done.stderr!r}"
    )
    command[command.index(str(cache.pair.ca))] = str(cache.other_ca.ca)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() != "PONG", f"{cache.stack.stack}: health check trusted another CA"


def _info(c: Resp, section: str) -> dict[str, str]:
    reply = c("INFO", section)
    assert isinstance(reply, bytes), reply
    return dict(line.split(":", 1) for line in reply.decode().splitlines() if ":" in line)


def _fill(c: Resp, stack: str, value: bytes, first: int, last: int) -> int:
    """SET cold:first..cold:last-1, pipelined; returns ``last``."""
    for start in range(first, last, 32):
        cmds: list[tuple[str | bytes | int, ...]] = [
            ("SET", f"cold:{i}", value) for i in range(start, min(start + 32, last))
        ]
        c.send(*cmds)
        for _ in cmds:
            reply = c.read()
            assert reply == "OK", f"{stack}: write refused: {reply!r}"
    return last


def test_evicts_least_recently_used_keys_over_the_memory_cap(cache: Cache) -> None:
    stack = cache.stack.stack
    cap_mb = int(cache.stack.setting("redisMaxMemoryMb"))
    policy = cache.stack.setting("redisEvictionPolicy")
    with cache.client(EXPORTER_USER) as monitor, cache.client(APP_USER) as c:
        memory = _info(monitor, "memory")
        assert memory["maxmemory"] == str(cap_mb * 1024 * 1024), f"{stack}: {memory['maxmemory']}"
        assert memory["maxmemory_policy"] == policy, f"{stack}: {memory['maxmemory_policy']}"
        assert policy == "allkeys-lru", f"{stack}: this test models allkeys-lru, not {policy}"
        # Just under 256 KiB, so each value fits one allocator size class.
        value = b"v" * (256 * 1024 - 64)
        cap = cap_mb * 1024 * 1024
        c("SET", "hot", "session")
        # Keys without a TTL up to ~90% of the cap: no eviction yet.
        old = 0
        while int(_info(monitor, "memory")["used_memory"]) < cap * 0.9:
            old = _fill(c, stack, value, old, old + 32)
        assert _info(monitor, "stats")["evicted_keys"] == "0", f"{stack}: evicted below the cap"
        # Redis' LRU clock ticks once a second: wait (bounded) until even the
        # newest old key is two ticks idle, then touch the hot key, so LRU can
        # tell the generations apart even if writing the next one (over TLS, on a
        # loaded machine) spans a tick.
        deadline = time.monotonic() + 10
        while c("OBJECT", "IDLETIME", f"cold:{old - 1}") < 2:  # type: ignore[operator]
            assert time.monotonic() < deadline, f"{stack}: LRU clock did not advance"
            time.sleep(0.1)
        assert c("GET", "hot") == b"session", stack
        # Another ~20% of the cap, written right away: over the cap, so
        # volatile-* or noeviction would refuse these (OOM).
        n = _fill(c, stack, value, old, old + cap // len(value) // 5)
        stats = _info(monitor, "stats")
        evicted = int(stats["evicted_keys"])
        used = int(_info(monitor, "memory")["used_memory"])
        survivors = c("DBSIZE")
        assert evicted > 0, f"{stack}: nothing evicted after writing {n} x 256 KiB"
        assert evicted < old, f"{stack}: evicted {evicted}, more than the {old} older keys"
        assert used <= cap * 1.05, f"{stack}: used_memory {used} over the cap"
        assert c("GET", "hot") == b"session", f"{stack}: the recently used key was evicted"
        # LRU evicts the idle generation: few if any of the keys written after the
        # clock ticked go, while allkeys-random would spread evictions over both.
        old_left = c("EXISTS", *[f"cold:{i}" for i in range(old)])
        new_left = c("EXISTS", *[f"cold:{i}" for i in range(old, n)])
        assert isinstance(old_left, int) and isinstance(new_left, int), (old_left, new_left)
        assert n - old - new_left <= (n - old) // 20, (
            f"{stack}: {n - old - new_left} of {n - old} recent keys evicted, "
            f"{old - old_left} of {old} idle ones"
        )
        print(
            f"{stack}: wrote {n} keys, evicted {evicted} ({old - old_left} idle, "
            f"{n - old - new_left} recent), {survivors!r} left, used {used} B"
        )
    assert re.search(r"Ready to accept connections", cache.daemon.output()), stack

"""A real redis-server with the rendered redis.conf: auth, eviction, disabled commands.

Adaptations, each asserted: ``bind 0.0.0.0`` and ``port 6379`` to loopback and a
free port; the ``include`` of the secret auth.conf (masked in the render) to a
file made by the same builder the Cache component uses, with a test password.
The server is started the way the container starts it: ``redis-server <conf>``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.configs.redis import redis_auth_conf
from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.resp import RedisError, Resp
from tests.real.support import Daemon, RenderedStack, free_port, substitute, wait_for_port
from tests.support.tools import need

pytestmark = pytest.mark.slow

CONF = "/usr/local/etc/redis/redis.conf"
AUTH_CONF = "/usr/local/etc/redis/auth.conf"
PASSWORD = "luna-test-redis-Pa55word"


@dataclass
class Cache:
    stack: RenderedStack
    port: int
    daemon: Daemon

    def client(self, *, auth: bool = True) -> Resp:
        c = Resp(self.port)
        if auth:
            assert c("AUTH", PASSWORD) == "OK", f"{self.stack.stack}: AUTH refused"
        return c


@pytest.fixture(params=FULL_STACK_PARAMS, ids=stack_id)
def cache(
    request: pytest.FixtureRequest, stacks: Callable[[str, str], RenderedStack], tmp_path: Path
) -> Iterator[Cache]:
    redis_server = need("redis-server")
    stack = stacks(*request.param)
    what = f"{stack.stack}: {CONF}"
    assert stack.file("cache", AUTH_CONF) == "[secret]\n", f"{stack.stack}: auth.conf not secret"
    conf = stack.file("cache", CONF)
    port = free_port()
    conf = substitute(conf, "\nbind 0.0.0.0\n", "\nbind 127.0.0.1\n", what=what)
    conf = substitute(conf, "\nport 6379\n", f"\nport {port}\n", what=what)
    conf = substitute(
        conf, f"\ninclude {AUTH_CONF}\n", f"\ninclude {tmp_path}/auth.conf\n", what=what
    )
    (tmp_path / "auth.conf").write_text(redis_auth_conf(PASSWORD))
    (tmp_path / "redis.conf").write_text(conf)
    daemon = Daemon(
        [redis_server, str(tmp_path / "redis.conf")], log=tmp_path / "redis.log", cwd=tmp_path
    )
    try:
        wait_for_port(port, proc=daemon.proc, what=f"{stack.stack} redis-server", log=daemon.log)
        yield Cache(stack=stack, port=port, daemon=daemon)
    finally:
        daemon.stop()
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("appendonly*")), (
        f"{stack.stack}: the cache wrote data to disk"
    )


def test_unauthenticated_commands_are_refused(cache: Cache) -> None:
    stack = cache.stack.stack
    with cache.client(auth=False) as c:
        for command in (("PING",), ("GET", "session:1"), ("SET", "x", "1"), ("KEYS", "*")):
            reply = c(*command)
            assert isinstance(reply, RedisError) and str(reply).startswith("NOAUTH"), (
                f"{stack}: unauthenticated {command[0]} answered {reply!r}"
            )
        wrong = c("AUTH", "not-the-password")
        assert isinstance(wrong, RedisError) and str(wrong).startswith("WRONGPASS"), (
            f"{stack}: a wrong password got {wrong!r}"
        )
        assert c("AUTH", PASSWORD) == "OK", f"{stack}: the generated password was refused"
        assert c("PING") == "PONG", stack


@pytest.mark.parametrize("command", ["FLUSHALL", "FLUSHDB", "CONFIG", "DEBUG"])
def test_dangerous_commands_are_disabled(cache: Cache, command: str) -> None:
    args = {"CONFIG": ("GET", "maxmemory"), "DEBUG": ("SLEEP", "0")}.get(command, ())
    with cache.client() as c:
        c("SET", "keep", "me")
        reply = c(command, *args)
        assert isinstance(reply, RedisError) and "unknown command" in str(reply), (
            f"{cache.stack.stack}: {command} answered {reply!r}"
        )
        assert c("GET", "keep") == b"me", f"{cache.stack.stack}: {command} wiped data"


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
    with cache.client() as c:
        memory = _info(c, "memory")
        assert memory["maxmemory"] == str(cap_mb * 1024 * 1024), f"{stack}: {memory['maxmemory']}"
        assert memory["maxmemory_policy"] == policy, f"{stack}: {memory['maxmemory_policy']}"
        assert policy == "allkeys-lru", f"{stack}: this test models allkeys-lru, not {policy}"
        # Just under 256 KiB, so each value fits one allocator size class.
        value = b"v" * (256 * 1024 - 64)
        cap = cap_mb * 1024 * 1024
        c("SET", "hot", "session")
        # Keys without a TTL up to ~90% of the cap: no eviction yet.
        old = 0
        while int(_info(c, "memory")["used_memory"]) < cap * 0.9:
            old = _fill(c, stack, value, old, old + 32)
        assert _info(c, "stats")["evicted_keys"] == "0", f"{stack}: evicted below the cap"
        # Redis' LRU clock ticks once a second: wait (bounded) until the old keys
        # are measurably idle, then touch the hot key, so LRU can tell them apart.
        deadline = time.monotonic() + 5
        while c("OBJECT", "IDLETIME", "cold:0") == 0:
            assert time.monotonic() < deadline, f"{stack}: LRU clock did not advance"
            time.sleep(0.1)
        assert c("GET", "hot") == b"session", stack
        # Another ~20% of the cap, written within the next clock tick: over the cap,
        # so volatile-* or noeviction would refuse these (OOM).
        n = _fill(c, stack, value, old, old + cap // len(value) // 5)
        stats = _info(c, "stats")
        evicted = int(stats["evicted_keys"])
        used = int(_info(c, "memory")["used_memory"])
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

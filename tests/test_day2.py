"""Day 2: what the second and every later ``pulumi up`` does, on every stack and platform.

Each scenario renders the real program before and after an operator's change
and runs the engine model (tests/engine/, every fact cited there) on the pair:
no perpetual diff, no protected resource replaced or deleted, no moment without
a running app replica, and nothing touched that the change is not about.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from infra.settings import ConfigError
from tests.engine.facts import DaemonConfig
from tests.engine.model import Plan, Resource, plan
from tests.engine.scenarios import APP_IMAGE_NEXT, belongs_to, component_of, day2, snap

pytestmark = pytest.mark.slow  # about 60 renders of the whole program

STACKS = ("dev", "staging", "prod")
PLATFORMS = ("docker", "kubernetes")
MATRIX = [(s, p) for s in STACKS for p in PLATFORMS]
IDS = [f"{s}-{p}" for s, p in MATRIX]
# Docker hosts whose daemon.json differs: defaults merged into containers must not
# become a diff (moby daemon/logs.go, loggerutils/cache).
HOSTS = (
    DaemonConfig(),
    DaemonConfig("json-file", {"max-size": "50m", "max-file": "3", "compress": "true"}),
    DaemonConfig("local", {"max-size": "20m", "cache-disabled": "true"}),
    DaemonConfig("json-file", {"cache-max-size": "5m", "mode": "blocking"}),
)
# A published host port binds once: dev's app without the proxy is replaced
# delete-first, the one replacement that leaves a moment without it (docs/architecture.md).
DEV_GAP = {("dev", "docker")}
PASSWORDS = ("dbPassword", "redisPassword", "grafanaPassword", "elasticPassword", "jwtSecret")
# dev refuses the proxy (it would publish 80/443 on a laptop; settings.py).
DEV_SERVICES = ("cache", "monitoring", "logging")


def _names(result: Plan) -> list[str]:
    return sorted(f"{s.op} {u.split('::')[-1]}" for u, s in result.changed().items())


def _safe(stack: str, platform: str, result: Plan, timeline: list[int], what: str) -> None:
    assert not result.errors, f"{stack}/{platform} {what}: {result.errors}"
    assert not result.unapplied(), f"{stack}/{platform} {what}: never applied {result.unapplied()}"
    if (stack, platform) not in DEV_GAP:
        assert min(timeline) >= 1, (
            f"{stack}/{platform} {what}: no app running at some moment {timeline}"
        )


def _only(result: Plan, allowed: Mapping[str, Resource], *components: str, what: str) -> None:
    touched = {u for u in result.changed() if not belongs_to(u, *components)}
    # A new app image is a new RemoteImage on Docker: the platform's, and the app's only.
    touched = {u for u in touched if "remoteImage" not in u or "luna-web" not in u}
    assert not touched, f"{what} touched {sorted(u.split('::')[-1] for u in touched)}"


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_1_a_second_identical_up_has_no_steps(stack: str, platform: str) -> None:
    base = snap(stack, platform)
    for host in HOSTS if platform == "docker" else (DaemonConfig(),):
        result = plan(base, base, daemon=host)
        assert not result.changed(), f"{stack}/{platform} on {host}: {_names(result)}"
        assert not result.errors, result.errors


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_2_3_a_new_image_and_its_rollback_touch_only_the_app(stack: str, platform: str) -> None:
    base = snap(stack, platform)
    bumped = snap(stack, platform, (("appImage", APP_IMAGE_NEXT),))
    for what, before, after in (("image bump", base, bumped), ("rollback", bumped, base)):
        result, timeline = day2(before, after)
        _safe(stack, platform, result, timeline, what)
        _only(result, after, "LunaApp", what=f"{stack}/{platform} {what}")
        replaced = [u for u, s in result.changed().items() if component_of(u) == "LunaApp"]
        assert replaced, f"{stack}/{platform} {what}: the app did not change"
        print(f"{stack}/{platform} {what}: {_names(result)}; app replicas over time {timeline}")


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_4_scaling_the_app_up_and_down(stack: str, platform: str) -> None:
    base = snap(stack, platform)
    replicas = (
        sum(1 for r in base.values() if "luna-app-web" in r.name) if platform == "docker" else 0
    )
    if stack == "dev":
        # SQLite has one writer: dev refuses to scale (settings), before anything is created.
        with pytest.raises(ConfigError, match="appReplicas"):
            snap(stack, platform, (("appReplicas", "2"),))
        return
    count = {"staging": 2, "prod": 3}[stack]
    assert platform != "docker" or replicas == count
    up = snap(stack, platform, (("appReplicas", str(count + 2)),))
    for what, before, after in (("scale up", base, up), ("scale down", up, base)):
        result, timeline = day2(before, after)
        _safe(stack, platform, result, timeline, what)
        # LunaAppDown's threshold is the configured replica count, so Prometheus'
        # rules follow a scale change (its data volume is untouched).
        _only(result, after, "LunaApp", "Monitoring", what=f"{stack}/{platform} {what}")
        monitoring = [u for u in result.changed() if component_of(u) == "Monitoring"]
        assert all("prometheus" in u for u in monitoring), monitoring
        app = {s.op for u, s in result.changed().items() if component_of(u) == "LunaApp"}
        assert "replace" not in app, f"{stack}/{platform} {what}: {_names(result)}"


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_5_memory_times_four_is_applied_in_place(stack: str, platform: str) -> None:
    base = snap(stack, platform)
    keys = {"appMemoryMb": 4}
    config = tuple((k, str(int(_setting(stack, k)) * f)) for k, f in keys.items())
    bigger = snap(stack, platform, config)
    result, timeline = day2(base, bigger)
    _safe(stack, platform, result, timeline, "memory x4")
    if platform == "docker":
        app = [s for u, s in result.changed().items() if "luna-app-web" in u]
        assert app and all(s.op == "update" and s.keys <= {"memory", "memorySwap"} for s in app), (
            f"{stack}: app memory is not raised in place: {_names(result)}"
        )
        # Every container of the stack, raised x4 in the form the program writes:
        # memory and swap together, which the daemon accepts in place.
        raised = {u: _times_four(r) for u, r in base.items()}
        result = plan(base, raised)
        assert not result.errors, f"{stack}: {result.errors}"
        assert {s.op for s in result.changed().values()} <= {"update"}, _names(result)


def _times_four(r: Resource) -> Resource:
    if r.type != "docker:index/container:Container":
        return r
    memory = int(r.inputs["memory"]) * 4
    inputs = {**r.inputs, "memory": memory, "memorySwap": memory}
    return Resource(**{**r.__dict__, "inputs": inputs})


def _setting(stack: str, key: str) -> str:
    from infra.render import load_stack_config

    config, _ = load_stack_config(stack)
    return config[f"luna:{key}"]


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_6_rotating_every_password_replaces_nothing_protected(stack: str, platform: str) -> None:
    base = snap(stack, platform)
    for key in PASSWORDS:
        rotated = snap(stack, platform, secrets=((key, "Rotated0Password0Value0123456789"),))
        result, timeline = day2(base, rotated)
        _safe(stack, platform, result, timeline, f"rotating {key}")
    # A certificate inside its renewal window is replaced by its provider.
    if stack != "dev":
        result, timeline = day2(base, base, renewed=["luna-proxy-tls-cert"])
        _safe(stack, platform, result, timeline, "certificate renewal")
        # The internal CA's Redis certificate: Redis and nothing protected is replaced.
        result, timeline = day2(base, base, renewed=["luna-ca-cache-cert"])
        _safe(stack, platform, result, timeline, "internal certificate renewal")
        renewed = _names(result)
        assert "replace luna-ca-cache-cert" in renewed, f"{stack}/{platform}: {renewed}"
        _only(result, {}, "Cache", "InternalCA", what=f"{stack}/{platform} Redis cert renewal")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_7_switching_each_optional_dev_service_on_and_off(platform: str) -> None:
    base = snap("dev", platform)
    for service in DEV_SERVICES:
        on = snap("dev", platform, ((service, "true"),))
        for what, before, after in ((f"{service} on", base, on), (f"{service} off", on, base)):
            result, timeline = day2(before, after)
            _safe("dev", platform, result, timeline, what)
            assert result.changed(), f"dev/{platform} {what} changed nothing"


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_8_a_failed_migration_leaves_the_running_app_and_edge_untouched(
    stack: str, platform: str
) -> None:
    base = snap(stack, platform)
    bumped = snap(stack, platform, (("appImage", APP_IMAGE_NEXT),))
    result, timeline = day2(base, bumped, failing=["luna-app-migrate"])
    assert result.failed and result.failed.endswith("::luna-app-migrate"), result.events
    for urn, r in base.items():
        if component_of(urn) in ("LunaApp", "ReverseProxy") and "luna-app-migrate" not in urn:
            assert not result.executed(urn), f"{stack}/{platform}: {r.name} was touched"
    assert min(timeline) == timeline[0] >= 1, f"{stack}/{platform}: app replicas {timeline}"

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
from tests.engine.facts import DaemonConfig, cnpg_watches
from tests.engine.liveness import Liveness
from tests.engine.model import Plan, Resource, State, plan
from tests.engine.scenarios import APP_IMAGE_NEXT, belongs_to, component_of, day2, live, snap

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
# Redis restarts with a new ACL or certificate rather than answer beside its
# successor (components/cache.py, single_instance); it holds nothing durable.
# PostgreSQL's password rotation is test_11's, against the behaviour required.
_ROTATION_GAPS = {"redisPassword": ("cache",), "dbPassword": ("database",)}
# dev refuses the proxy (it would publish 80/443 on a laptop; settings.py).
DEV_SERVICES = ("cache", "monitoring", "logging")


def _names(result: Plan) -> list[str]:
    return sorted(f"{s.op} {u.split('::')[-1]}" for u, s in result.changed().items())


def _safe(
    stack: str,
    platform: str,
    result: Plan,
    timeline: list[int],
    what: str,
    *,
    before: Mapping[str, Resource] | State | None = None,
    after: Mapping[str, Resource] | None = None,
    gaps: tuple[str, ...] = (),
) -> Liveness | None:
    """No error, nothing unapplied, and every service kept serving: the app, the
    edge, the database, the cache and alert delivery (``gaps``: the services this
    change may stop for a moment, each said where it is asked for)."""
    assert not result.errors, f"{stack}/{platform} {what}: {result.errors}"
    assert not result.unapplied(), f"{stack}/{platform} {what}: never applied {result.unapplied()}"
    if (stack, platform) not in DEV_GAP:
        assert min(timeline) >= 1, (
            f"{stack}/{platform} {what}: no app running at some moment {timeline}"
        )
    if before is None or after is None:
        return None
    return _alive(stack, platform, result, before, after, what, gaps=gaps)


def _alive(
    stack: str,
    platform: str,
    result: Plan,
    before: Mapping[str, Resource] | State,
    after: Mapping[str, Resource],
    what: str,
    *,
    gaps: tuple[str, ...] = (),
    unhealthy: frozenset[str] = frozenset(),
) -> Liveness:
    timeline = live(result, before, after, set(unhealthy))
    olds = before.resources if isinstance(before, State) else before
    kept = {s for s, t in timeline.serving.items() if t[0] >= 1 and _serves(after, s, olds)}
    allowed = set(gaps) | ({"app"} if (stack, platform) in DEV_GAP else set())
    stopped = {s: t for s, t in timeline.gaps(*kept).items() if s not in allowed}
    assert not stopped, f"{stack}/{platform} {what}: nothing serving at some moment: {stopped}"
    assert not timeline.unhealthy_answering(), (
        f"{stack}/{platform} {what}: an unhealthy instance answered: "
        f"{timeline.unhealthy_answering()}"
    )
    # One cache: two answering one name split sessions and rate limits.
    assert timeline.most_running("cache") <= 1, f"{stack}/{platform} {what}: two caches answered"
    return timeline


def _serves(after: Mapping[str, Resource], service: str, before: Mapping[str, Resource]) -> bool:
    """The service runs before and after (switching it off is not a gap)."""
    from tests.engine.scenarios import classify

    def has(rs: Mapping[str, Resource]) -> bool:
        return any((k := classify(r)) and k[0] == service for r in rs.values())

    return has(after) and has(before)


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
        _safe(stack, platform, result, timeline, what, before=before, after=after)
        _only(result, after, "LunaApp", what=f"{stack}/{platform} {what}")
        replaced = [u for u, s in result.changed().items() if component_of(u) == "LunaApp"]
        assert replaced, f"{stack}/{platform} {what}: the app did not change"
        print(f"{stack}/{platform} {what}: {_names(result)}; app replicas over time {timeline}")


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_4_scaling_the_app_up_and_down(stack: str, platform: str) -> None:
    base = snap(stack, platform)
    replicas = (
        sum(1 for r in base.values() if "luna-app-web" in r.name and r.type.endswith(":Container"))
        if platform == "docker"
        else 0
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
        _safe(stack, platform, result, timeline, what, before=before, after=after)
        # LunaAppDown's threshold is the configured replica count, so Prometheus'
        # rules follow a scale change (its data volume is untouched).
        _only(result, after, "LunaApp", "Monitoring", what=f"{stack}/{platform} {what}")
        monitoring = [u for u in result.changed() if component_of(u) == "Monitoring"]
        assert all("prometheus" in u for u in monitoring), monitoring
        # The admission gate (a script, components/platforms/docker/gate.py) runs
        # again for the new replicas; no container or workload is replaced.
        app = {
            s.op
            for u, s in result.changed().items()
            if component_of(u) == "LunaApp" and "command:local:Command" not in u
        }
        assert "replace" not in app, f"{stack}/{platform} {what}: {_names(result)}"


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_5_memory_times_four_is_applied_in_place(stack: str, platform: str) -> None:
    base = snap(stack, platform)
    keys = {"appMemoryMb": 4}
    config = tuple((k, str(int(_setting(stack, k)) * f)) for k, f in keys.items())
    bigger = snap(stack, platform, config)
    result, timeline = day2(base, bigger)
    _safe(stack, platform, result, timeline, "memory x4", before=base, after=bigger)
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
        # The database's own rotation is test_11 (PostgreSQL never restarted).
        _safe(stack, platform, result, timeline, f"rotating {key}", before=base, after=rotated,
              gaps=_ROTATION_GAPS.get(key, ()))  # fmt: skip
    # A certificate inside its renewal window is replaced by its provider.
    if stack != "dev":
        result, timeline = day2(base, base, renewed=["luna-proxy-tls-cert"])
        _safe(stack, platform, result, timeline, "certificate renewal", before=base, after=base)
        # The internal CA's Redis certificate: Redis and nothing protected is replaced.
        result, timeline = day2(base, base, renewed=["luna-ca-cache-cert"])
        _safe(stack, platform, result, timeline, "internal certificate renewal", before=base,
              after=base, gaps=("cache",))  # fmt: skip
        renewed = _names(result)
        assert "replace luna-ca-cache-cert" in renewed, f"{stack}/{platform}: {renewed}"
        _only(result, {}, "Cache", "InternalCA", what=f"{stack}/{platform} Redis cert renewal")
        # The logging stack's certificates: each renewal reaches its program
        # (a replaced cert's new PEM is a changed input) and nothing protected.
        for cert in ("elasticsearch", "logstash", "kibana"):
            result, timeline = day2(base, base, renewed=[f"luna-ca-{cert}-cert"])
            _safe(stack, platform, result, timeline, f"{cert} certificate renewal")
            renewed = _names(result)
            what = f"{stack}/{platform} {cert} cert renewal"
            assert f"replace luna-ca-{cert}-cert" in renewed, f"{what}: {renewed}"
            print(f"\n{what}: {sorted(renewed)}")
            assert any(cert in r and "luna-ca-" not in r for r in renewed), (
                f"{what}: no consumer of the new certificate changes: {renewed}"
            )
            _only(result, {}, "Logging", "InternalCA", what=what)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_7_switching_each_optional_dev_service_on_and_off(platform: str) -> None:
    base = snap("dev", platform)
    for service in DEV_SERVICES:
        on = snap("dev", platform, ((service, "true"),))
        for what, before, after in ((f"{service} on", base, on), (f"{service} off", on, base)):
            result, timeline = day2(before, after)
            _safe("dev", platform, result, timeline, what, before=before, after=after)
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


# ------------------------------------------------------ when things go wrong
BAD_IMAGE = "ghcr.io/luna-app/luna-web:1.1.0-broken@sha256:" + "2" * 64
"""Starts, never passes its health check."""


def _bad(stack: str, platform: str) -> tuple[dict[str, Resource], dict[str, Resource]]:
    return snap(stack, platform), snap(stack, platform, (("appImage", BAD_IMAGE),))


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_9_a_bad_image_then_up_again_then_a_rollback_keeps_the_old_version_serving(
    stack: str, platform: str
) -> None:
    base, bad = _bad(stack, platform)
    unhealthy = frozenset({BAD_IMAGE})
    where = f"{stack}/{platform}"
    first = plan(base, bad, unhealthy=unhealthy)
    assert first.failed and first.partial, f"{where}: the bad image did not fail: {first.events}"
    if (stack, platform) in DEV_GAP:
        # dev without the proxy publishes the app's port itself: its one container
        # goes first (DEV_GAP), so the bad one is all there is until the rollback.
        back = plan(first.next or State({}), base, unhealthy=unhealthy)
        assert not back.errors and back.next is not None and not back.next.pending, back.errors
        assert not [u for u, r in back.next.resources.items() if r.init_errors], back.events
        return
    again = plan(first.next or State({}), bad, unhealthy=unhealthy)
    assert again.failed, f"{where}: a second `up` of the bad image succeeded: {again.events}"
    back = plan(again.next or State({}), base, unhealthy=unhealthy)
    assert not back.failed and not back.errors, f"{where} rollback: {back.errors}"
    for what, result, before, after in (
        ("bad image", first, base, bad),
        ("up again", again, first.next, bad),
        ("rollback", back, again.next, base),
    ):
        assert before is not None
        timeline = _alive(stack, platform, result, before, after, what, unhealthy=unhealthy)
        print(f"{where} {what}: {result.failed and result.failed.split('::')[-1]} failed; "
              f"app serving {timeline.serving['app']}")  # fmt: skip
    assert back.next is not None and not back.next.pending, f"{where}: {back.pending_deletes()}"
    leftover = [u for u, r in back.next.resources.items() if r.init_errors]
    assert not leftover, f"{where}: still half-created after the rollback: {leftover}"


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_10_an_interrupted_up_then_a_revert(stack: str, platform: str) -> None:
    base = snap(stack, platform)
    bumped = snap(stack, platform, (("appImage", APP_IMAGE_NEXT),))
    full = plan(base, bumped)
    app = [
        i
        for i, (e, u) in enumerate(full.events)
        if e in ("delete", "create", "update")
        and u.endswith(("::luna-app-web", "::luna-app-web-0", "::luna-app-web-1"))
    ]
    assert app, f"{stack}/{platform}: no app step in {full.events}"
    # Docker: killed right after the first new replica is created. Kubernetes:
    # killed before the Deployment's patch (killed during it, the cluster rolls
    # on and the state never knew: docs/runbooks/rollback.md, `up --refresh`).
    starts = [i for i in app if full.events[i][1] not in {u for _, u in full.events[:i]}]
    at = starts[1] if len(starts) > 1 and platform == "docker" else starts[0]
    cut = plan(base, bumped, interrupt_after=at)
    assert cut.next is not None and cut.failed
    revert = plan(cut.next, base)
    assert not revert.errors, f"{stack}/{platform} revert: {revert.errors}"
    _alive(stack, platform, cut, base, bumped, "interrupted up")
    _alive(stack, platform, revert, cut.next, base, "revert")
    assert revert.next is not None and not revert.next.pending, revert.pending_deletes()
    print(f"{stack}/{platform}: interrupted after {cut.events[-2:]}, pending "
          f"{[u.split('::')[-1] for u in cut.pending_deletes()]}; revert ok")  # fmt: skip


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_11_a_database_password_rotation_never_restarts_postgres(stack: str, platform: str) -> None:
    """Required behaviour (issue 22): the Docker side needs the database's
    rotation without restart (docker-recovery), the Kubernetes side needs the
    role Secrets labelled for CloudNativePG (k8s-recovery)."""
    base = snap(stack, platform)
    rotated = snap(stack, platform, secrets=(("dbPassword", "Rotated0Password0Value0123456789"),))
    result, timeline = day2(base, rotated)
    _safe(stack, platform, result, timeline, "database password", before=base, after=rotated)
    database = {u: s for u, s in result.changed().items() if component_of(u) == "Database"}
    servers = [u for u, s in database.items() if s.op in ("replace", "delete") and (
        "Container" in u or ":Cluster::" in u)]  # fmt: skip
    assert not servers, f"{stack}/{platform}: PostgreSQL replaced: {servers}"
    if platform == "kubernetes":
        # The app's new URL rolls its pods at once; the operator must apply the
        # role's new password as soon as its Secret changes (facts.cnpg_watches).
        secrets = [u for u in database if ":Secret::" in u]
        unwatched = [u.split("::")[-1] for u in secrets if not cnpg_watches(rotated[u].inputs)]
        assert not unwatched, f"{stack}: CloudNativePG never reloads {unwatched}"


def _pair_for(host: str) -> tuple[str, str]:
    """A self-signed ECDSA pair for ``host``, valid for 90 days (PEM cert, PEM key)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


@pytest.mark.parametrize(("stack", "platform"), [m for m in MATRIX if m[0] != "dev"],
                         ids=[i for i in IDS if not i.startswith("dev")])  # fmt: skip
def test_12_edge_certificate_and_nginx_settings_change_with_no_refused_connection(
    stack: str, platform: str
) -> None:
    base = snap(stack, platform)
    # A real pair for the stack's host: the settings refuse anything less (tls_checks.py).
    pem, key = _pair_for("staging.luna-app.com" if stack == "staging" else "luna-app.com")
    for what, after in (
        ("tls certificate", snap(stack, platform, secrets=(("tlsCert", pem), ("tlsKey", key)))),
        ("nginx setting", snap(stack, platform, (("clientMaxBodyMb", "20"),))),
    ):
        result, timeline = day2(base, after)
        _safe(stack, platform, result, timeline, what, before=base, after=after)
        _only(result, after, "ReverseProxy", what=f"{stack}/{platform} {what}")
        edge = {u.split("::")[-1]: s.op for u, s in result.changed().items()}
        if platform == "docker":
            # nginx itself untouched: the files are rewritten and reloaded in place.
            touched = [u for u in result.changed() if u.split("::")[-2].endswith(":Container")]
            assert not touched, f"{stack} {what}: {edge}"
            written = {
                edge.get("luna-proxy-nginx-files"),
                edge.get("luna-proxy-nginx-secret-files"),
            }
            assert "update" in written, f"{stack} {what}: {edge}"
            assert edge.get("luna-proxy-nginx-reload") == "replace", f"{stack} {what}: {edge}"
        print(f"{stack}/{platform} {what}: {edge}")


@pytest.mark.parametrize(("stack", "platform"), MATRIX, ids=IDS)
def test_13_a_redis_password_or_certificate_rotation_never_has_two_caches(
    stack: str, platform: str
) -> None:
    cache = (("cache", "true"),) if stack == "dev" else ()  # off in dev by default
    base = snap(stack, platform, cache)
    rotated = snap(
        stack, platform, cache, secrets=(("redisPassword", "Rotated0Password0Value0123456789"),)
    )
    cases: list[tuple[str, dict[str, Resource], tuple[str, ...]]] = [
        ("redis password", rotated, ())
    ]
    if stack != "dev":
        cases.append(("redis certificate", base, ("luna-ca-cache-cert",)))
    for what, after, renewed in cases:
        result, timeline = day2(base, after, renewed=renewed)
        seen = _safe(stack, platform, result, timeline, what, before=base, after=after,
                     gaps=("cache",))  # fmt: skip
        assert seen is not None and seen.most_running("cache") == 1, seen
        print(f"{stack}/{platform} {what}: caches answering {seen.running['cache']}")


@pytest.mark.parametrize(("stack", "platform"), [m for m in MATRIX if m[0] != "dev"],
                         ids=[i for i in IDS if not i.startswith("dev")])  # fmt: skip
def test_14_a_postgres_minor_image_bump(stack: str, platform: str) -> None:
    """(dev runs SQLite in the app's volume: no PostgreSQL.)"""
    """Kubernetes: a switchover where there is a standby; Docker: one restart,
    measured on the rehearsal (docs/runbooks/rollback.md)."""
    key, image = (
        ("cnpgPostgresImage", "ghcr.io/cloudnative-pg/postgresql:15.11-bookworm")
        if platform == "kubernetes"
        else ("postgresImage", "ghcr.io/luna-app/luna-postgres:15.11-pgbackrest2.45")
    )
    base = snap(stack, platform)
    bumped = snap(stack, platform, ((key, image),))
    result, timeline = day2(base, bumped)
    standby = platform == "kubernetes" and _instances(bumped) > 1
    seen = _safe(stack, platform, result, timeline, "postgres minor", before=base, after=bumped,
                 gaps=() if standby else ("database",))  # fmt: skip
    assert seen is not None
    if standby:
        assert seen.switchovers, f"{stack}: the primary was restarted, not switched over"
    else:
        restarts = sum(1 for a, b in zip(seen.serving["database"], seen.serving["database"][1:],
                                         strict=False) if a >= 1 > b)  # fmt: skip
        assert restarts == 1, f"{stack}/{platform}: database {seen.serving['database']}"
    print(f"{stack}/{platform} postgres minor: database {seen.serving['database']}, "
          f"switchovers {seen.switchovers}")  # fmt: skip


def _instances(resources: Mapping[str, Resource]) -> int:
    return max(
        (int(r.inputs["spec"]["instances"]) for r in resources.values()
         if r.type == "kubernetes:postgresql.cnpg.io/v1:Cluster"),
        default=0,
    )  # fmt: skip


def test_15_destroy_excluding_protected_leaves_a_database_that_starts_and_archives() -> None:
    """What CloudNativePG needs to start an instance and archive WAL stays: the
    Cluster, every Secret it names, and every NetworkPolicy over its pods."""
    from tests.engine.model import destroy_excluding_protected

    stack = "prod"  # the stack that protects its data (settings: protect in prod)
    state = snap(stack, "kubernetes")
    _, kept = destroy_excluding_protected(state)
    (cluster,) = [u for u, r in state.items() if r.type.endswith("cnpg.io/v1:Cluster")]
    assert state[cluster].protect, "prod's database cluster is not protected"
    names = _secret_names(state[cluster].inputs.get("spec") or {})
    secrets = {(r.inputs["metadata"].get("name") or r.outputs["metadata"]["name"]): u
               for u, r in state.items() if r.type == "kubernetes:core/v1:Secret"}  # fmt: skip
    lost = sorted(n for n in names if secrets.get(n) not in kept)
    assert not lost, f"{stack}: the retained cluster's Secrets are deleted: {lost}"
    labels = (state[cluster].inputs["spec"].get("inheritedMetadata") or {}).get("labels") or {}
    policies = [u for u, r in state.items() if r.type.endswith("NetworkPolicy")
                and _selects(r.inputs["spec"].get("podSelector") or {}, labels)]  # fmt: skip
    gone = sorted(state[u].inputs["metadata"]["name"] for u in policies if u not in kept)
    assert policies and not gone, f"{stack}: policies over the database deleted: {gone}"


def _secret_names(spec: Mapping[str, object]) -> set[str]:
    """Every ``name`` under a ``…Secret`` key of the Cluster's spec."""
    found: set[str] = set()

    def walk(value: object, key: str = "") -> None:
        if isinstance(value, dict):
            if key.lower().endswith("secret") and isinstance(value.get("name"), str):
                found.add(value["name"])
            for k, v in value.items():
                if isinstance(v, str) and k.lower().endswith("secret"):
                    found.add(v)
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)

    walk(spec)
    return found


def _selects(selector: Mapping[str, object], labels: Mapping[str, str]) -> bool:
    match = selector.get("matchLabels") or {}
    assert isinstance(match, dict)
    return all(labels.get(k) == v for k, v in match.items())


@pytest.mark.parametrize("stack", STACKS)
def test_16_a_renamed_kube_context_replaces_nothing(stack: str) -> None:
    """The provider has a clusterIdentifier (pulumi-kubernetes DiffConfig)."""
    before = snap(stack, "kubernetes", (("kubeContext", "luna"),))
    after = snap(stack, "kubernetes", (("kubeContext", "luna-renamed"),))
    providers = [r for r in after.values() if r.type == "pulumi:providers:kubernetes"]
    assert providers and all(r.inputs.get("clusterIdentifier") for r in providers), providers
    result = plan(before, after)
    assert not result.errors, result.errors
    replaced = [u.split("::")[-1] for u, s in result.changed().items() if s.op == "replace"]
    assert not replaced, f"{stack}: {replaced}"
    # Without the identifier, the same change of the active cluster replaces all.
    bare = {u: _without_identifier(r, "c2") for u, r in after.items()}
    old = {u: _without_identifier(r, "c1") for u, r in before.items()}
    result = plan(old, bare)
    replaced = [u for u, s in result.changed().items() if s.op == "replace"]
    assert len(replaced) > 10 and result.errors if stack == "prod" else replaced, replaced


def _without_identifier(r: Resource, cluster: str) -> Resource:
    if r.type != "pulumi:providers:kubernetes":
        return r
    inputs = {k: v for k, v in r.inputs.items() if k != "clusterIdentifier"}
    return Resource(**{**r.__dict__, "inputs": {**inputs, "cluster": cluster}})


def test_17_a_database_password_rotation_patches_the_protected_role_secrets() -> None:
    """Issue 21: the Secrets the Cluster reads are protected with it, so a rotation
    must be an in-place update (the data provider's enableSecretMutable) that
    CloudNativePG applies at once (reload label); under a provider with immutable
    Secrets the same rotation is refused by protection."""
    base = snap("prod", "kubernetes")
    rotated = snap("prod", "kubernetes",
                   secrets=(("dbPassword", "Rotated0Password0Value0123456789"),))  # fmt: skip
    result = plan(base, rotated)
    assert not result.errors, result.errors
    roles = {u: s for u, s in result.changed().items() if ":Secret::" in u and rotated[u].protect}
    assert roles, "no protected Secret changes with the database password"
    for urn, step in roles.items():
        name = urn.split("::")[-1]
        assert step.op == "update", f"{name}: {step.op}"
        assert cnpg_watches(rotated[urn].inputs), f"CloudNativePG never reloads {name}"
        assert result.executed(urn), f"{name} never written"
    # The same rotation under the default provider (immutable Secrets) fails.
    frozen = {u: _immutable_secrets(r) for u, r in rotated.items()}
    refused = plan({u: _immutable_secrets(r) for u, r in base.items()}, frozen)
    assert any("marked for protection" in e for e in refused.errors), refused.errors


def _immutable_secrets(r: Resource) -> Resource:
    if r.type != "pulumi:providers:kubernetes":
        return r
    return Resource(**{**r.__dict__, "inputs": {**r.inputs, "enableSecretMutable": "false"}})


def test_18_moving_the_role_secrets_to_the_data_provider_replaces_nothing() -> None:
    """The first `up` of this change: the Secrets were under the platform's provider
    and unprotected; they move to its twin (same clusterIdentifier) in place."""
    now = snap("prod", "kubernetes")
    (main,) = [u for u, r in now.items() if u.endswith("::luna-kubernetes-provider")]
    data = [u for u, r in now.items() if u.endswith("::luna-kubernetes-data-provider")]
    assert data, "no data provider"
    was = {u: Resource(**{**r.__dict__, "provider": main, "protect": False,
                          "retain_on_delete": False})
           if r.provider in data else r
           for u, r in now.items() if u not in data}  # fmt: skip
    result = plan(was, now)
    assert not result.errors, result.errors
    touched = {u.split("::")[-1]: s.op for u, s in result.changed().items()}
    assert touched == {"luna-kubernetes-data-provider": "create"}, touched

"""The engine model's own tests: each fact against its upstream source's behaviour.

These fix the model; tests/test_day2.py runs it on the program's renders.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.platforms.docker.forms import docker_cpus, go_duration
from tests.engine.facts import (
    DaemonConfig,
    diff,
    go_duration_string,
    nano_to_decimal_string,
    read_back,
)
from tests.engine.liveness import liveness
from tests.engine.model import Resource, plan, running

CONTAINER = "docker:index/container:Container"


# ------------------------------------------------------------ read-back facts
@pytest.mark.parametrize(
    ("cpus", "spelled"),
    # helpers.go nanoInt64ToDecimalString: "round" values keep one decimal, values
    # with a zero elsewhere lose every trailing zero (Count("0") == 9 test).
    [(1, "1.0"), (2, "2.0"), (0.5, "0.5"), (1.5, "1.5"), (0.25, "0.25"), (10, "10."),
     (20, "20."), (16, "16.0"), (0.1, "0.1"), (10.5, "10.5"), (1.05, "1.05")],
)  # fmt: skip
def test_cpus_read_back_as_the_provider_spells_them(cpus: float, spelled: str) -> None:
    assert nano_to_decimal_string(round(cpus * 10**9)) == spelled
    # The program writes the same spelling, so a second `up` sees no diff.
    assert docker_cpus(cpus) == spelled


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5, "5s"), (59, "59s"), (60, "1m0s"), (90, "1m30s"), (120, "2m0s"),
     (3600, "1h0m0s"), (3725, "1h2m5s")],
)  # fmt: skip
def test_durations_read_back_in_go_format(seconds: int, text: str) -> None:
    assert go_duration_string(seconds) == text
    assert go_duration(seconds) == text


def _container(**inputs: Any) -> dict[str, Any]:
    base = {"name": "c", "image": "sha256:1", "memory": 512, "memorySwap": 512, "cpus": "1.0"}
    return {**base, **inputs}


def test_a_whole_cpus_spelled_1_replaces_the_container_on_every_up() -> None:
    # The first build's bug: `cpus = "1"` reads back as "1.0", and cpus is ForceNew.
    written = _container(cpus="1")
    d = diff(CONTAINER, read_back(CONTAINER, written, DaemonConfig()), written)
    assert d.replace == {"cpus"}, d


def test_health_check_in_seconds_is_a_perpetual_diff_but_never_applied() -> None:
    written = _container(healthcheck={"tests": ["CMD", "true"], "interval": "60s"})
    d = diff(CONTAINER, read_back(CONTAINER, written, DaemonConfig()), written)
    assert d.changed == {"healthcheck"} and not d.replace and d.unapplied == {"healthcheck"}


def test_daemon_log_opts_merge_into_default_driver_only_except_cache() -> None:
    daemon = DaemonConfig("json-file", {"max-size": "50m", "cache-disabled": "true"})
    json_file = _container(logDriver="json-file", logOpts={"max-file": "3"})
    state = read_back(CONTAINER, json_file, daemon)
    assert state["logOpts"] == {"max-file": "3", "max-size": "50m", "cache-disabled": "true"}
    assert diff(CONTAINER, state, json_file).replace == {"logOpts"}
    local = _container(logDriver="local", logOpts={"max-file": "3"})
    # Another driver still takes the daemon's cache-* keys (loggerutils/cache).
    assert read_back(CONTAINER, local, daemon)["logOpts"] == {
        "max-file": "3",
        "cache-disabled": "true",
    }


def test_memory_without_swap_reads_back_twice_as_swap() -> None:
    written = _container(memorySwap=None)
    state = read_back(CONTAINER, written, DaemonConfig())
    assert state["memorySwap"] == 1024
    d = diff(CONTAINER, state, written)
    assert d.changed == {"memorySwap"} and not d.replace, d


def test_labels_envs_and_uploads_force_a_new_container() -> None:
    for key, value in (("labels", [{"label": "a", "value": "b"}]), ("envs", ["A=1"]),
                       ("uploads", [{"file": "/x", "content": "1"}])):  # fmt: skip
        old, new = _container(), _container(**{key: value})
        assert key in diff(CONTAINER, read_back(CONTAINER, old, DaemonConfig()), new).replace


def test_kubernetes_replacement_rules() -> None:
    job = {"metadata": {"name": "m"}, "spec": {"template": {"spec": {"x": 1}}}}
    changed = {"metadata": {"name": "m"}, "spec": {"template": {"spec": {"x": 2}}}}
    d = diff("kubernetes:batch/v1:Job", job, changed)
    assert d.replace and d.delete_before_replace, "a named Job is replaced delete-first"
    dep = {"metadata": {"name": "app"}, "spec": {"template": {"image": "a"}}}
    d = diff("kubernetes:apps/v1:Deployment", dep, {**dep, "spec": {"template": {"image": "b"}}})
    assert d.changed and not d.replace, "a Deployment's template rolls in place"
    secret = {"metadata": {}, "stringData": {"k": "1"}}
    d = diff("kubernetes:core/v1:Secret", secret, {"metadata": {}, "stringData": {"k": "2"}})
    assert d.replace and not d.delete_before_replace, "an auto-named Secret is replaced first"


# -------------------------------------------------------------- engine steps
def _res(name: str, type_: str = CONTAINER, **kw: Any) -> Resource:
    inputs = kw.pop("inputs", _container(name=name))
    return Resource(
        urn=f"urn:pulumi:s::p::{type_}::{name}",
        type=type_,
        name=name,
        inputs=inputs,
        protect=kw.get("protect", False),
        delete_before_replace=kw.get("dbr", False),
        dependencies=tuple(kw.get("deps", ())),
        property_dependencies=kw.get("prop_deps", {}),
    )


def _state(*resources: Resource) -> dict[str, Resource]:
    return {r.urn: r for r in resources}


def test_protected_resource_that_must_be_replaced_fails_the_update() -> None:
    old = _res("db", protect=True)
    new = _res("db", protect=True, inputs=_container(name="db", image="sha256:2"))
    result = plan(_state(old), _state(new))
    assert result.errors and "marked for protection" in result.errors[0], result.errors
    deleted = plan(_state(old), {})
    assert "cannot be deleted because it is protected" in deleted.errors[0]


def test_create_before_delete_deletes_old_copies_at_the_end() -> None:
    a = _res("a")
    b = _res("b", deps=[a.urn])
    a2 = _res("a", inputs=_container(name="a2"), deps=[])
    b2 = _res("b", inputs=_container(name="b2"), deps=[a.urn])
    result = plan(_state(a, b), _state(a2, b2))
    assert result.events == [("create", a.urn), ("create", b.urn), ("delete", b.urn),
                             ("delete", a.urn)]  # fmt: skip


def test_delete_before_replace_goes_delete_first_and_leaves_a_gap() -> None:
    a = _res("app", inputs=_container(name="app"))
    a2 = _res("app", dbr=True, inputs=_container(name="app", image="sha256:2"))
    result = plan(_state(a), _state(a2))
    assert result.events == [("delete", a.urn), ("create", a.urn)]
    timeline = running(result, _state(a), _state(a2), lambda r: 1, lambda r: True)
    assert min(timeline) == 0, timeline


def test_dbr_replaces_dependants_only_through_their_inputs() -> None:
    root = _res("net", inputs=_container(name="net"), dbr=True)
    via_input = _res("x", deps=[root.urn], prop_deps={"networksAdvanced": (root.urn,)})
    via_depends_on = _res("y", deps=[root.urn])
    root2 = _res("net", inputs=_container(name="net2"), dbr=True)
    result = plan(_state(root, via_input, via_depends_on), _state(root2, via_input, via_depends_on))
    assert result.steps[via_input.urn].op == "replace"
    assert result.steps[via_depends_on.urn].op == "same", "depends_on never forces a replacement"


def test_a_failed_step_cancels_everything_after_it_and_the_deletes() -> None:
    job = _res("job", inputs=_container(name="job1"))
    app = _res("app", deps=[job.urn])
    job2 = _res("job", inputs=_container(name="job2"))
    app2 = _res("app", inputs=_container(name="app2"), deps=[job.urn])
    result = plan(_state(job, app), _state(job2, app2), failing=["job"])
    assert result.events == [("fail", job.urn)], result.events
    assert not result.executed(app.urn)


def test_memory_above_the_swap_limit_is_refused_unless_swap_is_sent() -> None:
    old = _res("c", inputs=_container(name="c", memory=512, memorySwap=None))
    bigger = _res("c", inputs=_container(name="c", memory=2048, memorySwap=None))
    assert plan(_state(old), _state(bigger)).errors, "2048 MiB > 1024 MiB swap was accepted"
    old = _res("c", inputs=_container(name="c", memory=512, memorySwap=512))
    bigger = _res("c", inputs=_container(name="c", memory=2048, memorySwap=2048))
    result = plan(_state(old), _state(bigger))
    assert not result.errors and result.steps[old.urn].op == "update", result


def test_a_cloudnativepg_cluster_is_patched_in_place_and_replaced_only_when_renamed() -> None:
    from tests.engine.facts import diff

    kind = "kubernetes:postgresql.cnpg.io/v1:Cluster"
    old = {"metadata": {"name": "database", "namespace": "luna-prod"}, "spec": {"instances": 3}}
    grown = {**old, "spec": {"instances": 4}}
    change = diff(kind, old, grown)
    assert change.changed == {".spec.instances"} and not change.replace
    renamed = {**old, "metadata": {"name": "database2", "namespace": "luna-prod"}}
    assert diff(kind, old, renamed).replace == {".metadata.name"}


def test_a_replaced_resource_passes_its_new_outputs_to_what_uses_them() -> None:
    # The renders give a renewed certificate the same (mock) outputs; the engine
    # sees them unknown, so the container shipping the certificate is replaced too.
    pem = "-----BEGIN CERTIFICATE----- mock"
    signed = _res("cert", type_="tls:index/locallySignedCert:LocallySignedCert", inputs={"a": 1})
    cert = Resource(**{**signed.__dict__, "outputs": {"a": 1, "certPem": pem}})
    shipped = _container(name="nginx", uploads=[{"file": "/c", "content": pem}])
    user = _res("nginx", deps=[cert.urn], prop_deps={"uploads": (cert.urn,)}, inputs=shipped)
    other = _res("other", deps=[cert.urn], prop_deps={"envs": (cert.urn,)},
                 inputs=_container(name="other", envs=["A=1"]))  # fmt: skip
    result = plan(_state(cert, user, other), _state(cert, user, other), renewed=["cert"])
    assert result.steps[cert.urn].op == "replace"
    assert result.steps[user.urn].op == "replace", "the certificate's consumer kept the old one"
    assert result.steps[other.urn].op == "same", "only inputs carrying the new value change"
    assert not plan(_state(cert, user), _state(cert, user)).changed()


# ------------------------------------------- failed and interrupted updates
def _app(name: str, image: str, *, container: str | None = None, **kw: Any) -> Resource:
    labels = [{"label": "com.luna.service", "value": "app"}]
    inputs = _container(name=container or f"{name}-{image}", image=image, labels=labels)
    return _res(name, inputs=inputs, **kw)


def _classify(r: Resource) -> tuple[str, int] | None:
    return ("app", 1) if r.type == CONTAINER else None


def test_a_container_that_never_turns_healthy_is_a_partial_create() -> None:
    good, bad = _app("web", "good"), _app("web", "bad")
    result = plan(_state(good), _state(bad), unhealthy=["bad"])
    assert result.events == [("partial", good.urn)], result.events
    assert result.failed == good.urn and good.urn in result.partial
    # CreateStep.Apply marks the old copy Delete even though the new one failed.
    assert result.next is not None
    assert result.next.resources[good.urn].init_errors, "the new copy carries init errors"
    assert result.pending_deletes() == [good.urn], "the old copy waits for the next update"
    timeline = liveness(result, _state(good), _state(bad), _classify, unhealthy={"bad"})
    assert min(timeline.serving["app"]) == 1, "the old copy still serves"
    assert timeline.unhealthy_answering() == {"app": 1}, "the new copy answers, unhealthy"


def test_up_again_empties_the_update_then_deletes_the_healthy_old_copy() -> None:
    good, bad = _app("web", "good"), _app("web", "bad")
    first = plan(_state(good), _state(bad), unhealthy=["bad"])
    assert first.next is not None
    again = plan(first.next, _state(bad), unhealthy=["bad"])
    assert again.steps[good.urn].keys == {"#initerror"}, "an empty update for the init error"
    assert again.events == [("update", good.urn), ("delete-pending", good.urn)], again.events
    assert again.next is not None and not again.next.pending
    timeline = liveness(again, first.next, _state(bad), _classify, unhealthy={"bad"})
    assert timeline.serving["app"][-1] == 0, "only the unhealthy copy is left"


def test_a_rollback_onto_a_pending_delete_name_collides_on_the_daemon() -> None:
    good, bad = _app("web", "good"), _app("web", "bad")
    first = plan(_state(good), _state(bad), unhealthy=["bad"])
    assert first.next is not None
    back = plan(first.next, _state(good), unhealthy=["bad"])
    assert back.events == [("fail", good.urn)], back.events
    assert "is already in use" in back.errors[-1], back.errors
    # The same rollback with a name generated anew for every replacement.
    gen = _res("gen", type_="random:index/randomId:RandomId", inputs={"keepers": {"i": "good"}})
    gen = Resource(**{**gen.__dict__, "outputs": {"keepers": {"i": "good"}, "hex": "0123abcd"}})
    named = _app("web", "good", container="web-0123abcd", deps=[gen.urn],
                 prop_deps={"name": (gen.urn,)})  # fmt: skip
    gen_bad = Resource(**{**gen.__dict__, "inputs": {"keepers": {"i": "bad"}}})
    bad_named = _app("web", "bad", container="web-0123abcd", deps=[gen.urn],
                     prop_deps={"name": (gen.urn,)})  # fmt: skip
    first = plan(_state(gen, named), _state(gen_bad, bad_named), unhealthy=["bad"])
    assert first.next is not None and first.failed == named.urn
    back = plan(first.next, _state(gen, named), unhealthy=["bad"])
    assert not back.failed, back.errors
    timeline = liveness(back, first.next, _state(gen, named), _classify, unhealthy={"bad"})
    assert min(timeline.serving["app"]) >= 1, timeline.serving


def test_a_health_gate_keeps_the_pending_delete_from_running() -> None:
    from tests.engine.execute import HEALTH_GATE

    good, bad = _app("web", "good"), _app("web", "bad")

    def gate(container: Resource) -> Resource:
        script = f"{HEALTH_GATE}\ncheck {container.inputs['name']}"
        return _res("gate", type_="command:local:Command", inputs={"create": script},
                    deps=[container.urn], prop_deps={"create": (container.urn,)})  # fmt: skip

    first = plan(_state(good, gate(good)), _state(bad, gate(bad)), unhealthy=["bad"])
    assert first.next is not None
    again = plan(first.next, _state(bad, gate(bad)), unhealthy=["bad"])
    assert again.failed == gate(bad).urn, again.events
    assert ("delete-pending", good.urn) not in again.events
    assert again.next is not None and again.pending_deletes() == [good.urn]


def test_an_interrupted_update_leaves_finished_replacements_pending() -> None:
    a, b = _app("a", "v1"), _app("b", "v1")
    a2, b2 = _app("a", "v2"), _app("b", "v2")
    result = plan(_state(a, b), _state(a2, b2), interrupt_after=1)
    assert result.events == [("create", a.urn), ("interrupt", b.urn)], result.events
    assert result.next is not None and result.pending_deletes() == [a.urn]
    assert result.next.resources[b.urn].inputs["image"] == "v1", "b never changed"


# ------------------------------------------------ providers and operators
def test_a_kubernetes_provider_is_replaced_when_its_active_cluster_changes() -> None:
    kind = "pulumi:providers:kubernetes"
    old = {"kubeconfig": "k1", "context": "prod", "cluster": "c1"}
    renamed = {"kubeconfig": "k2", "context": "prod-eu", "cluster": "c2"}
    assert diff(kind, old, renamed).replace, "no identifier: the active cluster changed"
    pinned = {**old, "clusterIdentifier": "luna-prod"}
    assert not diff(kind, pinned, {**renamed, "clusterIdentifier": "luna-prod"}).replace
    assert diff(kind, pinned, {**renamed, "clusterIdentifier": "other"}).replace
    provider = _res("k8s", type_=kind, inputs=old)
    ns = _res("ns", type_="kubernetes:core/v1:Namespace", inputs={"metadata": {"name": "n"}},
              protect=True)  # fmt: skip
    ns = Resource(**{**ns.__dict__, "provider": provider.urn})
    moved = Resource(**{**provider.__dict__, "inputs": renamed})
    result = plan(_state(provider, ns), _state(moved, ns))
    assert result.steps[ns.urn].keys == {"provider"}, result.steps[ns.urn]
    assert any("marked for protection" in e for e in result.errors), result.errors


def test_cloudnativepg_reloads_only_labelled_secrets() -> None:
    from tests.engine.facts import cnpg_watches

    assert not cnpg_watches({"metadata": {"labels": {"app": "x"}}})
    assert cnpg_watches({"metadata": {"labels": {"cnpg.io/reload": ""}}}), "any value"


def test_a_cloudnativepg_image_bump_switches_over_only_when_asked_and_replicated() -> None:
    kind = "kubernetes:postgresql.cnpg.io/v1:Cluster"

    def cluster(image: str, instances: int, method: str | None) -> Resource:
        spec: dict[str, Any] = {"imageName": image, "instances": instances}
        if method:
            spec["primaryUpdateMethod"] = method
        return _res("db", type_=kind, inputs={"metadata": {"name": "db"}, "spec": spec})

    def db(r: Resource) -> tuple[str, int] | None:
        return ("database", int(r.inputs["spec"]["instances"]))

    for instances, method, kept in ((3, "switchover", True), (3, None, False),
                                    (1, "switchover", False)):  # fmt: skip
        old, new = cluster("pg:17.5", instances, method), cluster("pg:17.6", instances, method)
        result = plan(_state(old), _state(new))
        assert result.steps[old.urn].op == "update"
        served = liveness(result, _state(old), _state(new), db).serving["database"]
        assert (min(served) >= 1) == kept, (instances, method, served)


# -------------------------------------------------- mutable Secrets (issue 21)
def _provider(name: str, **inputs: str) -> Resource:
    return _res(name, type_="pulumi:providers:kubernetes",
                inputs={"clusterIdentifier": "luna-prod", **inputs})  # fmt: skip


def _secret(password: str, provider: Resource, *, protect: bool = True) -> Resource:
    r = _res("db-app-role", type_="kubernetes:core/v1:Secret", protect=protect,
             inputs={"metadata": {"name": "db-app-role"}, "type": "kubernetes.io/basic-auth",
                     "stringData": {"password": password}})  # fmt: skip
    return Resource(**{**r.__dict__, "provider": provider.urn})


def test_a_secrets_data_change_replaces_it_unless_its_provider_makes_secrets_mutable() -> None:
    """pulumi-kubernetes diff.go forceNewProperties; provider.go Configure."""
    kind = "kubernetes:core/v1:Secret"
    old = {"metadata": {"name": "s"}, "type": "Opaque", "stringData": {"p": "1"}}
    new = {**old, "stringData": {"p": "2"}}
    assert diff(kind, old, new).replace, "the default provider replaces it"
    assert diff(kind, old, new, {"enableSecretMutable": "false"}).replace
    assert not diff(kind, old, new, {"enableSecretMutable": "true"}).replace, "patched"
    retyped = {**new, "type": "kubernetes.io/basic-auth"}
    assert diff(kind, old, retyped, {"enableSecretMutable": "true"}).replace, ".type still"
    frozen = {**new, "immutable": True}
    assert diff(kind, old, frozen, {"enableSecretMutable": "true"}).replace, "immutable: true"


def test_a_protected_secret_rotates_in_place_only_under_a_mutable_provider() -> None:
    for mutable, refused in (("true", False), ("false", True)):
        p = _provider("data", enableSecretMutable=mutable)
        result = plan(_state(p, _secret("one", p)), _state(p, _secret("two", p)))
        step = result.steps[_secret("one", p).urn]
        assert (step.op == "replace") is refused, (mutable, step)
        assert bool(result.errors) is refused, (mutable, result.errors)


def test_moving_to_another_provider_of_the_same_cluster_replaces_nothing() -> None:
    """step_generator.go providerChanged: the new provider's DiffConfig decides."""
    main, data = _provider("main"), _provider("data", enableSecretMutable="true")
    before = _state(main, _secret("one", main, protect=False))
    after = _state(main, data, _secret("one", data))
    result = plan(before, after)
    assert result.steps[_secret("one", data).urn].op == "same", result.steps
    assert not result.errors, result.errors
    other = {"clusterIdentifier": "other", "enableSecretMutable": "true"}
    elsewhere = _res("data", type_="pulumi:providers:kubernetes", inputs=other)
    before = _state(main, _secret("one", main))
    moved = plan(before, _state(main, elsewhere, _secret("one", elsewhere)))
    assert moved.steps[_secret("one", main).urn].keys == {"provider"}, moved.steps
    assert any("marked for protection" in e for e in moved.errors), moved.errors

"""Every policy of the pack fails on a resource that violates it, reported by name
through the pack's own analyzer (pulumi-policy's servicer, as the CLI drives it)."""

from __future__ import annotations

import pytest
import yaml
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from policy import capabilities
from policy.check import VERSION
from policy.luna_policies import POLICIES
from tests.policy.cases import SATISFIED, VIOLATIONS
from tests.policy.support import by, run
from tests.support.tools import REPO

NAMES = sorted(p.name for p in POLICIES)


def test_every_policy_has_a_failing_case() -> None:
    assert sorted(VIOLATIONS) == NAMES, "each policy needs a case in tests/policy/cases.py"


@pytest.mark.parametrize("name", NAMES)
def test_policy_reports_its_violation(name: str) -> None:
    resources, culprit = VIOLATIONS[name]
    found = by(run(resources), name)
    assert found, f"{name} reported nothing on its violating case"
    if culprit is not None:
        assert {v.resource for v in found} == {culprit}, f"{name} named {found}"
    print(f"{name}: {found[0].line()}")


@pytest.mark.parametrize("name", sorted(SATISFIED))
def test_policy_recognises_the_capability_once_it_exists(name: str) -> None:
    found = by(run(SATISFIED[name]), name)
    assert not found, f"{name} still reports {[v.message for v in found]}"


def test_levels_follow_the_capabilities() -> None:
    """A policy waiting for a capability is advisory and names it; all others are mandatory."""
    waiting = {
        c.what
        for c in vars(capabilities).values()
        if isinstance(c, capabilities.Capability) and not c.landed
    }
    for policy in POLICIES:
        named = [w for w in waiting if w in policy.description]
        if policy.enforcement_level is EnforcementLevel.ADVISORY:
            assert named, f"{policy.name} is advisory but names no missing capability"
        else:
            assert policy.enforcement_level is EnforcementLevel.MANDATORY, policy.name
            assert not named, f"{policy.name} is mandatory yet waits for {named}"
        assert policy.framework and policy.framework.reference, f"{policy.name}: no control"
        assert isinstance(policy, ResourceValidationPolicy | StackValidationPolicy)


def test_mandatory_violations_are_reported_as_mandatory() -> None:
    resources, _ = VIOLATIONS["container-hardening"]
    assert all(v.mandatory for v in by(run(resources), "container-hardening"))
    resources, _ = VIOLATIONS["internal-tls-redis"]
    levels = {v.mandatory for v in by(run(resources), "internal-tls-redis")}
    assert levels == {capabilities.TLS_REDIS.landed}


def test_pack_config_can_raise_a_level_as_the_cli_does() -> None:
    """--policy-pack-config semantics: the pack's Configure call sets the level."""
    resources, _ = VIOLATIONS["internal-tls-postgres"]
    found = by(run(resources, {"internal-tls-postgres": "mandatory"}), "internal-tls-postgres")
    assert found and all(v.mandatory for v in found)
    assert not by(run(resources, {"internal-tls-postgres": "disabled"}), "internal-tls-postgres")


def test_messages_never_carry_credentials() -> None:
    from tests.policy.cases import deployment

    url = "postgresql://luna:s3cr3t-pw@database:5432/luna?sslmode=prefer"
    found = run([deployment("app", env=[{"name": "DATABASE_URL", "value": url}])])
    assert found and not [v for v in found if "s3cr3t" in v.line()], [v.line() for v in found]


def test_pack_version_matches_pulumipolicy_yaml() -> None:
    project = yaml.safe_load((REPO / "policy" / "PulumiPolicy.yaml").read_text())
    assert str(project["version"]) == VERSION
    assert project["runtime"]["name"] == "python"


def test_docker_env_secrecy_is_judged_only_where_secrets_are_marked() -> None:
    """At preview the engine hands secrets over unwrapped, so a Docker env cannot be told
    secret from plain; in a render a secret leaf reads [secret], and only there does the
    policy judge it (policy.check sets secretsMasked)."""
    from tests.policy.cases import container

    plain = container("app", envs=["NODE_ENV=production", "API_TOKEN=abc123"])
    masked = container("app", envs=["[secret]", "[secret]"])
    offline = {"no-plaintext-secret": {"enforcementLevel": "mandatory", "secretsMasked": True}}
    preview = {"no-plaintext-secret": {"enforcementLevel": "mandatory", "secretsMasked": False}}
    assert [v.resource for v in by(run([plain], offline), "no-plaintext-secret")] == ["luna-app"]
    assert not by(run([masked], offline), "no-plaintext-secret")
    assert not by(run([plain], preview), "no-plaintext-secret")


def test_a_masked_alertmanager_config_is_not_judged_offline() -> None:
    from policy.check import analyze, requests_from_render
    from tests.policy.cases import RULES, configmap
    from tests.policy.support import resource

    secret = resource(
        "kubernetes:core/v1:Secret",
        "luna-alertmanager-secret-files",
        {
            "metadata": {"annotations": {"luna.app/files": '{"am": "/etc/alertmanager/am.yml"}'}},
            "stringData": {"am": "[secret]"},
        },
    )
    singles, stack = requests_from_render([configmap("luna-rules", {"r.yml": RULES}), secret])
    skipped: list[str] = []
    found = analyze(singles, stack, None, skipped)
    assert not by(found, "alert-routes") and not by(found, "paging-receiver")
    assert sorted(s.split(":")[0] for s in skipped) == ["alert-routes", "paging-receiver"]
    # At preview (no masking) the same stack is judged, and fails.
    found = analyze(singles, stack, {"alert-routes": {"secretsMasked": False}})
    assert by(found, "alert-routes")


def test_a_database_cluster_needs_its_own_network_policy() -> None:
    from tests.policy.support import resource

    cluster = resource(
        "kubernetes:postgresql.cnpg.io/v1:Cluster",
        "luna-database-cluster",
        {"metadata": {"name": "database"}, "spec": {"instances": 3}},
        protect=True,
    )
    policy = resource(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "luna-netpol-database",
        {"spec": {"podSelector": {"matchLabels": {"cnpg.io/cluster": "database"}}}},
    )
    found = by(run([cluster]), "phi-network-isolation")
    assert [v.resource for v in found] == ["luna-database-cluster"]
    assert not by(run([cluster, policy]), "phi-network-isolation")


def test_docker_root_is_writable_only_for_containers_that_ship_files() -> None:
    """Docker copies uploads onto the root filesystem and refuses a read-only one."""
    from tests.policy.cases import container

    bare = container("app", readOnly=False)
    shipping = container("app", readOnly=False, uploads=[{"file": "/etc/x", "content": "x"}])
    found = by(run([bare]), "container-hardening")
    assert [v.message for v in found] == [
        "container of app has a writable root filesystem (not a listed exception)"
    ]
    assert not by(run([shipping]), "container-hardening")


@pytest.mark.parametrize(
    ("value", "reported"), [("unset", True), (True, True), (None, True), (False, False)]
)
def test_privilege_escalation_must_be_switched_off_explicitly(
    value: object, reported: bool
) -> None:
    """Kubernetes defaults ``allowPrivilegeEscalation`` to true when it is unset
    (k8s.io/api core/v1 types.go, SecurityContext.AllowPrivilegeEscalation): only an
    explicit ``false`` passes."""
    from tests.policy.cases import GOOD_SC, deployment

    sc = {k: v for k, v in GOOD_SC.items() if k != "allowPrivilegeEscalation"}
    if value != "unset":
        sc["allowPrivilegeEscalation"] = value
    found = [v.message for v in by(run([deployment("app", sc=sc)]), "container-hardening")]
    expected = ["container app of app does not set allowPrivilegeEscalation: false"]
    assert found == (expected if reported else []), f"allowPrivilegeEscalation={value}: {found}"


def test_the_apps_tls_front_needs_no_hsts_but_an_edge_does() -> None:
    """The pod's TLS front (loopback upstream, no server_name) is reached by the edge,
    never a browser; the same config with a public upstream or a server_name is judged
    as an edge, and so is a front with weak protocols."""
    from components.configs.tls_front import TlsFrontSettings, tls_front_conf
    from tests.policy.cases import configmap

    front = tls_front_conf(TlsFrontSettings(port=3443, target=3000, cert_path="c", key_path="k"))
    assert not by(run([configmap("luna-app-tls-front", {"nginx.conf": front})]), "edge-tls")
    public = front.replace("server 127.0.0.1:3000;", "server app:3000;")
    named = front.replace("listen 3443 ssl;", "listen 3443 ssl;\n        server_name luna;")
    weak = front.replace("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1 TLSv1.2;")
    for what, text in (("public upstream", public), ("server_name", named), ("weak", weak)):
        found = by(run([configmap("luna-x", {"nginx.conf": text})]), "edge-tls")
        assert found, f"{what}: not judged"

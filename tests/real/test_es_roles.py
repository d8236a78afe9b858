"""The rendered Elasticsearch roles and retention, judged by a model of ES privileges.

No Elasticsearch runs here. The role bodies, users, ILM policies and index
templates are read from the es-setup script the render ships, and
tests/support/es_privileges.py (built from Elasticsearch's IndexPrivilege.java,
cited there) says what each role may do to a concrete daily index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.real.conftest import FULL_STACK_PARAMS, stack_id
from tests.real.support import RenderedStack
from tests.support.es_privileges import ACTIONS, cluster_allows, index_allows

ES_SETUP = "/opt/luna/es-setup.sh"
PIPELINE = "/usr/share/logstash/pipeline/logstash.conf"
SHIPPER_MAY = {"add a document", "create the index"}
OPERATOR_MAY = {"search", "get a document"}
CLUSTER_ACTIONS_THAT_ERASE = (
    "cluster:admin/ilm/put",  # shorten the audit policy
    "cluster:admin/xpack/security/role/put",  # grant itself more
    "cluster:admin/snapshot/restore",  # overwrite the index from a snapshot
)


@pytest.fixture(params=FULL_STACK_PARAMS, ids=stack_id)
def stack(
    request: pytest.FixtureRequest, stacks: Callable[[str, str], RenderedStack]
) -> RenderedStack:
    return stacks(*request.param)


def _calls(script: str, path_prefix: str) -> dict[str, Any]:
    """``put PUT <path> '<json>'`` lines of the setup script, by the last path segment."""
    found = re.findall(rf"^put PUT {re.escape(path_prefix)}(\S+) '(\{{.*\}})'$", script, re.M)
    return {name: json.loads(body) for name, body in found}


def _shipper_role(script: str) -> str:
    user = re.search(r'^put PUT /_security/user/luna_logstash \\\n\s+"(.*)"$', script, re.M)
    assert user, "the setup script creates no luna_logstash user"
    roles = re.findall(r'\\"roles\\":\[\\"([^\\]+)\\"\]', user.group(1))
    assert len(roles) == 1, f"luna_logstash has roles {roles}"
    return str(roles[0])


def _what(role: dict[str, Any], index: str) -> set[str]:
    return {what for what, action in ACTIONS.items() if index_allows(role, index, action)}


def test_shipper_may_only_add_to_the_audit_index_and_operator_may_only_read_it(
    stack: RenderedStack,
) -> None:
    script = stack.file("elasticsearch-setup", ES_SETUP)
    roles = _calls(script, "/_security/role/")
    shipper = roles[_shipper_role(script)]
    operator = roles["luna_operator"]
    audit = f"luna-{stack.stack}-audit-2026.01.15"
    logs = f"luna-{stack.stack}-logs-2026.01.15"
    figures = {
        "shipper/audit": _what(shipper, audit),
        "shipper/logs": _what(shipper, logs),
        "operator/audit": _what(operator, audit),
        "operator/logs": _what(operator, logs),
    }
    print(f"\n{stack.stack}: " + "; ".join(f"{k}: {sorted(v)}" for k, v in figures.items()))
    for key, may in (
        ("shipper/audit", SHIPPER_MAY),
        ("shipper/logs", SHIPPER_MAY),
        ("operator/audit", OPERATOR_MAY),
        ("operator/logs", OPERATOR_MAY),
    ):
        assert figures[key] == may, f"{stack.stack}: {key} may {sorted(figures[key])}, not {may}"
    for role_name, role in (("shipper", shipper), ("operator", operator)):
        erasing = [a for a in CLUSTER_ACTIONS_THAT_ERASE if cluster_allows(role, a)]
        assert not erasing, f"{stack.stack}: {role_name} may {erasing}"
    # Another stack's indices are out of reach.
    other = "luna-dev-audit-2026.01.15"
    assert not _what(shipper, other) and not _what(operator, other), stack.stack


def test_the_model_refuses_what_a_looser_role_would_allow() -> None:
    # The control: the same questions against roles a careless change could ship.
    index = "luna-prod-audit-2026.01.15"
    for privilege, forbidden in (
        ("write", "delete a document"),
        ("index", "overwrite a document"),
        ("create", "overwrite a document"),
        ("all", "delete the index"),
        ("manage", "delete the index"),
        ("delete_index", "delete the index"),
        ("manage_ilm", "remove its ILM policy"),
    ):
        role = {"indices": [{"names": ["luna-prod-*"], "privileges": [privilege]}]}
        assert forbidden in _what(role, index), f"model: {privilege} should allow {forbidden}"
    reader = {"indices": [{"names": ["luna-prod-audit-*"], "privileges": ["read"]}]}
    assert _what(reader, index) == OPERATOR_MAY
    assert cluster_allows({"cluster": ["all"]}, "cluster:admin/ilm/put")


def test_audit_retention_is_six_years_and_logs_stay_short(stack: RenderedStack) -> None:
    script = stack.file("elasticsearch-setup", ES_SETUP)
    policies = _calls(script, "/_ilm/policy/")
    templates = _calls(script, "/_index_template/")
    by_pattern = {
        p: t["template"]["settings"]["index.lifecycle.name"]
        for t in templates.values()
        for p in t["index_patterns"]
    }
    audit_policy = by_pattern[f"luna-{stack.stack}-audit-*"]
    logs_policy = by_pattern[f"luna-{stack.stack}-logs-*"]
    assert audit_policy != logs_policy, f"{stack.stack}: one policy for logs and audit"

    def delete_days(policy: str) -> int:
        age = policies[policy]["policy"]["phases"]["delete"]["min_age"]
        assert age.endswith("d"), age
        return int(age[:-1])

    audit_days, logs_days = delete_days(audit_policy), delete_days(logs_policy)
    print(f"\n{stack.stack}: audit kept {audit_days} days, logs {logs_days} days")
    assert audit_days == int(stack.setting("auditRetentionDays")) >= 6 * 365, stack.stack
    assert logs_days == int(stack.setting("logRetentionDays")), stack.stack
    if stack.stack == "prod":
        assert logs_days <= 30, f"prod keeps operational logs {logs_days} days"
    warm = policies[audit_policy]["policy"]["phases"].get("warm", {})
    assert "readonly" in warm.get("actions", {}), f"{stack.stack}: audit indices stay writable"
    # The pipeline writes exactly these two families.
    pipeline = stack.file("logstash", PIPELINE)
    assert re.search(r'=> "audit"', pipeline) and re.search(r'=> "logs"', pipeline), stack.stack

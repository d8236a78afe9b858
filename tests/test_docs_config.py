"""The generated reference tables match the code they describe (infra/docs_config.py)."""

from __future__ import annotations

import re

import pytest

from infra import docs_config
from infra.render import stack_config_file
from infra.settings import NAMESPACE, SECRET_KEYS, STACKS, ConfigError, describe_keys
from tests.conftest import rendered
from tests.support.tools import REPO


def test_generated_tables_match_the_docs() -> None:
    generated = docs_config.blocks(render_fn=rendered)
    outdated = docs_config.stale(generated)
    assert not outdated, f"stale docs: {outdated}; run .venv/bin/{docs_config.COMMAND}"


def test_every_key_settings_reads_is_declared_with_a_description_and_vice_versa() -> None:
    declared = docs_config.project_config()
    specs = {s.key: s for s in docs_config.describe() if s.kind != "secret"}
    undeclared = sorted(set(specs) - set(declared))
    assert not undeclared, f"read by infra/settings.py, not declared in Pulumi.yaml: {undeclared}"
    unread = sorted(set(declared) - set(specs))
    assert not unread, f"declared in Pulumi.yaml but never read by infra/settings.py: {unread}"
    bare = sorted(k for k, v in declared.items() if not v.get("description"))
    assert not bare, f"Pulumi.yaml keys without a description: {bare}"
    for key, spec in specs.items():
        expected = docs_config.YAML_TYPES.get(spec.kind, "string")
        assert declared[key].get("type") == expected, (
            f"Pulumi.yaml says luna:{key} is {declared[key].get('type')}, "
            f"settings validates it as {spec.kind} ({expected})"
        )
    missing = [k for k in SECRET_KEYS if k not in docs_config.SECRET_DOCS]
    assert not missing, f"secrets without a line in SECRET_DOCS: {missing}"


_BAD = {"integer": "-99999999", "number": "-1e9", "boolean": "maybe", "choice": "bogus"}


def test_the_allowed_column_is_what_a_refused_value_prints() -> None:
    """The documented 'allowed' text is the error's text: one source, not two."""
    defaults = {
        f"{NAMESPACE}:{k}": docs_config._text(v.get("default"))
        for k, v in docs_config.project_config().items()
    }
    checked = 0
    for spec in docs_config.describe():
        bad = _BAD.get(spec.kind, "not valid at all: \t") if spec.kind != "secret" else None
        if bad is None or spec.key in ("kubeContext", "registryUsername", "smtpUsername"):
            continue  # free text: anything goes, so nothing to refuse
        with pytest.raises(ConfigError) as caught:
            describe_keys({**defaults, f"{NAMESPACE}:{spec.key}": bad})
        assert str(caught.value).endswith(spec.allowed), (
            f"luna:{spec.key}: error {caught.value} does not end with the documented "
            f"{spec.allowed!r}"
        )
        checked += 1
    assert checked >= 50, f"only {checked} keys checked"


def test_stack_file_commands_name_their_stack() -> None:
    """After deploy-dev selects dev, a command without --stack would change dev."""
    for stack in STACKS:
        path = stack_config_file(stack)
        for line in re.findall(r"^#.*pulumi config set.*$", path.read_text(), re.M):
            assert f"--stack {stack}" in line, f"{path.name}: {line.strip()}"


def test_prod_docs_require_what_settings_requires() -> None:
    from infra.settings import required_secrets

    text = (REPO / "docs" / "configuration.md").read_text()
    for key in required_secrets("prod"):
        row = next(r for r in text.splitlines() if r.startswith(f"| `{key}` |"))
        assert "prod" in row.split("|")[2], f"docs/configuration.md: {row}"
        assert f"luna:{key} --stack prod" in text, f"no command setting {key} on prod"


def test_platform_diagrams_show_what_adopters_look_for() -> None:
    from infra.diagrams import mermaid

    docker = mermaid(rendered("prod", "docker"), "docker", "prod")
    kubernetes = mermaid(rendered("prod", "kubernetes"), "kubernetes", "prod")
    for needle in ("app_migrate[/", "elasticsearch_setup[/", "postgres_exporter", "proxy --> app"):
        assert needle in docker, f"docker diagram lacks {needle}"
    assert "app -. logs .-> logstash" in docker and "kibana -. logs" not in docker
    assert "host -. :443 .-> proxy" in docker, "nginx's public port"
    # Scheduled work on Kubernetes: CloudNativePG's base backups (the pg_dump CronJob is gone).
    for needle in ("(DaemonSet)", "LoadBalancer :80, :443 .-> proxy", "(ScheduledBackup)",
                   "(Cluster)", "(HPA)"):  # fmt: skip
        assert needle in kubernetes, f"kubernetes diagram lacks {needle}"

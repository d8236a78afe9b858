"""The operator docs keep up with the code."""

from __future__ import annotations

import re

import yaml

from tests.support.tools import REPO


def test_every_config_key_is_documented() -> None:
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    reference = (REPO / "docs" / "configuration.md").read_text()
    missing = [k for k in project["config"] if f"`{k.split(':')[1]}`" not in reference]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_every_secret_key_is_documented() -> None:
    from infra.settings import SECRET_KEYS

    reference = (REPO / "docs" / "configuration.md").read_text()
    missing = [k for k in SECRET_KEYS if f"`{k}`" not in reference]
    assert not missing, f"docs/configuration.md lacks secrets {missing}"


def test_readme_links_resolve_and_it_has_the_two_commands_and_a_diagram() -> None:
    readme = (REPO / "README.md").read_text()
    for link in re.findall(r"\]\(((?:docs|scripts)/[^)#]+)\)", readme):
        assert (REPO / link).exists(), f"README links to missing {link}"
    assert "./scripts/deploy-dev" in readme and "./scripts/test" in readme
    assert "```mermaid" in readme
    assert "./scripts/test" in (REPO / ".ci" / "run").read_text(), (
        ".ci/run must call the test command"
    )


def test_logging_doc_lists_every_field_kept_whole_and_every_redacted_field() -> None:
    from components.configs.redaction import FREE_TEXT_FIELDS, KEPT_FIELDS

    doc = (REPO / "docs" / "logging.md").read_text()
    missing = [f for f in (*KEPT_FIELDS, *FREE_TEXT_FIELDS) if f"`{f}`" not in doc]
    assert not missing, f"docs/logging.md does not say why {missing} are kept or redacted"

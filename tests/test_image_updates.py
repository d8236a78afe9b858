"""Every pinned image has an update path: Renovate's regex manager (renovate.json)
finds each ``luna:*Image`` default in Pulumi.yaml, and Dependabot watches the
demo app's Dockerfile."""

from __future__ import annotations

import json
import re

import yaml

from tests.support.tools import REPO


def _python_regex(js: str) -> re.Pattern[str]:
    # Renovate's named groups are ECMAScript's `(?<name>`; Python spells them `(?P<name>`.
    return re.compile(js.replace("(?<", "(?P<"))


def test_renovate_finds_every_pinned_image_in_pulumi_yaml() -> None:
    config = json.loads((REPO / "renovate.json").read_text())
    (manager,) = config["customManagers"]
    assert any(
        _python_regex(p.strip("/")).search("Pulumi.yaml") for p in manager["managerFilePatterns"]
    ), "the manager must read Pulumi.yaml"
    text = (REPO / "Pulumi.yaml").read_text()
    found = {
        f"{m['depName']}:{m['currentValue']}"
        for pattern in manager["matchStrings"]
        for m in _python_regex(pattern).finditer(text)
    }
    declared = yaml.safe_load(text)["config"]
    pinned = {v["default"] for k, v in declared.items() if k.endswith("Image")}
    assert found == pinned, (
        f"renovate.json misses {sorted(pinned - found)} / invents {sorted(found - pinned)}"
    )
    assert len(pinned) >= 15, pinned


def test_dependabot_watches_the_demo_app_base_image() -> None:
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    watched = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert ("docker", "/demo-app") in watched, watched
    base = re.search(r"^FROM (\S+)", (REPO / "demo-app" / "Dockerfile").read_text(), re.M)
    assert base and re.fullmatch(r"[a-z0-9./-]+:\d+\.\d+\.\d+[\w.-]*", base.group(1)), (
        "the demo app's base image must be pinned to a full version"
    )


def test_changelog_knows_the_current_version() -> None:
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert version, "pyproject.toml has no version"
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{version.group(1)}]" in changelog, f"CHANGELOG.md lacks {version.group(1)}"
    assert "## [Unreleased]" in changelog

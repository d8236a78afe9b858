"""Read the alerting files out of a render: alertmanager.yml (a secret) and the rules."""

from __future__ import annotations

import json
from typing import Any

import yaml

from components.configs.alertmanager import CONFIG_PATH
from components.configs.prometheus import RULES_PATH
from components.platforms.kubernetes import FILES_ANNOTATION
from infra.mocks import unwrap
from infra.render import Rendered

__all__ = ["alertmanager_yml", "prometheus_yml", "rules_yml"]


def alertmanager_yml(r: Rendered) -> str:
    """The shipped alertmanager.yml with its secrets in clear (the render masks it)."""
    found: list[str] = []
    for rec in r.monitor.records.values():
        if rec.type == "docker:index/container:Container":
            found += [
                u["content"]
                for u in unwrap(rec.inputs.get("uploads") or [])
                if u["file"] == CONFIG_PATH
            ]
        if rec.type == "kubernetes:core/v1:Secret":
            inputs: dict[str, Any] = unwrap(rec.inputs)
            note = ((inputs.get("metadata") or {}).get("annotations") or {}).get(FILES_ANNOTATION)
            for key, path in json.loads(note or "{}").items():
                if path == CONFIG_PATH:
                    found.append(inputs["stringData"][key])
    assert len(found) == 1, f"expected one {CONFIG_PATH}, found {len(found)}"
    return found[0]


def _shipped(r: Rendered, path: str) -> str:
    found = [text for key, text in r.files().items() if key.endswith(path)]
    assert len(found) == 1, f"expected one {path}, found {len(found)}"
    return found[0]


def rules_yml(r: Rendered) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_shipped(r, RULES_PATH))
    return doc


def prometheus_yml(r: Rendered) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_shipped(r, "/etc/prometheus/prometheus.yml"))
    return doc

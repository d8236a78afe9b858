"""Build render-shaped resources and run the pack on them through its analyzer."""

from __future__ import annotations

from typing import Any

from policy.check import Violation, analyze, requests_from_render


def resource(
    typ: str, name: str, inputs: dict[str, Any], *, stack: str = "prod", protect: bool = False
) -> dict[str, Any]:
    """One resources.json row, as infra.render writes it."""
    return {
        "urn": f"urn:pulumi:{stack}::luna::{typ}::{name}",
        "type": typ,
        "name": name,
        "custom": True,
        "parent": "",
        "dependencies": [],
        "protect": protect,
        "retain_on_delete": protect,
        "delete_before_replace": False,
        "provider": "",
        "inputs": inputs,
    }


def run(resources: list[dict[str, Any]], config: dict[str, Any] | None = None) -> list[Violation]:
    singles, stack = requests_from_render(resources)
    return analyze(singles, stack, config)


def by(violations: list[Violation], policy: str) -> list[Violation]:
    return [v for v in violations if v.policy == policy]

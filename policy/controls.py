"""The controls the pack enforces, and how a policy is declared against one."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from pulumi_policy import (
    EnforcementLevel,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ResourceValidation,
    ResourceValidationPolicy,
    Severity,
    StackValidation,
    StackValidationPolicy,
)

from .capabilities import Capability

__all__ = ["control", "resource_policy", "stack_policy"]

_FRAMEWORKS = {
    "HIPAA": ("HIPAA Security Rule", "45 CFR Part 164 Subpart C"),
    "GDPR": ("GDPR", "Regulation (EU) 2016/679"),
    "OPS": ("Luna operations", "docs/compliance.md"),
}


def control(framework: str, reference: str, specification: str) -> PolicyComplianceFramework:
    """``control("HIPAA", "164.312(e)(1)", "Transmission security")``."""
    name, version = _FRAMEWORKS[framework]
    return PolicyComplianceFramework(
        name=name, version=version, reference=reference, specification=specification
    )


class Declared(TypedDict, total=False):
    """What a policy may declare beyond its check: the capability it waits for (it is
    advisory until that lands), its severity (default HIGH) and its config schema."""

    needs: Capability | None
    severity: Severity
    config_schema: PolicyConfigSchema | None


def _common(
    description: str,
    *,
    needs: Capability | None = None,
    severity: Severity = Severity.HIGH,
    config_schema: PolicyConfigSchema | None = None,
) -> dict[str, Any]:
    """The keywords both kinds of policy take, derived once from ``needs``."""
    if needs is not None and not needs.landed:
        description = f"{description} ADVISORY until {needs.what} is in main."
        level = EnforcementLevel.ADVISORY
    else:
        level = EnforcementLevel.MANDATORY
    return {
        "description": description,
        "enforcement_level": level,
        "severity": severity,
        "config_schema": config_schema,
    }


def resource_policy(
    name: str,
    description: str,
    validate: ResourceValidation,
    framework: PolicyComplianceFramework,
    **declared: Unpack[Declared],
) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, validate=validate, framework=framework, **_common(description, **declared)
    )


def stack_policy(
    name: str,
    description: str,
    validate: StackValidation,
    framework: PolicyComplianceFramework,
    **declared: Unpack[Declared],
) -> StackValidationPolicy:
    return StackValidationPolicy(
        name=name, validate=validate, framework=framework, **_common(description, **declared)
    )

"""The controls the pack enforces, and how a policy is declared against one."""

from __future__ import annotations

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


def _level(needs: Capability | None) -> EnforcementLevel:
    if needs is None or needs.landed:
        return EnforcementLevel.MANDATORY
    return EnforcementLevel.ADVISORY


def _describe(description: str, needs: Capability | None) -> str:
    if needs is None or needs.landed:
        return description
    return f"{description} ADVISORY until {needs.what} is in main."


def resource_policy(
    name: str,
    description: str,
    validate: ResourceValidation,
    framework: PolicyComplianceFramework,
    *,
    needs: Capability | None = None,
    severity: Severity = Severity.HIGH,
    config_schema: PolicyConfigSchema | None = None,
) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name,
        description=_describe(description, needs),
        validate=validate,
        enforcement_level=_level(needs),
        framework=framework,
        severity=severity,
        config_schema=config_schema,
    )


def stack_policy(
    name: str,
    description: str,
    validate: StackValidation,
    framework: PolicyComplianceFramework,
    *,
    needs: Capability | None = None,
    severity: Severity = Severity.HIGH,
    config_schema: PolicyConfigSchema | None = None,
) -> StackValidationPolicy:
    return StackValidationPolicy(
        name=name,
        description=_describe(description, needs),
        validate=validate,
        enforcement_level=_level(needs),
        framework=framework,
        severity=severity,
        config_schema=config_schema,
    )

"""Luna's policy pack: every policy, importable without starting anything.

``PolicyPack(...)`` starts a gRPC server and blocks, so it is called only in
policy/__main__.py, which the Pulumi CLI runs for ``--policy-pack policy``.
Tests and ``python -m policy.check`` import this module instead.
"""

from __future__ import annotations

from pulumi_policy import Policy

from .resource_policies import RESOURCE_POLICIES
from .stack_policies import STACK_POLICIES

__all__ = ["PACK_NAME", "POLICIES"]

PACK_NAME = "luna-compliance"
POLICIES: list[Policy] = [*RESOURCE_POLICIES, *STACK_POLICIES]

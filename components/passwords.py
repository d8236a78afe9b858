"""Secrets a component needs: supplied from secret config, otherwise generated."""

from __future__ import annotations

import pulumi
import pulumi_random as random

__all__ = ["secret_or_generated"]


def secret_or_generated(
    name: str,
    supplied: pulumi.Input[str] | None,
    *,
    parent: pulumi.Resource,
    length: int = 32,
    protect: bool = False,
) -> pulumi.Output[str]:
    """Return ``supplied`` as a secret, or else the ``RandomPassword`` named ``name``.

    The generator exists either way, so supplying a value later (the rotation
    runbook) never deletes it: with ``protect`` (prod) a deletion would fail the
    update, and ``pulumi destroy --exclude-protected`` keeps the credentials of
    the data it keeps. Generated values use letters and digits only: they end up
    in URLs, JSON bodies and config files, where punctuation would need escaping.
    """
    generated = random.RandomPassword(
        name,
        length=length,
        special=False,
        min_lower=4,
        min_upper=4,
        min_numeric=4,
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    if supplied is not None:
        return pulumi.Output.secret(supplied)
    return pulumi.Output.secret(generated.result)

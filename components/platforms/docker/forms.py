"""Container inputs written exactly as the Docker provider reads them back.

pulumi-docker 5.x bridges kreuzwerker/terraform-provider-docker v4.5.0. After a
create, the provider reads the container back and stores what it read as the
state; the next ``pulumi up`` diffs the program's inputs against that state. An
input spelled differently from its read-back form is a perpetual diff, and for a
``ForceNew`` attribute (nearly all of them) a perpetual replacement. So every
input that the provider re-spells is written here in the provider's own form.

Sources (kreuzwerker/terraform-provider-docker v4.5.0):
- ``internal/provider/helpers.go``: ``nanoInt64ToDecimalString`` (``cpus``).
- ``internal/provider/resource_docker_container_funcs.go``: the read of
  ``healthcheck`` durations with Go's ``time.Duration.String()``, and
  ``resourceDockerContainerUpdate``, which applies only :data:`IN_PLACE`.
"""

from __future__ import annotations

import hashlib
import json
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

__all__ = ["IN_PLACE", "docker_cpus", "go_duration", "inputs_digest"]

IN_PLACE: frozenset[str] = frozenset(
    {
        "restart",
        "max_retry_count",
        "cpu_shares",
        "memory",
        "memory_reservation",
        "memory_swap",
        "cpu_set",
        "devices",
    }
)
"""What ``resourceDockerContainerUpdate`` applies to a running container. Any other
change either replaces the container (``ForceNew``) or is written to the state
without reaching the container (``healthcheck``, ``tmpfs``)."""


def _float_string(value: Fraction, places: int) -> str:
    """Go's ``big.Rat.FloatString``: ``places`` decimals, halves rounded away from zero."""
    quantum = Decimal(1).scaleb(-places)
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return str(exact.quantize(quantum, rounding=ROUND_HALF_UP))


def docker_cpus(cpus: float) -> str:
    """``cpus`` as the provider reads it back from the container's ``NanoCPUs``.

    A port of ``nanoInt64ToDecimalString`` (helpers.go): 1 -> ``"1.0"``,
    0.5 -> ``"0.5"``, 1.5 -> ``"1.5"``, 0.25 -> ``"0.25"``, 10 -> ``"10."``.
    """
    nano = round(Fraction(str(cpus)) * 10**9)
    if nano == 0:
        return "0"
    rat = Fraction(nano, 10**9)
    text = _float_string(rat, 9)
    # helpers.go: `if strings.Count(str, "0") == 9 { return rat.FloatString(1) }`
    if text.count("0") == 9:
        return _float_string(rat, 1)
    return text.rstrip("0")


def go_duration(seconds: int) -> str:
    """Go's ``time.Duration.String()`` for whole seconds: 60 -> ``"1m0s"``, 90 -> ``"1m30s"``."""
    if seconds < 0:
        raise ValueError("durations are not negative")
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def inputs_digest(inputs: dict[str, Any], length: int = 10) -> str:
    """A short, one-way digest of every input that cannot change in place.

    It goes into the container's name, so a change that must replace the
    container (or that the provider would record without applying) gives the
    replacement a new name, and the new container can start before the old one
    is removed. 40 bits of SHA-256 over the inputs reveal nothing of a
    generated password among them.
    """
    relevant = {k: v for k, v in inputs.items() if k not in IN_PLACE}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]

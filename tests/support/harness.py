"""Run components or the whole program under Luna's engine-like mocks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
from pulumi.runtime import rpc

from infra.mocks import LunaMocks, Record, RecordingMonitor, unwrap

__all__ = ["Resources", "run_components"]


class Resources:
    """The records of one run, with helpers that name the resource in failures."""

    def __init__(self, records: dict[str, Record]) -> None:
        self.records = list(records.values())

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def of_type(self, suffix: str) -> list[Record]:
        return [r for r in self.records if r.type.endswith(suffix)]

    def named(self, name: str) -> Record:
        found = [r for r in self.records if r.name == name]
        assert found, f"no resource named {name!r}; have {sorted(r.name for r in self.records)}"
        return found[0]

    def containers(self) -> dict[str, Record]:
        """Docker containers by their physical name without its digest suffix.

        Names end in ``-<10 hex>``, a digest of the inputs that cannot change in
        place (components/platforms/docker/forms.py); tests name the replica.
        """
        return {
            re.sub(r"-(?:[0-9a-f]{10}|[0-9a-f]{8})$", "", unwrap(r.inputs["name"])): r
            for r in self.of_type("/container:Container")
        }

    def by_urn(self, urn: str) -> Record:
        return next(r for r in self.records if r.urn == urn)


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def plain_dump(value: Any) -> str:
    """JSON of a value with secrets unwrapped: what would leak if secrecy were lost."""
    return json.dumps(unwrap(value), default=str)


def run_components(
    build: Callable[[], object], *, stack: str = "test", mocks: LunaMocks | None = None
) -> Resources:
    """Run ``build`` (which creates components) under mocks and return what registered."""
    mocks = mocks or LunaMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="luna", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({}, [])

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> object:
        # Returning an Output makes the run await it, so errors inside apply() fail.
        return build()

    program()
    return Resources(monitor.records)


__all__ += ["is_secret", "plain_dump"]

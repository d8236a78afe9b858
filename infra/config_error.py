"""The one error every bad ``luna:*`` value becomes: one line naming the key, the
value and what is allowed (raised by infra/settings.py and the checks it calls)."""

from __future__ import annotations

from typing import Final

__all__ = ["NAMESPACE", "ConfigError"]

NAMESPACE: Final = "luna"


class ConfigError(Exception):
    """One line: which key, which value, what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        shown = "(missing)" if value is None else repr(value)
        super().__init__(f"config {NAMESPACE}:{key} = {shown} is invalid: {allowed}")
        self.key = key

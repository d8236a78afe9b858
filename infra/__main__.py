"""Pulumi's entry point (``main: infra/``): settings, build, exports."""

from __future__ import annotations

import pulumi

from infra.program import build, export
from infra.settings import ConfigError, load_settings

try:
    settings = load_settings()
except ConfigError as error:
    # RunError prints just the message: one line, no traceback.
    raise pulumi.RunError(str(error)) from None

export(build(settings))

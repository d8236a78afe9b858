"""``python -m tests.rehearsal``: the rehearsal's command (tests/rehearsal/cli.py)."""

from __future__ import annotations

import sys

from tests.rehearsal.cli import main

sys.exit(main())

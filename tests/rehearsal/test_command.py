"""scripts/rehearse as a command: bad arguments, and an interrupted run leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.tools import REPO

REHEARSE = str(REPO / "scripts" / "rehearse")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stack", "qa"], "rehearse: error: argument --stack: invalid choice: 'qa'"),
        (["--scenario", "up,bogus"], "unknown scenario bogus; allowed: up, idempotence"),
    ],
)
def test_bad_arguments(argv: list[str], message: str) -> None:
    proc = subprocess.run([REHEARSE, *argv], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def _daemons(root_prefix: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    lines = [ln.split() for ln in out.stdout.splitlines() if root_prefix in ln]
    return [" ".join(w) for w in lines if w and w[0].endswith("/dockerd")]


@pytest.mark.slow
def test_sigterm_stops_everything_it_started() -> None:
    """SIGTERM once the private daemon runs: exit 1, one line, no daemon or device left."""
    # A short folder of its own (a unix socket path is at most 107 bytes).
    tmp = Path(tempfile.mkdtemp(prefix="rr-", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([REHEARSE, "--scenario", "up"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 120
    while not _daemons(str(tmp)) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    running = _daemons(str(tmp))
    assert running, "the private daemon never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "interrupted; everything it started was stopped" in err and "Traceback" not in err
    assert not _daemons(str(tmp)), "the daemon outlived the command"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert f"lunarh{proc.pid % 100000}:" not in links.stdout
    assert not any(tmp.iterdir()), f"left in {tmp}: {list(tmp.iterdir())}"
    shutil.rmtree(tmp, ignore_errors=True)

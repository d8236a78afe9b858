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
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True)
    lines = [ln.split() for ln in out.stdout.splitlines() if root_prefix in ln]
    return [" ".join(w) for w in lines if w and w[0].endswith("/dockerd")]


def _builds(parent: int) -> list[int]:
    """The app-image build children (tests/rehearsal/images.py) of process ``parent``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True, text=True,
                         check=True)  # fmt: skip
    rows = [ln.split(None, 2) for ln in out.stdout.splitlines()[1:]]
    return [int(r[0]) for r in rows if len(r) == 3 and r[1] == str(parent)
            and "build_apart_main" in r[2]]  # fmt: skip


def _group(pgid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pgid,args"], capture_output=True, text=True, check=True
    )
    return [ln for ln in out.stdout.splitlines()[1:] if ln.split()[0] == str(pgid)]


@pytest.mark.slow
def test_sigterm_stops_everything_it_started() -> None:
    """SIGTERM while the app's image builds (its longest step, minutes cold): exit 1
    within a minute, one line, no daemon, device or build program left."""
    # A short folder of its own (a unix socket path is at most 107 bytes).
    tmp = Path(tempfile.mkdtemp(prefix="rr-", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([REHEARSE, "--scenario", "up"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        # Cold, the shared minbase comes first (tests/real/node_base.py): minutes.
        deadline = time.monotonic() + 900
        while not (builds := _builds(proc.pid)) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        assert builds and _daemons(str(tmp)), "the app's build never started beside the daemon"
        time.sleep(3)  # into the build: its programs run in the child's own process group
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # never leave it running into the next test
            proc.kill()
            proc.communicate()
    assert time.monotonic() - t0 < 60, f"took {time.monotonic() - t0:.0f} s to stop"
    assert proc.returncode == 1, err
    assert not _group(builds[0]), f"the build's programs outlived it: {_group(builds[0])}"
    assert "interrupted; everything it started was stopped" in err and "Traceback" not in err
    assert not _daemons(str(tmp)), "the daemon outlived the command"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert f"lunarh{proc.pid % 100000}x" not in links.stdout, "its side device outlived it"
    assert not any(tmp.iterdir()), f"left in {tmp}: {list(tmp.iterdir())}"
    shutil.rmtree(tmp, ignore_errors=True)

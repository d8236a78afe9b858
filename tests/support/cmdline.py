"""Watch every process's command line while something runs: no secret may be there.

``/proc/<pid>/cmdline`` is readable by every user of the host (unless /proc is
mounted with hidepid), so a password passed as an argument leaks for as long
as that process lives. :func:`watch_cmdlines` samples every process's argv in
a thread until the block ends; use it around any generated script:

    with watch_cmdlines(["s3cret"]) as seen:
        subprocess.run(["sh", script], env=env, check=True)
    assert seen.argvs_matching("curl"), "the sampler never saw curl"
    assert not seen.leaks, seen.leaks
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["Seen", "watch_cmdlines"]


@dataclass
class Seen:
    secrets: Sequence[str] = field(repr=False)
    argvs: set[tuple[str, ...]] = field(default_factory=set, repr=False)
    samples: int = 0

    @property
    def leaks(self) -> list[str]:
        """Each argv that carries a secret, with the secret masked (the message is safe)."""
        out = []
        for argv in sorted(self.argvs):
            text = " ".join(argv)
            hits = [s for s in self.secrets if s in text]
            for s in hits:
                text = text.replace(s, "<SECRET>")
            if hits:
                out.append(text)
        return out

    def argvs_matching(self, program: str) -> list[tuple[str, ...]]:
        return [a for a in self.argvs if a and os.path.basename(a[0]) == program]


def _sample(seen: Seen, own: int) -> None:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            continue  # gone already
        if raw:
            seen.argvs.add(
                tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
            )
    seen.samples += 1


@contextlib.contextmanager
def watch_cmdlines(secrets: Sequence[str], *, interval_s: float = 0.001) -> Iterator[Seen]:
    """Sample every process's argv until the block ends (and once more after)."""
    seen = Seen(secrets=[s for s in secrets if s])
    stop = threading.Event()
    own = os.getpid()

    def run() -> None:
        while not stop.is_set():
            _sample(seen, own)
            time.sleep(interval_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(10)

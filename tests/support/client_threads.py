"""Client threads that send requests until their ``with`` block ends: the load of
the rollout tests and of the rehearsal's deploy scenarios."""

from __future__ import annotations

import threading
from typing import Self

__all__ = ["ClientThreads"]


class ClientThreads:
    """``threads`` daemon threads, each running :meth:`_run` from ``__enter__`` until
    ``__exit__``; a subclass sends its requests there while :meth:`running` and counts
    them under :attr:`_lock`."""

    def __init__(self, threads: int) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def running(self) -> bool:
        return not self._stop.is_set()

    def _run(self) -> None:
        raise NotImplementedError

"""A real PostgreSQL 15 (Debian) on 127.0.0.1, started with the generated flags and files.

initdb refuses root, so the cluster belongs to the ``postgres`` OS user, as in
the image (where the entrypoint runs initdb as ``postgres``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from components.configs import postgres as pg
from tests.real.support import Daemon, free_port, wait_for_port
from tests.support.tools import need

__all__ = ["PgServer", "bindir", "initdb", "postgres_owned_dir", "server_files"]


def bindir() -> Path:
    return Path(need("initdb")).resolve().parent


def postgres_owned_dir(prefix: str) -> Path:
    """A temp dir the ``postgres`` user owns (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    shutil.chown(root, "postgres", "postgres")
    return root


def server_files(root: Path, cert: Path, key: Path) -> tuple[Path, Path]:
    """``root/conf`` (the generated pg_hba and pg_ident) and ``root/tls`` (the server's
    pair), private to ``postgres`` as the server wants them."""
    conf, tls = root / "conf", root / "tls"
    for folder in (conf, tls):
        folder.mkdir(mode=0o700)
        shutil.chown(folder, "postgres", "postgres")
    (conf / "pg_hba.conf").write_text(pg.pg_hba())
    (conf / "pg_ident.conf").write_text(pg.pg_ident())
    shutil.copy(cert, tls / "server.crt")
    shutil.copy(key, tls / "server.key")
    for f in (*conf.iterdir(), *tls.iterdir()):
        f.chmod(0o600)
        shutil.chown(f, "postgres", "postgres")
    return conf, tls


def initdb(data: Path) -> None:
    subprocess.run(
        [str(bindir() / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=peer",
         "--auth-host=reject", "--encoding=UTF8", "--no-sync"],
        check=True, capture_output=True, timeout=120, user="postgres", cwd=data.parent,
    )  # fmt: skip


@dataclass
class PgServer:
    """``postgres -D data`` with ``flags`` (``-c k=v`` pairs) on a free port."""

    data: Path
    flags: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    daemon: Daemon | None = None

    def start(self) -> PgServer:
        self.port = self.port or free_port()
        sock = self.data.parent
        self.daemon = Daemon(
            [str(bindir() / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}",
             *self.flags],
            log=sock / f"postgres-{self.port}.log",
            user="postgres",
            cwd=sock,
            env={**os.environ, **self.env},
        )  # fmt: skip
        wait_for_port(self.port, proc=self.daemon.proc, what="postgres", log=self.daemon.log,
                      timeout=120)  # fmt: skip
        deadline = time.monotonic() + 120
        while self.local("SELECT 1", check=False).returncode != 0:
            assert time.monotonic() < deadline, f"postgres not ready:\n{self.daemon.output()}"
            assert self.daemon.proc.poll() is None, f"postgres died:\n{self.daemon.output()}"
            time.sleep(0.1)
        return self

    def local(
        self, sql: str, *, db: str = "postgres", check: bool = True, extra: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """psql as the superuser over the unix socket (peer), as the container's scripts do."""
        result = subprocess.run(
            [str(bindir() / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.data.parent), "-p", str(self.port), "-d", db, *extra, "-c", sql],
            capture_output=True, text=True, timeout=120, check=False, user="postgres",
            cwd=self.data.parent,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"psql {sql!r}: {result.stderr}"
        return result

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()

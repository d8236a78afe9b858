"""The Docker platform's PostgreSQL image ships what runs inside its container.

pgBackRest runs as ``archive_command`` and the base-backup loop inside the
server's container, and the server preloads pgaudit, so the image must install
both; its PostgreSQL major must match the packages (Debian's
``postgresql-<major>-pgaudit``) and the flags' version.
"""

from __future__ import annotations

import re

import yaml

from components.configs.postgres import server_flags
from tests.support.tools import REPO

DOCKERFILE = REPO / "images" / "postgres" / "Dockerfile"


def test_image_installs_the_archiver_and_pgaudit_for_its_major() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM postgres:(\d+)\.\d+-bookworm$", text, re.M)
    assert base, "the image must build on the official Debian PostgreSQL image, pinned"
    major = base.group(1)
    install = re.search(r"apt-get install[^\n]*", text)
    assert install, "the image installs nothing"
    assert "pgbackrest" in install.group(0), "the archiver is not in the image"
    assert f"postgresql-{major}-pgaudit" in install.group(0), "pgaudit for another major"
    assert re.search(r"^USER postgres$", text, re.M), "the image runs as root"
    flags = " ".join(server_flags(tls_dir=None, hba_file=None, archive=True, audit=True))
    assert "pgbackrest" in flags and "shared_preload_libraries=pgaudit" in flags


def test_default_docker_image_is_the_one_built_here() -> None:
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    image = project["config"]["luna:postgresImage"]["default"]
    major = re.search(r"^FROM postgres:(\d+)\.", DOCKERFILE.read_text(), re.M)
    assert major and re.fullmatch(rf"ghcr\.io/luna-app/luna-postgres:{major.group(1)}\.\S+", image)

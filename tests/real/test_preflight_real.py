"""The preflight's outside checks against real programs: the object store (moto's S3
behind TLS, tests/real/s3.py) and a Docker host (Debian's dockerd on a private socket)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.preflight_checks import docker_host, object_store
from tests.real.docker_host import DockerHost
from tests.real.docker_host import docker_host as start_docker
from tests.real.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3, local_s3

pytestmark = pytest.mark.slow

VERSIONED, PLAIN = "luna-backups-versioned", "luna-backups-plain"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with local_s3(tmp_path_factory.mktemp("s3"), buckets=(VERSIONED, PLAIN)) as store:
        store.client().put_bucket_versioning(
            Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"}
        )
        yield store


def _check(
    s3: LocalS3, bucket: str, *, secret: str = SECRET_KEY, ca: Path | None = None
) -> dict[str, str]:
    rows = object_store(
        endpoint=s3.tls_endpoint, region=REGION, bucket=bucket, access_key=ACCESS_KEY,
        secret_key=secret, path_style=True, ca_bundle=str(ca or s3.ca),
    )  # fmt: skip
    return {r.name: r.status for r in rows}


def test_a_versioned_bucket_reached_with_its_keys_passes(s3: LocalS3) -> None:
    assert _check(s3, VERSIONED) == {"object store": "ok", "bucket versioning": "ok"}


def test_a_bucket_without_versioning_fails(s3: LocalS3) -> None:
    assert _check(s3, PLAIN)["bucket versioning"] == "FAIL"


def test_a_missing_bucket_or_an_untrusted_endpoint_fails(s3: LocalS3, tmp_path: Path) -> None:
    assert _check(s3, "luna-backups-nobody-made")["object store"] == "FAIL"
    # The system's trust store does not know the local CA: TLS is verified, never skipped.
    other = tmp_path / "other-ca.pem"
    other.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    assert _check(s3, VERSIONED, ca=other)["object store"] == "FAIL"


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    yield from start_docker(tmp_path_factory.mktemp("docker"))


def test_a_running_docker_host_reports_its_engine_version(docker: DockerHost) -> None:
    rows = docker_host(f"unix://{docker.socket}")
    assert [r.status for r in rows] == ["ok"], rows
    assert "Docker Engine " in rows[0].detail, rows


def test_an_unreachable_docker_host_fails(tmp_path: Path) -> None:
    rows = docker_host(f"unix://{tmp_path}/no-daemon.sock")
    assert [r.status for r in rows] == ["FAIL"], rows

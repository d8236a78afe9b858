"""The Kubernetes backups with the real archiver: Barman Cloud, as CloudNativePG runs it.

On Kubernetes the operator's instance manager runs ``barman-cloud-wal-archive``
for every WAL segment and ``barman-cloud-backup`` for each ScheduledBackup, with
arguments it builds from the rendered Cluster's ``spec.backup.barmanObjectStore``.
No operator runs here, so the arguments come from a model of that code, taken
from cloudnative-pg/barman-cloud (the library the operator calls for in-tree
``barmanObjectStore`` backups; the chart 0.26.1 this program installs ships
operator 1.27):

- ``pkg/archiver/command.go`` ``BarmanCloudWalArchiveOptions``: ``--<wal.compression>``,
  ``-e <wal.encryption>``, ``--endpoint-url``, the cloud provider, then
  ``destinationPath`` and the server name (``serverName``, else the cluster's name);
- ``pkg/backup/backup.go`` ``GetBarmanCloudBackupOptions``: ``-U postgres -n <name>``,
  ``--<data.compression>``, ``--encryption <data.encryption>``, ``--jobs <data.jobs>``,
  ``--endpoint-url``, the cloud provider, ``destinationPath``, the server name;
- ``pkg/command/commandbuilder.go`` ``appendCloudProviderOptions``:
  ``--cloud-provider aws-s3`` for ``s3Credentials``; ``CloudWalRestoreOptions``
  for ``barman-cloud-wal-restore``;
- ``pkg/credentials/env.go`` ``envSetAWSCredentials``: ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` from the referenced Secret keys.

The model refuses a ``barmanObjectStore`` field it does not know, so a new field
in the program fails here instead of going unmodelled.

Underneath everything is real: PostgreSQL 15 and Barman Cloud 3.4
(``barman-cli-cloud``) from Debian, and the local S3 of tests/real/s3.py behind
TLS. The operand image ships a newer Barman Cloud (3.x); the options used here
exist in both. Substitutions: the endpoint (``https://localhost:<port>`` for the
stack's S3 endpoint, asserted https), ``AWS_CA_BUNDLE`` for the test CA (the
operand image trusts the public CAs that sign the real endpoint's certificate),
and the two credentials (the local S3's instead of the stack's placeholders;
the Secret's key names and its region are the rendered ones, asserted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.conftest import manifests
from tests.real.pg import PgServer, bindir, initdb, postgres_owned_dir
from tests.real.s3 import ACCESS_KEY, SECRET_KEY, LocalS3, local_s3
from tests.real.support import render_stack
from tests.support.tools import need

pytestmark = pytest.mark.slow

STACK = "staging"
K8S_SECRET = "kubernetes:core/v1:Secret"
_MODELLED = {"destinationPath", "endpointURL", "s3Credentials", "wal", "data"}
# Inside wal/data: what the model turns into arguments, plus maxParallel (parallel
# archiving by the instance manager: more processes, the same arguments each).
_MODELLED_WAL = {"compression", "encryption", "maxParallel"}
_MODELLED_DATA = {"compression", "encryption", "immediateCheckpoint", "jobs"}


def _cloud(store: Mapping[str, Any]) -> list[str]:
    """``--endpoint-url`` and ``appendCloudProviderOptions`` (commandbuilder.go)."""
    opts = ["--endpoint-url", store["endpointURL"]] if store.get("endpointURL") else []
    assert "s3Credentials" in store, "the model knows S3 credentials only"
    return [*opts, "--cloud-provider", "aws-s3"]


def wal_archive_argv(store: Mapping[str, Any], server: str) -> list[str]:
    """``BarmanCloudWalArchiveOptions`` (pkg/archiver/command.go); the WAL path follows."""
    wal, opts = store.get("wal", {}), []
    if wal.get("compression"):
        opts.append(f"--{wal['compression']}")
    if wal.get("encryption"):
        opts += ["-e", wal["encryption"]]
    return ["barman-cloud-wal-archive", *opts, *_cloud(store), store["destinationPath"], server]


def backup_argv(store: Mapping[str, Any], name: str, server: str) -> list[str]:
    """``GetBarmanCloudBackupOptions`` (pkg/backup/backup.go)."""
    data, opts = store.get("data", {}), ["-U", "postgres", "-n", name]
    if data.get("compression"):
        opts.append(f"--{data['compression']}")
    if data.get("encryption"):
        opts += ["--encryption", data["encryption"]]
    if data.get("immediateCheckpoint"):
        opts.append("--immediate-checkpoint")
    if "jobs" in data:
        opts += ["--jobs", str(data["jobs"])]
    return ["barman-cloud-backup", *opts, *_cloud(store), store["destinationPath"], server]


def wal_restore_argv(store: Mapping[str, Any], server: str) -> list[str]:
    """``CloudWalRestoreOptions`` (pkg/command/commandbuilder.go); %f %p follow."""
    return ["barman-cloud-wal-restore", *_cloud(store), store["destinationPath"], server]


def restore_argv(store: Mapping[str, Any], server: str, backup_id: str, into: Path) -> list[str]:
    return ["barman-cloud-restore", *_cloud(store), store["destinationPath"], server, backup_id,
            str(into)]  # fmt: skip


def cluster() -> dict[str, Any]:
    (found,) = [m for m in manifests(STACK) if m.get("kind") == "Cluster"]
    return found


@dataclass
class Rig:
    root: Path
    s3: LocalS3
    store: dict[str, Any]
    server_name: str
    bucket: str
    env: dict[str, str]
    server: PgServer

    def run(self, argv: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [need(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=300,
            check=False, user="postgres", cwd=self.root, env={**self.env, **extra},
        )  # fmt: skip
        assert proc.returncode == 0, f"{shlex.join(argv)}:\n{proc.stdout}{proc.stderr}"
        return proc


def _store_for_this_host(store: dict[str, Any], s3: LocalS3) -> dict[str, Any]:
    unknown = (
        (set(store) - _MODELLED)
        | {f"wal.{k}" for k in set(store.get("wal", {})) - _MODELLED_WAL}
        | {f"data.{k}" for k in set(store.get("data", {})) - _MODELLED_DATA}
    )
    assert not unknown, f"barmanObjectStore fields the model does not know: {sorted(unknown)}"
    assert store["endpointURL"].startswith("https://"), store["endpointURL"]
    return {**store, "endpointURL": f"https://{s3.tls_endpoint}"}


def _secret(name: str) -> dict[str, str]:
    """The rendered Secret's ``stringData``, in clear (the render's own inputs)."""
    found = [r for r in render_stack(STACK, platform="kubernetes").records(K8S_SECRET)
             if r.get("metadata", {}).get("name") == name]  # fmt: skip
    assert len(found) == 1, f"{STACK}: no single Secret {name!r} for the object store"
    data: dict[str, str] = found[0]["stringData"]
    return data


def _env(store: Mapping[str, Any], s3: LocalS3, root: Path) -> dict[str, str]:
    """``envSetAWSCredentials``: the referenced Secret keys, exported as the operator does.

    The keys must exist in the rendered Secret (a wrong key name breaks every
    backup). The region is the rendered one; the two credentials are the local
    S3's (the rendered ones are the stack's placeholders).
    """
    refs = store["s3Credentials"]
    assert set(refs) == {"accessKeyId", "secretAccessKey", "region"}, refs
    secret = _secret(refs["accessKeyId"]["name"])
    for ref in refs.values():
        assert ref["name"] == refs["accessKeyId"]["name"], refs
        assert ref["key"] in secret, f"the Secret has no key {ref['key']!r}: {sorted(secret)}"
    shutil.copy(s3.ca, root / "s3-ca.crt")
    return {
        "PATH": f"{bindir()}:/usr/bin:/bin",
        "HOME": str(root),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": secret[refs["region"]["key"]],
        "AWS_CA_BUNDLE": str(root / "s3-ca.crt"),
    }


def _wait_archived(server: PgServer, segment: str) -> None:
    deadline = time.monotonic() + 60
    query = "SELECT coalesce(last_archived_wal, '') || '|' || coalesce(last_failed_wal, '') " \
            "FROM pg_stat_archiver"  # fmt: skip
    while True:
        archived, failed = server.local(query).stdout.strip().split("|")
        if archived >= segment:
            return
        assert time.monotonic() < deadline, f"{segment} not archived (last failed: {failed})"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    c = cluster()
    store = c["spec"]["backup"]["barmanObjectStore"]
    bucket = store["destinationPath"].removeprefix("s3://").split("/")[0]
    root = postgres_owned_dir("luna-barman-")
    stack = contextlib.ExitStack()
    try:
        s3 = stack.enter_context(local_s3(tmp_path_factory.mktemp("s3"), buckets=(bucket,)))
        here = _store_for_this_host(store, s3)
        env = _env(store, s3, root)
        for f in root.iterdir():
            shutil.chown(f, "postgres", "postgres")
        server_name = c["metadata"]["name"]
        archive = shlex.join(wal_archive_argv(here, server_name)) + " %p"
        data = root / "data"
        initdb(data)
        (root / "hba.conf").write_text("local all all peer\n")
        hba = f"hba_file={root / 'hba.conf'}"
        flags = ("-c", "wal_level=replica", "-c", "archive_mode=on",
                 "-c", f"archive_command={archive}", "-c", hba)  # fmt: skip
        server = PgServer(data, flags, env=env).start()
        stack.callback(server.stop)
        yield Rig(root, s3, here, server_name, bucket, env, server)
    finally:
        stack.close()
        if not os.environ.get("LUNA_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def test_backup_and_wal_restore_every_row_with_sse_on_every_object(rig: Rig) -> None:
    s = rig.server
    s.local("CREATE TABLE note (id int PRIMARY KEY, body text);"
            "INSERT INTO note SELECT g, md5(g::text) FROM generate_series(1, 5000) g")  # fmt: skip
    pg_env = {"PGHOST": str(rig.root), "PGPORT": str(s.port)}
    started = time.monotonic()
    rig.run(backup_argv(rig.store, "luna-scheduled", rig.server_name), **pg_env)
    backup_s = time.monotonic() - started
    # Written after the backup: only the archived WAL can bring these rows back.
    s.local("INSERT INTO note SELECT g, 'after-backup' FROM generate_series(5001, 5100) g")
    segment = s.local("SELECT pg_walfile_name(pg_current_wal_lsn())").stdout.strip()
    s.local("SELECT pg_switch_wal()")
    _wait_archived(s, segment)

    client = rig.s3.client()
    keys = rig.s3.keys(rig.bucket)
    sse = {k: client.head_object(Bucket=rig.bucket, Key=k).get("ServerSideEncryption")
           for k in keys}  # fmt: skip
    wal = [k for k in keys if "/wals/" in k]
    base = [k for k in keys if "/base/" in k]
    print(f"\n{len(keys)} objects ({len(wal)} WAL, {len(base)} backup), "
          f"SSE {sorted(set(map(str, sse.values())))}; backup {backup_s:.1f} s")  # fmt: skip
    assert wal and base, f"the bucket holds {keys}"
    unencrypted = [k for k, v in sse.items() if v != "AES256"]
    assert not unencrypted, f"objects without server-side encryption: {unencrypted[:5]}"

    # Recovery as the operator bootstraps it: barman-cloud-restore, then replay.
    listing = rig.run(["barman-cloud-backup-list", "--format", "json", *_cloud(rig.store),
                       rig.store["destinationPath"], rig.server_name])  # fmt: skip
    (backup,) = json.loads(listing.stdout)["backups_list"]
    into = rig.root / "restored"
    rig.run(restore_argv(rig.store, rig.server_name, backup["backup_id"], into))
    (into / "recovery.signal").touch()
    shutil.chown(into / "recovery.signal", "postgres", "postgres")
    restore_cmd = shlex.join(wal_restore_argv(rig.store, rig.server_name)) + " %f %p"
    flags = ("-c", f"restore_command={restore_cmd}", "-c", "archive_mode=off",
             "-c", f"hba_file={rig.root / 'hba.conf'}")  # fmt: skip
    restored = PgServer(into, flags, env=rig.env).start()
    try:
        deadline = time.monotonic() + 120
        while restored.local("SELECT pg_is_in_recovery()").stdout.strip() != "f":
            assert time.monotonic() < deadline, "recovery did not finish"
            time.sleep(0.2)
        rows = restored.local(
            "SELECT count(*), count(*) FILTER (WHERE body = 'after-backup') FROM note"
        ).stdout.strip()
    finally:
        restored.stop()
    print(f"restored: {rows} (rows, rows written after the backup)")
    assert rows == "5100|100", f"restored rows|after-backup rows: {rows}"


def test_without_encryption_the_object_has_no_sse(rig: Rig) -> None:
    """The check above can fail: the same archiver without ``wal.encryption``."""
    plain = {**rig.store, "wal": {k: v for k, v in rig.store["wal"].items() if k != "encryption"}}
    wal = rig.root / "000000010000000000000042"
    wal.write_bytes(b"\0" * 16 * 1024 * 1024)
    shutil.chown(wal, "postgres", "postgres")
    rig.run([*wal_archive_argv(plain, "control"), str(wal)])
    (key,) = [k for k in rig.s3.keys(rig.bucket) if "/control/" in k]
    head = rig.s3.client().head_object(Bucket=rig.bucket, Key=key)
    assert "ServerSideEncryption" not in head, head

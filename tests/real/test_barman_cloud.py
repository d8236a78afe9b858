"""The Kubernetes backups with the real archiver: Barman Cloud, as the plugin runs it.

On Kubernetes the Barman Cloud plugin's sidecar (cloudnative-pg/plugin-barman-cloud
v0.13.0) runs ``barman-cloud-wal-archive`` for every WAL segment and
``barman-cloud-backup`` for each ScheduledBackup, with arguments it builds from
the rendered ``ObjectStore``'s ``spec.configuration`` (a
``barmanapi.BarmanObjectStoreConfiguration``: api/v1/objectstore_types.go) and the
server name in the Cluster's ``spec.plugins[].parameters.serverName``
(internal/cnpgi/operator/config/config.go). The plugin calls the same library as
the in-tree archiver did, cloudnative-pg/barman-cloud (internal/cnpgi/instance/backup.go,
internal/cnpgi/restore/restore.go import its pkg/backup, pkg/archiver, pkg/command,
pkg/credentials). No operator runs here, so the arguments come from a model of
that library:

- ``pkg/archiver/command.go`` ``BarmanCloudWalArchiveOptions``: ``--<wal.compression>``,
  ``-e <wal.encryption>``, ``--endpoint-url``, the cloud provider, then
  ``destinationPath`` and the server name;
- ``pkg/backup/backup.go`` ``GetBarmanCloudBackupOptions``: ``-U postgres -n <name>``,
  ``--<data.compression>``, ``--encryption <data.encryption>``, ``--jobs <data.jobs>``,
  ``--endpoint-url``, the cloud provider, ``destinationPath``, the server name;
- ``pkg/command/commandbuilder.go`` ``appendCloudProviderOptions``:
  ``--cloud-provider aws-s3`` for ``s3Credentials``; ``CloudWalRestoreOptions``
  for ``barman-cloud-wal-restore``;
- ``pkg/credentials/env.go`` ``envSetAWSCredentials``: ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` from the referenced Secret keys.

The model refuses a configuration field it does not know, so a new field in the
program fails here instead of going unmodelled.

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
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.conftest import manifests, render_k8s
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


def object_store(c: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The configuration of the ObjectStore the Cluster's plugin entry names, and the
    server name it archives under."""
    (plugin,) = [p for p in c["spec"]["plugins"] if p.get("isWALArchiver")]
    params = plugin["parameters"]
    (store,) = [m for m in manifests(STACK) if m.get("kind") == "ObjectStore"
                and m["metadata"]["name"] == params["barmanObjectName"]]  # fmt: skip
    return store["spec"]["configuration"], params.get("serverName", c["metadata"]["name"])


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
    assert not unknown, f"ObjectStore fields the model does not know: {sorted(unknown)}"
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
    store, server_name = object_store(c)
    bucket = store["destinationPath"].removeprefix("s3://").split("/")[0]
    root = postgres_owned_dir("luna-barman-")
    stack = contextlib.ExitStack()
    try:
        s3 = stack.enter_context(local_s3(tmp_path_factory.mktemp("s3"), buckets=(bucket,)))
        here = _store_for_this_host(store, s3)
        env = _env(store, s3, root)
        for f in root.iterdir():
            shutil.chown(f, "postgres", "postgres")
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


def _drill_text(rig: Rig, scratch: Path) -> str:
    """The rendered drill script, with this host's endpoint, scratch and Pushgateway."""
    from components.platforms.kubernetes.drill import SCRATCH

    files = render_k8s(STACK).files()
    (text,) = [t for p, t in files.items() if p.endswith("/opt/luna/drill.sh")]
    endpoint = "https://" + cluster_endpoint()
    assert endpoint in text and SCRATCH in text, "the drill reads the rendered ObjectStore"
    text = text.replace(endpoint, rig.store["endpointURL"]).replace(SCRATCH, str(scratch))
    # Nothing listens there: a push fails at once and the drill's verdict is its exit code.
    return re.sub(r"'?http://pushgateway[^ ']*'?", "http://127.0.0.1:9/", text)


def cluster_endpoint() -> str:
    store, _ = object_store(cluster())
    endpoint: str = store["endpointURL"].removeprefix("https://")
    return endpoint


def _run_drill(rig: Rig, name: str) -> subprocess.CompletedProcess[str]:
    scratch = rig.root / name
    scratch.mkdir()
    shutil.chown(scratch, "postgres", "postgres")
    script = rig.root / f"{name}.sh"
    script.write_text(_drill_text(rig, scratch))
    return subprocess.run(
        ["/bin/sh", str(script)], capture_output=True, text=True, timeout=600, check=False,
        user="postgres", cwd=rig.root, env=rig.env,
    )  # fmt: skip


def _with_backup_and_wal(rig: Rig) -> str:
    """A fresh backup, rows after it, and their WAL archived; returns the backup's id."""
    s = rig.server
    s.local("CREATE TABLE IF NOT EXISTS drill (id int, body text);")
    s.local("INSERT INTO drill SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    pg_env = {"PGHOST": str(rig.root), "PGPORT": str(s.port)}
    rig.run(backup_argv(rig.store, "drill", rig.server_name), **pg_env)
    for _ in range(3):
        s.local("INSERT INTO drill SELECT g, 'after' FROM generate_series(1, 20000) g")
        segment = s.local("SELECT pg_walfile_name(pg_current_wal_lsn())").stdout.strip()
        s.local("SELECT pg_switch_wal()")
        _wait_archived(s, segment)
    listing = rig.run(["barman-cloud-backup-list", "--format", "json", *_cloud(rig.store),
                       rig.store["destinationPath"], rig.server_name])  # fmt: skip
    newest = max(json.loads(listing.stdout)["backups_list"], key=lambda b: b["end_time"])
    backup_id: str = newest["backup_id"]
    return backup_id


def _overwrite(rig: Rig, key: str, body: bytes) -> bytes:
    client = rig.s3.client()
    old: bytes = client.get_object(Bucket=rig.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=rig.bucket, Key=key, Body=body)
    return old


def test_restore_drill_passes_on_the_archive_and_fails_on_a_broken_one(rig: Rig) -> None:
    """The rendered drill script, run with real Barman Cloud and PostgreSQL 15."""
    backup_id = _with_backup_and_wal(rig)
    started = time.monotonic()
    ok = _run_drill(rig, "drill-ok")
    took = time.monotonic() - started
    print(f"\ndrill on a sound archive: exit {ok.returncode} in {took:.1f} s\n{ok.stdout}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"backup {backup_id} replayed" in ok.stdout

    # A WAL segment written after the backup, garbled: recovery stops early.
    keys = rig.s3.keys(rig.bucket)
    wal = sorted(k for k in keys if f"/{rig.server_name}/wals/" in k and ".history" not in k)
    victim = wal[-2]
    old = _overwrite(rig, victim, b"\x1f\x8b garbage")
    try:
        broken = _run_drill(rig, "drill-wal")
    finally:
        _overwrite(rig, victim, old)
    print(f"drill on a garbled {victim}: exit {broken.returncode}\n{broken.stderr[-500:]}")
    assert broken.returncode != 0 and "broken WAL chain" in broken.stderr, broken.stderr

    # The backup's data file garbled: the restore itself fails.
    (data,) = [k for k in keys if f"/{backup_id}/data.tar" in k]
    old = _overwrite(rig, data, b"\x1f\x8b garbage")
    try:
        bad = _run_drill(rig, "drill-data")
    finally:
        _overwrite(rig, data, old)
    print(f"drill on a garbled {data}: exit {bad.returncode}\n{bad.stderr[-500:]}")
    assert bad.returncode != 0 and "did not restore" in bad.stderr, bad.stderr

"""What the pipeline keeps and whom it tells: the deployed image committed to git
by the bot, each deploy's record in write-once storage, and pages through the
stack's own receivers.

The bot's push goes to a real bare git repository; the record goes to moto's S3
(tests/real/s3.py) with Object Lock; the pages go to a webhook receiver on
127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import notify
import pytest
import record_deploy
import record_image
import stack_secrets

from tests.support.tools import REPO

DIGEST = "ghcr.io/luna-app/luna-web:1.4.2@sha256:" + "b" * 64


# ------------------------------------------------------ the image, in git
def test_with_image_changes_only_the_app_image_line() -> None:
    text = (REPO / "Pulumi.prod.yaml").read_text()
    new = record_image.with_image(text, DIGEST)
    assert record_image.current_image(new) == DIGEST
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and "luna:appImage" in changed[0][0], changed


@pytest.mark.parametrize(
    "image",
    ["ghcr.io/luna-app/luna-web:1.4.2", "evil.example/x:1", DIGEST + "\nluna:platform: docker"],
)
def test_with_image_refuses_anything_but_a_digest(image: str) -> None:
    with pytest.raises(ValueError, match="pinned by digest"):
        record_image.with_image("config:\n  luna:appImage: a:1\n", image)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_the_bot_commits_the_deployed_image_so_a_later_push_deploys_it(tmp_path: Path) -> None:
    remote = tmp_path / "luna-app" / "luna-infra"
    remote.mkdir(parents=True)
    _git(remote, "init", "-q", "--bare", "-b", "main")
    work = tmp_path / "work"
    _git(tmp_path, "clone", "-q", str(remote), str(work))
    for f in (
        "Pulumi.prod.yaml",
        "Pulumi.staging.yaml",
        "scripts/record_image.py",
        "scripts/lib/cli.py",
        "scripts/lib/__init__.py",
        ".github/scripts/record-image.sh",
    ):
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        (work / f).write_text((REPO / f).read_text())
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "base")
    _git(work, "push", "-q", "origin", "HEAD:main")
    # Meanwhile a docs-only merge lands on main: the bot must rebase onto it.
    other = tmp_path / "other"
    _git(tmp_path, "clone", "-q", str(remote), str(other))
    (other / "README.md").write_text("docs\n")
    _git(other, "add", "-A")
    _git(other, "commit", "-qm", "docs only")
    _git(other, "push", "-q", "origin", "HEAD:main")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TOKEN": "ghs_test",
        "GITHUB_SERVER_URL": f"file://{tmp_path}",
        "GITHUB_REPOSITORY": "luna-app/luna-infra",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_RUN_ID": "42",
        "PROD_IMAGE": DIGEST,
        "STAGING_IMAGE": "",
    }
    done = subprocess.run(
        ["bash", ".github/scripts/record-image.sh"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ghs_test" not in done.stdout + done.stderr
    # A fresh clone of main (what the next push's run checks out) names the new image.
    fresh = tmp_path / "fresh"
    _git(tmp_path, "clone", "-q", str(remote), str(fresh))
    assert record_image.current_image((fresh / "Pulumi.prod.yaml").read_text()) == DIGEST
    assert (fresh / "README.md").exists(), "the bot must not drop what landed meanwhile"
    assert "[skip ci]" in _git(fresh, "log", "-1", "--format=%s")
    # Run again with the same image: nothing to commit.
    again = subprocess.run(
        ["bash", ".github/scripts/record-image.sh"],
        cwd=fresh,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0 and "already names" in again.stdout


def test_a_push_deploys_the_committed_image() -> None:
    deploy = (REPO / ".github" / "scripts" / "deploy.sh").read_text()
    assert 'image=${IMAGE:-$(python scripts/record_image.py --stack "$STACK" --current)}' in deploy


# ------------------------------------------------- records, write-once, 6 years
APPROVALS = [
    {
        "state": "approved",
        "user": {"login": "reviewer1"},
        "environments": [{"name": "production-approval"}],
    },
    {
        "state": "rejected",
        "user": {"login": "nope"},
        "environments": [{"name": "production-approval"}],
    },
]


def test_approvers_are_read_from_the_approvals_api() -> None:
    assert record_deploy.approvers(APPROVALS, "production-approval") == ["reviewer1"]
    assert record_deploy.approvers(APPROVALS, "staging") == []


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.real.s3 import local_s3

    with local_s3(tmp_path_factory.mktemp("s3"), buckets=()) as server:
        client = server.client()
        client.create_bucket(Bucket="records", ObjectLockEnabledForBucket=True)
        client.put_object_lock_configuration(
            Bucket="records", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
        )
        client.create_bucket(Bucket="unlocked")
        yield client


@pytest.mark.slow  # moto's S3 server behind stunnel (tests/real/s3.py)
def test_each_deploy_is_recorded_write_once_for_six_years(s3: Any, tmp_path: Path) -> None:
    preview = tmp_path / "preview.txt"
    preview.write_text("~ app image 1.4.1 -> 1.4.2\n")
    approvals = tmp_path / "approvals.json"
    approvals.write_text(json.dumps(APPROVALS))
    env = {
        "GITHUB_SHA": "c0ffee",
        "GITHUB_RUN_ID": "7",
        "GITHUB_REPOSITORY": "luna-app/luna-infra",
        "GITHUB_ACTOR": "alice",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        rc = record_deploy.main(
            [
                "--bucket",
                "records",
                "--stack",
                "prod",
                "--kind",
                "deploy",
                "--image",
                DIGEST,
                "--result",
                "success",
                "--check",
                "smoke=success",
                "--check",
                "crisis=success",
                "--shipped",
                "luna-postgres=ghcr.io/luna-app/luna-postgres@sha256:" + "c" * 64,
                "--preview",
                str(preview),
                "--approvals",
                str(approvals),
                "--started",
                "t0",
            ],
            client=s3,
        )
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert rc == 0
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket="records")["Contents"]]
    record = json.loads(s3.get_object(Bucket="records", Key=key)["Body"].read())
    assert record["commit"] == "c0ffee" and record["image"] == DIGEST
    assert record["approved_by"] == ["reviewer1"] and record["checks"]["crisis"] == "success"
    assert record["preview"]["text"].startswith("~ app image") and record["shipped_images"]
    assert record["started_at"] == "t0" and record["finished_at"]
    # HEAD carries the lock (moto 5's GetObjectRetention answers 500 on this object).
    head = s3.head_object(Bucket="records", Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert until - datetime.now(UTC) > timedelta(days=6 * 365), until
    version = head["VersionId"]
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(Bucket="records", Key=key, VersionId=version)


@pytest.mark.slow
def test_a_bucket_without_object_lock_is_refused(s3: Any) -> None:
    rc = record_deploy.main(
        [
            "--bucket",
            "unlocked",
            "--stack",
            "prod",
            "--kind",
            "deploy",
            "--image",
            DIGEST,
            "--result",
            "success",
        ],
        client=s3,
    )
    assert rc == 1
    assert "Contents" not in s3.list_objects_v2(Bucket="unlocked")


# ----------------------------------------------------------------- pages
class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, dict[str, str], Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(202 if self.path != "/broken" else 500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.got = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_failure_pages_through_the_stacks_own_receivers(
    receiver: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")

    with mock_aws():
        import boto3  # type: ignore[import-untyped]

        sm = boto3.client("secretsmanager", region_name="eu-central-1")
        values = {
            "pagerdutyRoutingKey": "R0UT1NGKEY0123456789abcdef012345",
            "chatWebhookUrl": f"{receiver}/chat",
            "alertWebhookUrl": f"{receiver}/hook",
        }
        for key, value in values.items():
            sm.create_secret(Name=stack_secrets.store_id("prod", key), SecretString=value)
        rc = notify.main(
            [
                "--stack",
                "prod",
                "--event",
                "rollback",
                "--summary",
                "crisis p95 900 ms; rolled back",
                "--run-url",
                "https://github.com/luna-app/luna-infra/actions/runs/7",
                "--pagerduty-url",
                f"{receiver}/v2/enqueue",
            ]
        )
        assert rc == 0
    paths = {path: body for path, _, body in _Receiver.got}
    assert set(paths) == {"/v2/enqueue", "/chat", "/hook"}, paths
    pd = paths["/v2/enqueue"]
    assert pd["routing_key"] == values["pagerdutyRoutingKey"] and pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] == "critical" and "rolled back" in pd["payload"]["summary"]
    assert "[luna prod] rollback" in paths["/chat"]["text"]
    assert paths["/hook"]["event"] == "rollback"
    out = capsys.readouterr()
    for secret in values.values():
        assert secret not in out.out + out.err, "a receiver's secret reached the log"


def test_no_receiver_or_none_answering_fails_the_step(receiver: str) -> None:
    assert notify.send_all([]) == 1
    broken = notify.messages(
        {"alertWebhookUrl": f"{receiver}/broken"},
        stack="staging",
        event="drift",
        summary="x",
        run_url="",
        chat_kind="slack",
    )
    assert notify.send_all(broken) == 1


def test_every_failure_path_pages() -> None:
    import yaml

    recover = yaml.safe_load((REPO / ".github/workflows/recover.yml").read_text())
    step = next(s for s in recover["jobs"]["recover"]["steps"] if "notify.py" in str(s.get("run")))
    assert step["if"] == "${{ always() }}"
    drift = yaml.safe_load((REPO / ".github/workflows/drift.yml").read_text())
    step = next(s for s in drift["jobs"]["drift"]["steps"] if "notify.py" in str(s.get("run")))
    assert step["if"] == "${{ failure() }}" and "--event drift" in step["run"]
    pipeline = yaml.safe_load((REPO / ".github/workflows/pipeline.yml").read_text())
    for name in ("recover-staging", "recover-production"):
        assert pipeline["jobs"][name]["uses"] == "./.github/workflows/recover.yml"

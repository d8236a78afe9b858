#!/usr/bin/env python3
"""Write one deploy's record to write-once storage, kept six years (HIPAA §164.316(b)(2)).

GitHub keeps logs and artifacts 400 days at most; this record outlives them. It
is a JSON object in an S3 bucket created with Object Lock, written with
``ObjectLockMode=COMPLIANCE`` and a retain-until date six years on: nobody, the
bucket's owner included, can delete or overwrite that version before then.

    record_deploy.py --bucket luna-deploy-records --stack prod --kind deploy \\
      --image ghcr.io/luna-app/luna-web@sha256:... --result success \\
      --preview preview.txt --approvals approvals.json --check smoke=success ...

The record holds: stack, kind (deploy or rollback), commit, run, actor, the
deployed image and the digests of the images this repository ships, the
preview's text and SHA-256, who approved (from GitHub's run approvals API),
every check's result, and when it started and ended. Exit 1 when the bucket
has no Object Lock (a record there could be erased), 2 on bad usage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lib.cli import UsageError, tool_parser

__all__ = [
    "RETENTION_DAYS",
    "NotWriteOnceError",
    "approvers",
    "build_record",
    "main",
    "write_record",
]


class NotWriteOnceError(Exception):
    """The bucket has no Object Lock: a record written there could be erased."""


# Six years, counting the two leap days any six-year span can hold.
RETENTION_DAYS = 6 * 365 + 2


def approvers(approvals: object, environment: str) -> list[str]:
    """Logins that approved ``environment``, from
    ``GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals``."""
    names: list[str] = []
    for entry in approvals if isinstance(approvals, list) else []:
        envs = {e.get("name") for e in entry.get("environments", []) if isinstance(e, dict)}
        if entry.get("state") == "approved" and environment in envs:
            names.append(str((entry.get("user") or {}).get("login", "?")))
    return names


def build_record(
    *,
    stack: str,
    kind: str,
    image: str,
    result: str,
    checks: dict[str, str],
    preview: str | None,
    approved_by: list[str],
    shipped: dict[str, str],
    started: str,
    env: dict[str, str],
    now: datetime,
) -> dict[str, Any]:
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    repo, run_id = env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_RUN_ID", "")
    return {
        "schema": "luna-deploy-record/1",
        "stack": stack,
        "kind": kind,
        "result": result,
        "commit": env.get("GITHUB_SHA", ""),
        "ref": env.get("GITHUB_REF", ""),
        "run": {
            "id": run_id,
            "attempt": env.get("GITHUB_RUN_ATTEMPT", ""),
            "url": f"{server}/{repo}/actions/runs/{run_id}" if run_id else "",
        },
        "actor": env.get("GITHUB_ACTOR", ""),
        "event": env.get("GITHUB_EVENT_NAME", ""),
        "image": image,
        "shipped_images": shipped,
        "preview": None
        if preview is None
        else {"sha256": hashlib.sha256(preview.encode()).hexdigest(), "text": preview},
        "approved_by": approved_by,
        "checks": checks,
        "started_at": started,
        "finished_at": now.isoformat(timespec="seconds"),
    }


def write_record(client: Any, bucket: str, record: dict[str, Any], now: datetime) -> str:
    """Put ``record`` under COMPLIANCE retention; return its key. Refuses a bucket
    without Object Lock, where the same put would be silently erasable."""
    try:
        lock = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except client.exceptions.ClientError as err:
        raise NotWriteOnceError(
            f"record_deploy: bucket {bucket} has no Object Lock ({err})"
        ) from None
    if lock.get("ObjectLockEnabled") != "Enabled":
        raise NotWriteOnceError(f"record_deploy: bucket {bucket} has no Object Lock enabled")
    body = json.dumps(record, indent=2, sort_keys=True).encode()
    run = record["run"]
    key = (
        f"{record['stack']}/{now:%Y/%m/%d/%H%M%S}-run{run['id'] or 'local'}"
        f"-{run['attempt'] or '1'}-{record['kind']}.json"
    )
    client.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType="application/json",
        # Object Lock puts must carry an integrity checksum (S3 PutObject API).
        ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),  # noqa: S324
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=now + timedelta(days=RETENTION_DAYS),
    )
    return key


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--{what} wants NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def main(argv: Sequence[str] | None = None, client: Any = None) -> int:
    parser = tool_parser("record_deploy", __doc__)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--stack", required=True, choices=("staging", "prod"))
    parser.add_argument("--kind", required=True, choices=("deploy", "rollback"))
    parser.add_argument("--image", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--check", action="append", default=[], metavar="NAME=RESULT")
    parser.add_argument("--shipped", action="append", default=[], metavar="NAME=DIGEST")
    parser.add_argument("--preview", type=Path, help="the preview's text, as reviewers saw it")
    parser.add_argument("--approvals", type=Path, help="the run approvals API's JSON")
    parser.add_argument("--approval-environment", default="production-approval")
    parser.add_argument("--started", default="")
    args = parser.parse_args(argv)
    try:
        checks, shipped = _pairs(args.check, "check"), _pairs(args.shipped, "shipped")
        preview = args.preview.read_text(encoding="utf-8") if args.preview else None
        approvals = json.loads(args.approvals.read_text()) if args.approvals else []
    except (UsageError, OSError, ValueError) as err:
        print(f"record_deploy: error: {err}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    record = build_record(
        stack=args.stack,
        kind=args.kind,
        image=args.image,
        result=args.result,
        checks=checks,
        preview=preview,
        approved_by=approvers(approvals, args.approval_environment),
        shipped=shipped,
        started=args.started,
        env=dict(os.environ),
        now=now,
    )
    if client is None:
        import boto3  # type: ignore[import-untyped]  # requirements.lock

        client = boto3.client("s3")
    try:
        key = write_record(client, args.bucket, record, now)
    except NotWriteOnceError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"record_deploy: s3://{args.bucket}/{key} (COMPLIANCE, {RETENTION_DAYS} days)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

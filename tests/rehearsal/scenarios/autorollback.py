"""The pipeline's automatic rollback (issue #22), on the rehearsal, as part of scenario f.

A release that is healthy (its health path answers) but breaks the crisis path is
deployed while clients call the crisis path through the edge. Then what the
pipeline does after a deploy, with its own programs:

1. the post-deploy smoke check, scripts/smoke_check.py, fails on the crisis path;
2. the recovery does what .github/workflows/recover.yml does: ``pulumi up`` with
   the last good image (here: that render, applied by the applier as the engine
   model plans it), the smoke check again, and a page through the stack's own
   receivers with scripts/notify.py, which reads them from the secret store
   (moto's Secrets Manager beside the stack, as AWS's would be reached by OIDC).

Figures: seconds from the broken release serving to the good one serving again
(the pipeline's own waits, such as the smoke check's --wait 180, add to it on a
real run), failed crisis requests in that window, and the page's arrival.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from components.configs.nginx import RESOLVER_VALID_S
from tests.real.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.rehearsal.scenarios.load import Load
from tests.rehearsal.scenarios.probe import rerender
from tests.rehearsal.scenarios.up import smoke_check, through_edge
from tests.rehearsal.session import Rehearsal
from tests.rehearsal.world import HOOKS_HOST
from tests.support.tools import REPO

__all__ = ["BROKEN_IMAGE", "deploy_app", "run"]

BROKEN_IMAGE = "ghcr.io/luna-app/luna-web:1.2.1-crisis-broken"
CRISIS_PATH = "/api/crisis/health"
# demo-app/server.js's crisis branch; the broken release answers it with a 500 (a
# handler bug), while its health path stays 200. (Moving the path would not do:
# the demo answers any other path with 200.)
CRISIS_LINE = "  } else if (path === CRISIS_PATH) {\n"


def _broken_release(r: Rehearsal, base: str) -> None:
    """``BROKEN_IMAGE``: ``base`` whose crisis path answers 500."""
    cid = r.docker("create", base).strip()
    try:
        workdir = r.docker("inspect", "-f", "{{.Config.WorkingDir}}", base).strip() or "/app"
        server = r.root / "server-crisis-broken.js"
        r.docker("cp", f"{cid}:{workdir}/server.js", str(server))
        text = server.read_text()
        assert CRISIS_LINE in text, f"demo-app/server.js no longer has {CRISIS_LINE!r}"
        server.write_text(text.replace(CRISIS_LINE, CRISIS_LINE + "    status = 500;\n", 1))
        r.docker("cp", str(server), f"{cid}:{workdir}/server.js")
        r.docker("commit", "--change", f"LABEL org.luna.rehearsal.release={BROKEN_IMAGE}", cid,
                 BROKEN_IMAGE)  # fmt: skip
    finally:
        r.docker("rm", "-f", cid, check=False)


def deploy_app(r: Rehearsal, image: str) -> None:
    """``pulumi up`` with ``appImage`` set to ``image``, as the engine model plans it."""
    r.applier.up(rerender(r, overrides=(("appImage", image),), images=(image,)).resources)


def _page(r: Rehearsal, summary: str) -> tuple[bool, str]:
    """scripts/notify.py --event rollback, its receivers read from the secret store."""
    import boto3  # type: ignore[import-untyped]  # the test's own client

    endpoint = r.world.s3.plain
    store = boto3.client(
        "secretsmanager", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    )  # fmt: skip
    for key, path in (("alertWebhookUrl", "pager"), ("chatWebhookUrl", "chat")):
        name = f"luna/{r.stack}/{key}"  # scripts/stack_secrets.py store_id
        try:
            store.create_secret(Name=name, SecretString=f"{r.world.hook_url}/{path}")
        except store.exceptions.ResourceExistsException:
            store.put_secret_value(SecretId=name, SecretString=f"{r.world.hook_url}/{path}")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        # The receivers' certificate is issued by the rehearsal's CA.
        "SSL_CERT_FILE": str(r.world.ca),
    }
    t0 = time.monotonic()
    notify = str(Path(REPO) / "scripts" / "notify.py")
    proc = through_edge(
        r, [sys.executable, notify, "--stack", r.stack, "--event", "rollback", "--summary",
            summary], hosts=(f"{r.world.address} {HOOKS_HOST}",), env=env,
    )  # fmt: skip
    pages = [p for p in r.world.receiver.since(t0) if p[1].endswith("/pager")]
    detail = f"notify exit {proc.returncode}; {len(pages)} page(s) at the pager receiver"
    if proc.returncode != 0:
        detail += f": {(proc.stdout + proc.stderr)[-300:]}"
    return proc.returncode == 0 and bool(pages), detail


def run(r: Rehearsal, good: str) -> tuple[bool, str, str]:
    """(ok, figure, detail) of the broken release, its detection and the rollback to
    ``good`` (the image serving now)."""
    _broken_release(r, good)
    problems: list[str] = []
    with Load(r, threads=2, path=CRISIS_PATH) as load:
        time.sleep(2)
        before_ok, before_failed = load.ok, sum(load.failures.values())
        deploy_app(r, BROKEN_IMAGE)
        broken_at = time.monotonic()
        check = smoke_check(r)
        if check.returncode == 0:
            problems.append("the smoke check passed on a release without the crisis path")
        deploy_app(r, good)
        # As in the pipeline, the check starts after the up step: a request in the
        # first seconds after the broken replicas went may still meet one of their
        # addresses in nginx's resolver cache and wait one connect timeout (a stall
        # the deploy scenario reports), which the crisis check's 5-sample p95 reads
        # as the crisis path being slow (CI, 2026-12-07: p95 2005 ms).
        time.sleep(RESOLVER_VALID_S + 1)
        again = smoke_check(r)
        back_at = time.monotonic()
        if again.returncode != 0:
            problems.append(f"the smoke check failed after the rollback:\n{again.stdout[-800:]}")
        failed = sum(load.failures.values()) - before_failed
        served = load.ok - before_ok
    paged, page_detail = _page(r, f"post-deploy checks failed on {BROKEN_IMAGE}; rolled back")
    if not paged:
        problems.append(page_detail)
    seconds = back_at - broken_at
    figure = (f"rollback {seconds:.0f} s after the broken release served; "
              f"{failed} of {failed + served} crisis requests failed meanwhile")  # fmt: skip
    detail = "\n".join([
        *problems, page_detail, f"smoke on the broken release: exit {check.returncode}",
        f"crisis failures: {dict(load.failures)}",
    ])  # fmt: skip
    return not problems, figure, detail

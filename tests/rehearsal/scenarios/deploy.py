"""f. Deploy under load: an app image bump, a bad image, ``up`` again, a rollback.

Client threads send requests through the edge (TLS, the stack's name) without
pause while the applier carries out the engine model's steps for each change:

1. ``appImage`` bumped to a new tag: every replica replaced create-before-delete;
2. ``appImage`` set to an image whose server never starts (its health check never
   passes): the create fails on ``wait`` and the engine stops; the old replicas
   must keep serving;
3. ``up`` again with the same bad image;
4. rollback: ``appImage`` back to the bumped, good tag.

Every request must succeed: 0 failures out of at least :data:`MIN_REQUESTS`.
The new tags are made on the private daemon from the stack's app image
(``docker commit`` with a release label, so each has its own image ID; the bad
one's server file exits at once).
"""

from __future__ import annotations

import time

from tests.engine.scenarios import APP_IMAGE_NEXT as MODEL_NEXT
from tests.rehearsal.applier import StepError
from tests.rehearsal.outcome import Outcome
from tests.rehearsal.scenarios import autorollback
from tests.rehearsal.scenarios.load import Load
from tests.rehearsal.scenarios.probe import release
from tests.rehearsal.session import Rehearsal

__all__ = ["MIN_REQUESTS", "run"]

MIN_REQUESTS = 2000
BAD_IMAGE = "ghcr.io/luna-app/luna-web:1.2.0-bad"
# The engine model's next tag without its made-up digest: a tag made on this daemon.
APP_IMAGE_NEXT = MODEL_NEXT.split("@")[0]


def _tag_images(r: Rehearsal, current: str) -> None:
    release(r, current, APP_IMAGE_NEXT)
    cid = r.docker("create", current).strip()
    try:
        workdir = r.docker("inspect", "-f", "{{.Config.WorkingDir}}", current).strip() or "/app"
        empty = r.root / "empty.js"
        empty.write_text("// a release whose server never starts\nprocess.exit(1);\n")
        r.docker("cp", str(empty), f"{cid}:{workdir}/server.js")
        r.docker("commit", cid, BAD_IMAGE)
    finally:
        r.docker("rm", "-f", cid, check=False)


def run(r: Rehearsal) -> Outcome:
    current = str(r.render.output("app_image") or "")
    _tag_images(r, current)
    phases: list[str] = []
    with Load(r) as load:
        time.sleep(3)
        for label, image, must_fail in (("bump", APP_IMAGE_NEXT, False),
                                        ("bad image", BAD_IMAGE, True),
                                        ("up again", BAD_IMAGE, True),
                                        ("rollback", APP_IMAGE_NEXT, False)):  # fmt: skip
            before = load.total, sum(load.failures.values())
            start = time.monotonic()
            try:
                autorollback.deploy_app(r, image)
                result = "applied"
            except StepError as error:
                result = f"failed: {str(error).splitlines()[0][:160]}"
            if (result == "applied") == must_fail:
                phases.append(f"{label}: unexpectedly {result}")
            failed = sum(load.failures.values()) - before[1]
            phases.append(f"{label} ({time.monotonic() - start:.0f} s): {result}; "
                          f"{load.total - before[0]} requests, {failed} failed")  # fmt: skip
            time.sleep(2)
        while load.total < MIN_REQUESTS:
            time.sleep(0.5)
    failures = sum(load.failures.values())
    ok = (
        failures == 0
        and load.total >= MIN_REQUESTS
        and not any("unexpectedly" in p for p in phases)
    )
    figure = (f"{load.total} requests, {failures} failed, longest stall "
              f"{load.longest_stall:.1f} s")  # fmt: skip
    detail = "\n".join([*phases, f"failures: {dict(load.failures)}"])
    if ok:
        # The pipeline's automatic rollback, from the good release now serving.
        rolled, rollback_figure, rollback_detail = autorollback.run(r, APP_IMAGE_NEXT)
        ok, figure = rolled, f"{figure}; {rollback_figure}"
        detail += "\nautomatic rollback: " + rollback_detail
    return Outcome("deploy", ok, figure, detail)

"""Which jobs a run starts, replayed through the model of GitHub Actions in
tests/pipeline/actions_model.py (expressions, needs, concurrency, each cited).

Shown here: pull requests never reach production credentials and say so;
Dependabot and fork pull requests get a green "skipped" status, never a red
preview; develop and main never cancel each other's deploys; a run waiting for
approval blocks no rollback; a failed post-deploy check rolls back and pages.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.actions_model import ConcurrencyGroups, Run, evaluate, interpolate, simulate
from tests.support.tools import REPO
from tests.support.workflows import load_workflow as load

PROD_ENVIRONMENTS = {"production", "preview-production", "production-approval"}
GOOD = "ghcr.io/luna-app/luna-web:1.4.1@sha256:" + "1" * 64
NEW = "ghcr.io/luna-app/luna-web:1.4.2@sha256:" + "2" * 64


def github(event: str, ref: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": event,
        "ref": ref,
        "ref_name": ref.rsplit("/", 1)[-1],
        "repository": "luna-app/luna-infra",
        "run_id": extra.pop("run_id", "100"),
        "event": {},
    }
    if event == "pull_request":
        base["event"]["pull_request"] = {
            "number": 7,
            "head": {"repo": {"full_name": extra.pop("head_repo", "luna-app/luna-infra")}},
            "user": {"login": extra.pop("author", "alice")},
        }
    base.update(extra)
    return base


def resolve_outputs(event: str, ref: str) -> dict[str, str]:
    """The resolve job's real target step, run as the runner runs it."""
    script = load("pipeline.yml")["jobs"]["resolve"]["steps"]
    step = next(s for s in script if s.get("id") == "targets")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"resolve-{os.getpid()}-{event}"
    out.write_text("")
    subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        check=True,
        capture_output=True,
        env={
            "PATH": os.environ["PATH"],
            "GITHUB_OUTPUT": str(out),
            "GITHUB_STEP_SUMMARY": os.devnull,
            "EVENT": event,
            "REF": ref,
        },
    )
    pairs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    out.unlink()
    return pairs


def outcomes(
    event: str, ref: str, failing: frozenset[str] | set[str] = frozenset(), image: str = NEW
) -> Callable[[str], tuple[str, dict[str, str]]]:
    targets = resolve_outputs(event, ref)

    def outcome(job: str) -> tuple[str, dict[str, str]]:
        if job == "resolve":
            return "success", {**targets, "image": ""}
        outputs = {"attempted": "true", "image": image, "app_url": "https://x.invalid"}
        return ("failure" if job in failing else "success"), outputs

    return outcome


def environment_of(job: dict[str, Any]) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


def prod_jobs(run: Run, wf: dict[str, Any]) -> set[str]:
    out = set()
    for name in run.results:
        j = wf["jobs"][name]
        if not run.ran(name):
            continue
        env = environment_of(j)
        called = j.get("with", {}).get("environment")
        if env in PROD_ENVIRONMENTS or called in PROD_ENVIRONMENTS:
            out.add(name)
    return out


# ------------------------------------------------------------- pull requests
@pytest.mark.parametrize(
    ("author", "head_repo", "preview", "skipped"),
    [
        ("alice", "luna-app/luna-infra", True, False),
        ("dependabot[bot]", "luna-app/luna-infra", False, True),
        ("mallory", "mallory/luna-infra", False, True),
    ],
)
def test_pull_requests_never_reach_production_credentials(
    author: str, head_repo: str, preview: bool, skipped: bool
) -> None:
    wf = load("pipeline.yml")
    gh = github("pull_request", "refs/pull/7/merge", author=author, head_repo=head_repo)
    run = simulate(wf, gh, outcomes("pull_request", "refs/pull/7/merge"))
    assert prod_jobs(run, wf) == set(), f"a pull request by {author} reached {prod_jobs(run, wf)}"
    assert run.ran("preview") is preview, f"preview for {author}: {run.results['preview']}"
    # The skipped case is a job that succeeds (a green check with its reason), never red.
    assert run.ran("preview-skipped") is skipped
    assert not any(
        run.ran(j)
        for j in ("deploy-staging", "deploy-production", "record-image", "publish-images")
    ), "a pull request published, deployed or recorded something"


def test_the_pull_request_preview_uses_staging_only() -> None:
    preview = load("pipeline.yml")["jobs"]["preview"]
    assert preview["environment"] == "preview-staging"
    assert "strategy" not in preview, "no matrix may bring the prod stack back to pull requests"
    text = "\n".join(str(s.get("run", "")) for s in preview["steps"])
    assert "No production credential was available" in text.replace('\n            echo "', " ")


def test_production_is_previewed_on_main_before_the_gate() -> None:
    wf = load("pipeline.yml")
    run = simulate(wf, github("push", "refs/heads/main"), outcomes("push", "refs/heads/main"))
    for job in ("preview-production", "approve-production", "deploy-production", "record-image"):
        assert run.ran(job), f"push to main did not run {job}"
    gate = wf["jobs"]["approve-production"]
    assert "preview-production" in gate["needs"], "reviewers must see this run's preview first"
    # The preview is kept for the reviewers and quoted by the deploy record.
    steps = wf["jobs"]["preview-production"]["steps"]
    upload = next(s for s in steps if "upload-artifact" in str(s.get("uses", "")))
    assert upload["with"]["name"] == "preview-prod"
    preview_sh = (REPO / ".github" / "scripts" / "preview.sh").read_text()
    assert "GITHUB_STEP_SUMMARY" in preview_sh and "--refresh" in preview_sh


def test_prod_environments_run_only_for_main() -> None:
    wf = load("pipeline.yml")
    for event, ref in (("push", "refs/heads/develop"), ("workflow_dispatch", "refs/heads/develop")):
        run = simulate(wf, github(event, ref), outcomes(event, ref, failing={"deploy-staging"}))
        assert prod_jobs(run, wf) == set(), f"{event} on {ref} reached {prod_jobs(run, wf)}"


# ---------------------------------------------------------------- concurrency
def _group(spec: dict[str, Any], gh: dict[str, Any]) -> tuple[str, bool]:
    context = {"github": gh}
    group = interpolate(str(spec["group"]), context)
    cancel = spec.get("cancel-in-progress", False)
    cancel = evaluate(cancel, context) if isinstance(cancel, str) else cancel
    return group, bool(cancel)


def test_develop_and_main_never_cancel_each_others_deploys() -> None:
    wf = load("pipeline.yml")
    groups = ConcurrencyGroups()
    job = wf["jobs"]["deploy-staging"]["concurrency"]
    # A main run deploying staging, a develop push queued behind, then another develop push.
    arrivals = [
        ("main#1", github("push", "refs/heads/main", run_id="1")),
        ("develop#2", github("push", "refs/heads/develop", run_id="2")),
        ("develop#3", github("push", "refs/heads/develop", run_id="3")),
        ("main#4", github("push", "refs/heads/main", run_id="4")),
    ]
    for who, gh in arrivals:
        group, cancel = _group(job, gh)
        groups.arrive(group, who, cancel_in_progress=cancel)
        _, wf_cancel = _group(wf["concurrency"], gh)
        assert not wf_cancel, "a branch run must never cancel another"
    cancelled_branches = {who.split("#")[0] for who in groups.cancelled}
    # Within a branch the newest push supersedes a pending one (it contains it);
    # across branches nothing is ever cancelled.
    assert all(any(w.startswith(b) for w in groups.running.values()) for b in cancelled_branches), (
        groups
    )
    assert "main#1" in groups.running.values() and "develop#2" in groups.running.values()


def test_the_old_shared_staging_group_would_drop_a_release() -> None:
    # The model reproduces issue #25's failure with the group the pipeline had:
    # a develop push replaces main's pending staging deploy, and prod never runs.
    groups = ConcurrencyGroups()
    for who in ("develop#1", "main#2", "develop#3"):
        groups.arrive("deploy-staging", who)
    assert "main#2" in groups.cancelled


def test_a_run_waiting_for_approval_blocks_no_rollback() -> None:
    wf = load("pipeline.yml")
    groups = ConcurrencyGroups()
    # Run A waits at approve-production: it holds its run-level group only (the
    # gate job has no group, and deploy-production has not started).
    a = github("push", "refs/heads/main", run_id="10")
    groups.arrive(*_group(wf["concurrency"], a)[:1], "run A")
    assert "concurrency" not in wf["jobs"]["approve-production"]
    # Run B is a later main run whose production checks failed; its recovery
    # starts, and so does a manual rollback dispatch (run C).
    b = github("push", "refs/heads/main", run_id="11")
    c = github("workflow_dispatch", "refs/heads/main", run_id="12")
    assert groups.arrive(_group(wf["concurrency"], b)[0], "run B") == "running"
    assert groups.arrive(_group(wf["concurrency"], c)[0], "run C") == "running"
    recover = wf["jobs"]["recover-production"]["concurrency"]
    assert groups.arrive(_group(recover, b)[0], "B recover") == "running"
    assert groups.cancelled == [], groups.cancelled
    # A later deploy queued behind production cannot replace the recovery either.
    deploy = wf["jobs"]["deploy-production"]["concurrency"]
    groups.arrive(_group(deploy, c)[0], "C deploy")
    groups.arrive(_group(deploy, a)[0], "A deploy")
    assert "B recover" in groups.running.values() and groups.running != {}
    assert _group(recover, b)[0] != _group(deploy, b)[0]


def test_pull_request_runs_supersede_their_own_older_run_only() -> None:
    wf = load("pipeline.yml")
    pr = github("pull_request", "refs/pull/7/merge")
    group, cancel = _group(wf["concurrency"], pr)
    assert group == "pipeline-pr-7" and cancel is True
    push = github("push", "refs/heads/main", run_id="99")
    assert _group(wf["concurrency"], push) == ("pipeline-run-99", False)


# ----------------------------------------------------------- automatic rollback
@pytest.mark.parametrize(
    ("failing", "rollback"),
    [
        ({"deploy-production"}, True),  # smoke checks in the deploy job
        ({"crisis-validation"}, True),
        ({"audit-production"}, True),
        ({"compliance"}, False),  # pages, fixed forward
        (set(), None),  # nothing failed: no recovery, the image is recorded
    ],
)
def test_a_failed_post_deploy_check_rolls_back_and_pages(
    failing: set[str], rollback: bool | None
) -> None:
    wf = load("pipeline.yml")
    gh = github("push", "refs/heads/main")
    run = simulate(wf, gh, outcomes("push", "refs/heads/main", failing=failing))
    if rollback is None:
        assert not run.ran("recover-production") and run.ran("record-image")
        return
    assert run.ran("recover-production"), run.results
    call = wf["jobs"]["recover-production"]
    needs = {
        d: {"result": run.results[d], "outputs": run.outputs.get(d, {})} for d in call["needs"]
    }
    inputs = {
        k: interpolate(str(v), {"needs": needs, "github": gh}) for k, v in call["with"].items()
    }
    assert inputs["rollback"] == str(rollback).lower(), inputs
    assert inputs["failed_image"] == NEW and inputs["environment"] == "production"
    assert run.ran("record-production"), "the failed deploy must be recorded too"


def _good_step(failed: str, rollback: str, committed: str, tmp_path: Path) -> dict[str, str]:
    """recover.yml's decision step, run as the runner runs it, on a checkout whose
    Pulumi.prod.yaml names ``committed``."""
    step = next(s for s in load("recover.yml")["jobs"]["recover"]["steps"] if s.get("id") == "good")
    repo = tmp_path / "repo"
    (repo / "scripts" / "lib").mkdir(parents=True, exist_ok=True)
    for f in ("scripts/record_image.py", "scripts/lib/cli.py", "scripts/lib/__init__.py"):
        (repo / f).write_text((REPO / f).read_text())
    (repo / "Pulumi.prod.yaml").write_text(f"config:\n  luna:appImage: {committed}\n")
    out = tmp_path / "out"
    out.write_text("")
    subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=repo,
        check=True,
        capture_output=True,
        env={
            "PATH": os.environ["PATH"],
            "GITHUB_OUTPUT": str(out),
            "GITHUB_STEP_SUMMARY": os.devnull,
            "STACK": "prod",
            "FAILED_IMAGE": failed,
            "ROLLBACK": rollback,
        },
    )
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def test_recovery_redeploys_the_last_good_image(tmp_path: Path) -> None:
    decided = _good_step(NEW, "true", GOOD, tmp_path)
    assert decided == {"image": GOOD, "rollback": "true"}
    steps = load("recover.yml")["jobs"]["recover"]["steps"]
    up = next(s for s in steps if s.get("id") == "deploy")
    assert up["run"] == ".github/scripts/deploy.sh"
    assert up["env"]["IMAGE"] == "${{ steps.good.outputs.image }}"
    names = [s.get("id") or s.get("name") for s in steps]
    page = next(s for s in steps if "notify.py" in str(s.get("run", "")))
    assert page["if"] == "${{ always() }}", "the page must go out whatever the rollback did"
    assert names.index("deploy") < names.index("smoke") < steps.index(page)


def test_recovery_does_not_redeploy_the_image_that_failed(tmp_path: Path) -> None:
    # A push that redeployed the committed image itself: nothing older is known, so page only.
    assert _good_step(GOOD, "true", GOOD, tmp_path)["rollback"] == "false"
    assert _good_step(NEW, "false", GOOD, tmp_path)["rollback"] == "false"

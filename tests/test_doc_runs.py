"""The docs' kubectl, helm, curl, jq and openssl commands, run as written.

Each test takes its commands from the ledger (tests/support/doc_ledger.py), so the
docs' text is the input: a command edited in the docs is the command run here.
Only placeholders are substituted (``<stack>``). What stands in for a deployed
system is named in each test and in its module.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.doc_ledger import Command, doc_commands, verdict
from tests.support.tools import REPO, need
from tests.test_dev_shell import sandbox  # noqa: F401 - the fixture


def _by(runner: str) -> list[Command]:
    found = [c for c in doc_commands() if (v := verdict(c)) is not None and v[0] == runner]
    assert found, f"the ledger lists no {runner} commands: the docs or the ledger changed"
    return found


def _kubectl_env(tmp: Path, url: str) -> dict[str, str]:
    from tests.support.kube_api import kubeconfig

    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    plugin = bin_dir / "kubectl-cnpg"  # kubectl runs `kubectl cnpg ...` as this program
    plugin.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.support.kube_api cnpg "$@"\n')
    plugin.chmod(0o755)
    (tmp / "kubeconfig").write_text(kubeconfig(url))
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp), "PYTHONPATH": str(REPO),
            "KUBECONFIG": str(tmp / "kubeconfig"), "LUNA_KUBE_API": url}  # fmt: skip


def _run(cmd: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


# What each documented kubectl command must show about the rendered stack.
_EXPECT = {"get cluster database": "database", "get pods -l": "database-2",
           "status database": "Cluster Summary", "promote database": "database-2"}  # fmt: skip


@pytest.mark.slow  # real kubectl, a render per stack
@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_kubectl_commands_run_against_the_render(stack: str, tmp_path: Path) -> None:
    """Real kubectl (it parses every flag and resource name) against a stand-in API
    serving the stack's rendered manifests (tests/support/kube_api.py)."""
    from tests.real.support import render_stack
    from tests.support.kube_api import load_objects, serve

    need("kubectl")
    objects = load_objects(render_stack(stack, platform="kubernetes").rendered.manifests())
    with serve(objects) as url:
        env = _kubectl_env(tmp_path, url)
        ran = []
        for c in _by("kubectl"):
            cmd = c.text.replace("<stack>", stack)
            proc = _run(cmd, env, tmp_path)
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, f"{c.doc}: `{cmd}` exited {proc.returncode}: {out}"
            want = next((w for k, w in _EXPECT.items() if k in cmd), None)
            assert want is not None, f"{c.doc}: `{cmd}`: say in _EXPECT what it must show"
            assert want in proc.stdout, f"{c.doc}: `{cmd}` shows no {want!r}:\n{out}"
            ran.append(cmd)
        # The same rig refuses what the cluster would: a namespace, a flag, an instance.
        for bad in (f"kubectl -n luna-{stack}x get cluster database",
                    f"kubectl -n luna-{stack} get pods --wide",
                    f"kubectl cnpg -n luna-{stack} promote database database-9"):  # fmt: skip
            assert _run(bad, env, tmp_path).returncode != 0, f"the rig accepted `{bad}`"
    print(f"\n{stack}: {len(ran)} kubectl commands ran: {ran}")


def test_helm_commands_parse_against_the_stand_in() -> None:
    from tests.support.helm_cli import check

    for c in _by("helm"):
        error = check(shlex.split(c.text, comments=True)[1:])
        assert error is None, f"{c.doc}: `{c.text}`: {error}"
    good = shlex.split(_by("helm")[0].text, comments=True)[1:]
    assert check([*good, "--wiat"]) is not None, "an unknown flag"
    assert check([a.replace("0.29.0", "0.28.1") for a in good]) is not None, "another version"
    assert check([a for a in good if a != "--install"]) is not None, "no --install"


@pytest.mark.slow  # real curl and a TLS server in a private network namespace
def test_elasticsearch_blocks_run_with_real_curl(tmp_path: Path) -> None:
    """The backup runbook's blocks, by bash with the real curl, against the stand-in
    Elasticsearch (tests/support/es_api.py) that knows the rendered setup script."""
    from tests.real.support import render_stack
    from tests.support.tls import make_ca_signed_pair

    need("curl")
    unshare = need("unshare")
    script = render_stack("prod", platform="kubernetes").file("elasticsearch-setup",
                                                               "/opt/luna/es-setup.sh")  # fmt: skip
    (tmp_path / "setup.sh").write_text(script)
    pair = make_ca_signed_pair(tmp_path, common_name="elasticsearch", alt_names="DNS:localhost")
    password = "elastic-Pa55-" + os.urandom(8).hex()
    (tmp_path / "auth.conf").write_text(f'user = "elastic:{password}"\n')
    blocks = list(dict.fromkeys(c.block for c in _by("curl") if c.block))
    assert len(blocks) == 2, f"expected the check and the restore blocks: {blocks}"
    for i, block in enumerate(blocks):
        (tmp_path / f"block{i}.sh").write_text(block)
        proc = subprocess.run(
            [unshare, "-n", sys.executable, "-m", "tests.support.es_api", "setup.sh",
             str(pair.cert), str(pair.key), password, f"block{i}.sh"],
            cwd=tmp_path, env={"PATH": "/usr/sbin:/usr/bin:/bin", "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        calls = [ln for ln in proc.stderr.splitlines() if " -> " in ln]
        assert proc.returncode == 0, f"block {i} exited {proc.returncode}: {proc.stderr[-800:]}"
        assert calls and all(ln.endswith("-> 200") for ln in calls), (
            f"block {i}: Elasticsearch would refuse: {calls}\n{proc.stdout[-600:]}"
        )
        print(f"\nblock {i}: {calls}")
    # The stand-in refuses what Elasticsearch would: another policy, a missing body type.
    from tests.support.es_api import answer, setup_state

    repos, policies = setup_state(script)
    auth = {"authorization": "Basic " + __import__("base64").b64encode(
        f"elastic:{password}".encode()).decode()}  # fmt: skip
    assert answer("GET", "/_slm/policy/nightly", auth, b"", password=password, repos=repos,
                  policies=policies)[0] == 404  # fmt: skip
    assert answer("GET", "/_slm/policy/luna-audit-daily", {}, b"", password=password,
                  repos=repos, policies=policies)[0] == 401  # fmt: skip


# The diy backend's checkpoint file (pulumi/pulumi sdk/go/common/apitype/core.go:
# VersionedCheckpoint {version, checkpoint: CheckpointV3 {stack, config, latest:
# DeploymentV3}}) and what `pulumi stack import` reads (UntypedDeployment {version,
# deployment}).
_DEPLOYMENT = {"manifest": {"time": "2026-11-25T14:03:00Z", "magic": "x", "version": "v3.204.0"},
               "resources": [{"urn": "urn:pulumi:prod::luna::pulumi:pulumi:Stack::luna-prod",
                              "type": "pulumi:pulumi:Stack", "custom": False}]}  # fmt: skip


def test_state_recovery_jq_turns_a_checkpoint_into_an_export(tmp_path: Path) -> None:
    jq = need("jq")
    (tmp_path / "checkpoint.json").write_text(json.dumps(
        {"version": 3, "checkpoint": {"stack": "organization/luna/prod", "config": {},
                                      "latest": _DEPLOYMENT}}))  # fmt: skip
    for c in _by("jq"):
        proc = _run(c.text, {"PATH": f"{Path(jq).parent}:/usr/bin:/bin"}, tmp_path)
        assert proc.returncode == 0, f"{c.doc}: `{c.text}`: {proc.stderr}"
        export = json.loads((tmp_path / "state.json").read_text())
        assert export == {"version": 3, "deployment": _DEPLOYMENT}, export


def test_the_rotation_value_is_made_by_real_openssl(tmp_path: Path) -> None:
    need("openssl")
    for c in _by("real-shell"):
        proc = _run(f'{c.text}\nprintf %s "$new"', {"PATH": "/usr/bin:/bin"}, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert re.fullmatch(r"[0-9a-f]{48}", proc.stdout), f"`{c.text}` made {proc.stdout!r}"


def test_deploy_dev_blocks_run_with_the_dev_stubs(sandbox: dict[str, Any]) -> None:  # noqa: F811
    """Each doc block's ``./scripts/deploy-dev`` with the block's ``pulumi`` lines before it
    (not its ``./scripts/test``: the test command), by bash in test_dev_shell's sandbox:
    a committed copy, a stub pulumi that models the CLI's files, a docker that answers
    ``info``."""
    blocks = list(dict.fromkeys(c.block for c in _by("dev-script") if c.block))
    for whole in blocks:
        block = "\n".join(c.text for c in doc_commands() if c.block == whole
                          and (v := verdict(c)) and v[0] in ("pulumi", "dev-script"))  # fmt: skip
        log = Path(sandbox["env"]["STUB_PULUMI_LOG"])
        log.unlink(missing_ok=True)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=sandbox["repo"],
                              env=sandbox["env"], capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip
        assert proc.returncode == 0, f"`{block}` exited {proc.returncode}:\n{proc.stderr[-800:]}"
        argvs = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
        assert ["up", "--stack", "dev"] in [a[:3] for a in argvs], f"no up of dev: {argvs}"


@pytest.mark.slow  # pip installs the lock into a fresh venv
def test_break_glass_builds_its_venv_from_the_lock(tmp_path: Path) -> None:
    from tests.support.tools import copy_checkout

    copy = copy_checkout(tmp_path / "repo")
    commands = [c.text for c in _by("venv")]
    assert len(commands) == 3, commands
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    for cmd in commands:
        proc = _run(cmd, env, copy)
        assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}: {proc.stderr[-800:]}"
    check = _run(
        ".venv/bin/python -c 'import pulumi, pulumi_kubernetes, infra.settings'", env, copy
    )
    assert check.returncode == 0, f"the break-glass venv cannot run the program: {check.stderr}"


def test_first_deploy_commits_the_stack_file(tmp_path: Path) -> None:
    """The guide's git line, by real git in a committed copy, once Pulumi.staging.yaml has
    changed as ``pulumi stack init --secrets-provider`` changes it (it writes
    ``secretsprovider:`` and ``encryptedkey:`` into the stack file; pulumi/pulumi
    pkg/cmd/pulumi/stack/secrets.go)."""
    from tests.support.tools import copy_checkout

    git = need("git")
    repo = copy_checkout(tmp_path / "repo")
    env = {"PATH": f"{Path(git).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    for cmd in ("git init -q", "git add -A", "git commit -qm copy"):
        assert _run(cmd, env, repo).returncode == 0, cmd
    stack_file = repo / "Pulumi.staging.yaml"
    stack_file.write_text("secretsprovider: awskms://alias/luna-staging?region=eu-central-1\n"
                          "encryptedkey: AQICAHh0ZXN0\n" + stack_file.read_text())  # fmt: skip
    for c in _by("git"):
        proc = _run(c.text, env, repo)
        assert proc.returncode == 0, f"{c.doc}: `{c.text}`: {proc.stdout}{proc.stderr}"
    status = _run("git status --porcelain", env, repo).stdout
    assert status == "", f"the stack file is not committed: {status}"


@pytest.mark.slow  # a TLS site in a private network and mount namespace per command
def test_smoke_checks_pass_against_the_site_stand_in(tmp_path: Path) -> None:
    """The docs' smoke checks, as written, against the stand-in site at the docs' own
    hosts (tests/support/site_stand_in.py); ``outputs.json`` is the staging render's
    outputs as ``pulumi stack output --json`` prints them (secrets as ``[secret]``)."""
    import shutil

    from infra.mocks import mask
    from tests.real.support import render_stack
    from tests.support.site_stand_in import HOSTS
    from tests.support.tls import make_ca_signed_pair

    unshare = need("unshare")
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    names = ",".join(f"DNS:{h}" for h in HOSTS)
    pair = make_ca_signed_pair(tmp_path, common_name=HOSTS[0], alt_names=names)
    shutil.copy(pair.ca, tmp_path / "staging-ca.pem")
    (tmp_path / "hosts").write_text(f"127.0.0.1 localhost {' '.join(HOSTS)}\n")
    outputs = mask(render_stack("staging", platform="kubernetes").rendered.outputs)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "SSL_CERT_FILE": str(pair.ca),
    }  # an operator's trust store holds the site's CA
    for c in _by("site"):
        proc = subprocess.run(
            [unshare, "-n", "-m", sys.executable, "-m", "tests.support.site_stand_in",
             str(tmp_path / "hosts"), str(pair.cert), str(pair.key), "--", c.text],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{c.doc}: `{c.text}` exited {proc.returncode}:\n{out}"
        assert "FAIL" not in proc.stdout and "PASS" in proc.stdout, f"{c.doc}: {out}"
        print(f"\n{c.doc}: {c.text}\n{proc.stdout[-700:]}")


def test_the_docs_kubernetes_yaml_validates_against_the_pinned_schema() -> None:
    """A ```yaml block with ``apiVersion`` and ``kind`` is what an operator pipes into
    ``kubectl apply -f -``: kubernetes-validate --strict checks it (with CloudNativePG's
    CRD schemas in tests/kubernetes/test_cnpg.py for its kinds)."""
    import yaml
    from kubernetes_validate import utils as kv

    from tests.kubernetes.conftest import KUBERNETES_VERSION
    from tests.support.doc_ledger import DOCS

    checked = []
    for path in DOCS:
        for body in re.findall(r"```ya?ml\n(.*?)```", path.read_text(), re.S):
            for obj in yaml.safe_load_all(body):
                if not (isinstance(obj, dict) and "apiVersion" in obj and "kind" in obj):
                    continue
                assert not str(obj["apiVersion"]).endswith("cnpg.io/v1"), "add its CRD check"
                try:
                    kv.validate(obj, KUBERNETES_VERSION, strict=True)
                except kv.ValidationError as error:
                    pytest.fail(f"{path.name}: {obj['kind']}: {error.caught.message}")
                checked.append(f"{path.name}: {obj['kind']} {obj['metadata']['name']}")
    assert checked, "no Kubernetes YAML in the docs: drop this test or the ledger changed"
    rules = [{"verbs": ["get"], "resourcez": ["*"]}]  # a misspelt field: strict refuses it
    bad = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": "x"}, "rules": rules}  # fmt: skip
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.slow  # moto's S3 server (tests/real/s3.py)
def test_break_glass_records_the_deploy_write_once(tmp_path: Path) -> None:
    """The break-glass record, as an operator runs it from a workstation (no ``GITHUB_*``
    variables), into moto's S3 with Object Lock; ``$IMAGE`` is what the block before it
    exports, with a digest in place of its ``…``."""
    import shutil

    from tests.real.s3 import ACCESS_KEY, REGION, SECRET_KEY, local_s3

    (command,) = [c.text for c in _by("s3")]
    command = command.replace("<UTC time the change began>", "2026-12-07T01:00:00Z")
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    image = "ghcr.io/luna-app/luna-web:1.4.1@sha256:" + "3f" * 32
    with local_s3(tmp_path, buckets=()) as s3:
        client = s3.client()
        client.create_bucket(Bucket="luna-deploy-records", ObjectLockEnabledForBucket=True)
        client.put_object_lock_configuration(Bucket="luna-deploy-records",
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})  # fmt: skip
        env = {"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", "IMAGE": image,
               "AWS_ENDPOINT_URL": s3.plain, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}  # fmt: skip
        proc = _run(command, env, tmp_path)
        assert proc.returncode == 0, f"`{command}`: {proc.stdout}{proc.stderr}"
        (key,) = s3.keys("luna-deploy-records")
        record = json.loads(client.get_object(Bucket="luna-deploy-records", Key=key)["Body"].read())
        head = client.head_object(Bucket="luna-deploy-records", Key=key)
    assert record["image"] == image and record["checks"] == {"smoke": "success"}, record
    assert record["started_at"] == "2026-12-07T01:00:00Z", record
    assert head["ObjectLockMode"] == "COMPLIANCE", head


_WORKLOAD = re.compile(
    r"""workloads --stack <stack> --json \| jq -r '\.(?:(\w+)|\["([\w-]+)"\])\["""
)


@pytest.mark.slow  # a render per platform
def test_the_workloads_the_docs_read_are_in_the_stack_output() -> None:
    """Every ``pulumi stack output workloads ... | jq -r '.<service>[...]'`` names a
    service the output has on the platform of the program it is handed to (docker or
    kubectl)."""
    from infra.mocks import unwrap
    from tests.real.support import render_stack
    from tests.support.doc_ledger import DOCS

    names = {p: unwrap(render_stack("staging", platform=p).rendered.outputs["workloads"])
             for p in ("docker", "kubernetes")}  # fmt: skip
    seen, missing = 0, []
    for path in DOCS:
        for line in path.read_text().replace("\\\n", " ").splitlines():
            for m in _WORKLOAD.finditer(line):
                service = m.group(1) or m.group(2)
                before = line[: m.start()]  # the program the name is handed to
                platform = (
                    "kubernetes" if before.rfind("kubectl ") > before.rfind("docker ") else "docker"
                )
                seen += 1
                if not names[platform].get(service):
                    missing.append(f"{path.name}: {service} on {platform}")
    assert seen >= 8, f"expected the runbooks' workload look-ups, found {seen}"
    assert not missing, f"the workloads output has no such service: {missing}"

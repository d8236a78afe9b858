"""dev out of the box: the demo app is built on the Docker host and run; what would
break dev's URL or ship the demo beyond dev is refused with one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from components.demo_app import DEMO_APP_DIR, demo_image_ref
from infra.mocks import unwrap
from infra.render import main
from tests.conftest import rendered
from tests.support.tools import REPO

IMAGE = "docker:index/image:Image"
REMOTE = "docker:index/remoteImage:RemoteImage"
CONTAINER = "docker:index/container:Container"


def test_dev_builds_the_demo_app_and_runs_it() -> None:
    r = rendered("dev", "docker")
    records = list(r.monitor.records.values())
    builds = [x for x in records if x.type == IMAGE]
    assert len(builds) == 1, f"dev must build one image, found {[b.name for b in builds]}"
    build = builds[0]
    inputs = unwrap(build.inputs)
    ref = demo_image_ref()
    assert inputs["imageName"] == ref and inputs["skipPush"] is True, inputs
    assert Path(inputs["build"]["context"]).resolve() == DEMO_APP_DIR, inputs["build"]
    assert not Path(inputs["build"]["context"]).is_absolute(), "state must not hold a local path"
    remote = next(x for x in records if x.type == REMOTE and unwrap(x.inputs)["name"] == ref)
    assert build.urn in remote.dependencies, f"{remote.name} must wait for {build.name}"
    images = {unwrap(x.inputs)["name"]: x for x in records if x.type == REMOTE}
    for container in (x for x in records if x.type == CONTAINER):
        assert unwrap(container.inputs)["image"] == unwrap(images[ref].outputs)["imageId"], (
            f"{container.name} does not run the demo image"
        )
    assert r.outputs["app_image"] == ref


def test_demo_tag_follows_the_build_context(tmp_path: Path) -> None:
    copy = tmp_path / "demo-app"
    shutil.copytree(DEMO_APP_DIR, copy, ignore=shutil.ignore_patterns("node_modules"))
    assert demo_image_ref(copy) == demo_image_ref(), "same files, same tag (no diff on day 2)"
    (copy / "node_modules").mkdir()
    (copy / "node_modules" / "x.js").write_text("installed locally")
    assert demo_image_ref(copy) == demo_image_ref(), "node_modules is not part of the image"
    (copy / "server.js").write_text((copy / "server.js").read_text() + "\n// changed\n")
    assert demo_image_ref(copy) != demo_image_ref(), "a changed file must be a new tag"
    assert not demo_image_ref().endswith(":latest")


def test_staging_and_prod_run_their_pinned_image() -> None:
    for stack in ("staging", "prod"):
        r = rendered(stack, "docker")
        assert not [x for x in r.monitor.records.values() if x.type == IMAGE], stack
        assert r.outputs["app_image"].startswith("ghcr.io/luna-app/luna-web:"), r.outputs


@pytest.mark.parametrize(
    ("stack", "config", "expected"),
    [
        ("staging", ["demoApp=true"], "false in staging"),
        ("prod", ["demoApp=true"], "false in prod"),
        ("dev", ["platform=kubernetes"], "false on kubernetes"),
        ("dev", ["proxy=true"], "false in dev"),
    ],
)
def test_refused_with_one_line(
    stack: str,
    config: list[str],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--stack", stack, "--out", str(tmp_path / "out")]
    for item in config:
        args += ["--config", item]
    assert main(args) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], errors
    assert not (tmp_path / "out").exists(), "nothing is written for a refused configuration"


def test_dev_config_is_committed_and_copied_per_developer(tmp_path: Path) -> None:
    from infra.render import DEV_PERSONAL, DEV_TEMPLATE, load_stack_config, stack_config_file

    assert DEV_TEMPLATE == "Pulumi.dev.yaml", "the design card lists Pulumi.dev.yaml"
    for name in ("Pulumi.yaml", DEV_TEMPLATE):
        shutil.copy(REPO / name, tmp_path / name)
    assert stack_config_file("dev", tmp_path, personal=True).name == DEV_TEMPLATE
    own_file = tmp_path / DEV_PERSONAL
    own_file.parent.mkdir(parents=True)
    own_file.write_text(
        "encryptionsalt: v1:abc\nconfig:\n  luna:cache: 'true'\n  luna:database: sqlite\n"
    )
    own, _ = load_stack_config("dev", root=tmp_path, personal=True)
    assert own["luna:cache"] == "true", "the CLI render reads your own dev config"
    shared, _ = load_stack_config("dev", root=tmp_path)
    assert shared["luna:cache"] == "false", "tests and docs read the committed file"
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "Pulumi.dev.yaml"], cwd=REPO,
        capture_output=True, check=False,
    )  # fmt: skip
    assert tracked.returncode == 0, "Pulumi.dev.yaml is committed at the top level"
    ignored = subprocess.run(["git", "check-ignore", "-q", DEV_PERSONAL], cwd=REPO, check=False)
    assert ignored.returncode == 0, f"{DEV_PERSONAL} (your salt and settings) must be ignored"
    committed = (REPO / "Pulumi.dev.yaml").read_text()
    assert "encryptionsalt" not in committed and "secure:" not in committed, (
        "the committed dev config must hold no one's salt or ciphertext"
    )


def test_plain_stack_init_and_up_works_with_the_committed_dev_config() -> None:
    # `pulumi stack init dev && pulumi up` reads Pulumi.yaml's defaults and the
    # committed Pulumi.dev.yaml: the program must accept exactly that.
    from infra.render import render

    rendered = render("dev", personal=False, placeholders=False)
    assert rendered.monitor.records, "the dev render created nothing"

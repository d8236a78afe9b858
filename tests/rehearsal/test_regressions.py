"""The defect patches of tests/rehearsal/regressions/ still apply to this tree.

Each patch re-introduces a defect (issue #20's five, then issue #22's), so that
its rehearsal scenario can be shown failing on it (the folder's README has the
command and the figures). Code and runbooks move; a patch that no longer applies would rot
silently. This test copies the files each patch touches into a scratch folder,
applies the patch there with ``git apply`` and checks that the defect's own text
is in the result and not in the current tree (the fix is still in place).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rehearsal.scenarios import NAMES
from tests.support.tools import REPO, need

FOLDER = REPO / "tests" / "rehearsal" / "regressions"


@dataclass(frozen=True)
class Regression:
    patch: str
    scenario: str
    file: str
    defect: str
    """Text the patched ``file`` holds, and the fixed one does not."""


REGRESSIONS = (
    Regression("1-backup-loop-under-postmaster.patch", "backups",
               "components/platforms/docker/postgres.py", "--post-file=/dev/stdin"),
    Regression("2-drill-without-pgaudit.patch", "drill",
               "components/configs/pgbackrest.py", "-c shared_preload_libraries=''\""),
    Regression("3-pitr-volumes-from.patch", "runbooks",
               "docs/runbooks/backup-restore.md", "--volumes-from <db> --env-file"),
    Regression("4-rotation-role-luna.patch", "runbooks",
               "docs/runbooks/rotation.md", "psql -U luna`"),
    Regression("5-nginx-error-log-phi.patch", "phi",
               "components/configs/nginx.py", 'ERROR_LOG = "error_log /dev/stderr warn;"'),
    # Issue #22: the cache replaced create-before-delete, two answering to `cache` at once.
    Regression("6-cache-replaced-beside-itself.patch", "rotations",
               "components/platforms/docker/rollout.py", 'spec.workload == "stateful"\n'),
    # The backup and drill loops stopped on the postgres image's SIGINT: SIGKILL after 15 s.
    Regression("7-sidecars-stop-on-sigint.patch", "runbooks",
               "components/platforms/docker/postgres.py", "SIDECAR_STOP: str | None = None"),
)  # fmt: skip


def _touched(patch: Path) -> list[str]:
    return re.findall(r"^diff --git a/(\S+) b/", patch.read_text(), flags=re.M)


@pytest.mark.parametrize("reg", REGRESSIONS, ids=lambda r: r.patch)
def test_patch_applies_and_reintroduces_its_defect(reg: Regression, tmp_path: Path) -> None:
    patch = FOLDER / reg.patch
    assert patch.is_file(), f"{patch} is missing"
    assert reg.scenario in NAMES, f"{reg.patch}: no rehearsal scenario {reg.scenario!r}"
    touched = _touched(patch)
    assert reg.file in touched, f"{reg.patch} does not touch {reg.file}: {touched}"
    assert reg.defect not in (REPO / reg.file).read_text(), (
        f"{reg.file} already holds the defect {reg.defect!r}: the fix is gone"
    )
    for name in touched:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
    # Outside any repository, git apply patches the files under the working directory.
    proc = subprocess.run([need("git"), "apply", str(patch)], cwd=tmp_path,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, (
        f"{reg.patch} no longer applies to this tree (the code moved: re-create the "
        f"defect in the current code and regenerate it with git diff):\n{proc.stderr}"
    )
    assert reg.defect in (tmp_path / reg.file).read_text(), (
        f"{reg.patch} applied, but {reg.file} does not hold {reg.defect!r}"
    )


def test_readme_lists_every_patch() -> None:
    readme = (FOLDER / "README.md").read_text()
    patches = sorted(p.name for p in FOLDER.glob("*.patch"))
    assert patches == sorted(r.patch for r in REGRESSIONS), patches
    missing = [p for p in patches if p not in readme]
    assert not missing, f"README.md does not name {missing}"

"""``--out`` holds exactly one render, however often and on whatever platform it is run."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import render as render_module
from infra.render import MARKER, main


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _run(stack: str, out: Path, *extra: str) -> int:
    return main(["--stack", stack, "--out", str(out), *extra])


@pytest.mark.slow  # three full renders into one folder: about 6 s
def test_render_twice_on_kubernetes_then_docker_leaves_only_the_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    k8s = ("--config", "platform=kubernetes")
    assert _run("staging", out, *k8s) == 0, capsys.readouterr().err
    first = _tree(out)
    assert any(name.startswith("manifests/") for name in first), "no manifests on kubernetes"
    assert _run("staging", out, *k8s) == 0, capsys.readouterr().err
    assert _tree(out) == first, "a second identical render must give the identical folder"

    assert _run("staging", out, "--config", "platform=docker") == 0, capsys.readouterr().err
    fresh = tmp_path / "fresh"
    assert _run("staging", fresh, "--config", "platform=docker") == 0
    stale = sorted(set(_tree(out)) - set(_tree(fresh)))
    assert not stale, f"files of the kubernetes render left behind: {stale[:5]} ({len(stale)})"
    assert _tree(out) == _tree(fresh), "the folder differs from a fresh docker render"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("out", "fresh"))
    assert not leftovers, f"temporary folders left beside --out: {leftovers}"
    print(f"\nstaging: kubernetes {len(first)} files, then docker {len(_tree(out))} files")


def test_out_that_is_not_a_render_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert _run("dev", precious) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a render" in err, err
    assert _tree(precious) == {"thesis.tex": b"years of work"}

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert _run("dev", a_file) == 2
    assert "not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "x"


def test_empty_folder_and_marked_render_are_replaced(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert _run("dev", out) == 0
    assert (out / MARKER).is_file() and (out / "resources.json").is_file()
    (out / "stray.txt").write_text("left by hand")
    assert _run("dev", out) == 0, "a folder carrying the marker is a render and is replaced"
    assert not (out / "stray.txt").exists()
    assert out.stat().st_mode & 0o777 == 0o755, "a render folder is an ordinary folder"


def test_a_failed_write_keeps_the_previous_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert _run("dev", out) == 0
    before = _tree(out)

    def broken(rendered: object, folder: Path) -> None:
        (folder / "resources.json").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(render_module, "_write_tree", broken)
    with pytest.raises(OSError, match="disk full"):
        _run("dev", out)
    assert _tree(out) == before, "the previous render must survive a failed write"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "temporary folder left"

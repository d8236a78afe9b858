"""`pulumi install` on a fresh clone: the program's venv gets the program's dependencies.

Nothing here can run the Pulumi CLI, so this models the part of its Python
language host that installs dependencies, from its source (pulumi/pulumi,
cited beside each step), and runs the real ``git``, ``python -m venv`` and
``pip`` underneath. The requirement-file rules come from pip's source
(pypa/pip ``src/pip/_internal/req/``).

- ``test_both_requirement_files_install_the_same_set`` (fast): pip's rules for
  ``-r`` and ``-e`` paths, applied to requirements.txt as the workflows run it
  (from the root) and to infra/requirements.txt as the language host runs it
  (from infra/). A dependency added to requirements.txt alone fails here.
- ``test_pulumi_install_on_a_fresh_clone`` (slow): the whole sequence on a
  ``git clone`` of the committed HEAD, then the program's imports as the
  language host runs them, and the old layout (no infra/requirements.txt),
  which leaves an empty venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.tools import REPO, need

PROJECT_NAME = "luna-infra"


def program_requirements(root: Path) -> set[str]:
    """This project and its runtime dependencies, by distribution name."""
    meta = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {canonicalize_name(meta["name"])} | {
        canonicalize_name(Requirement(dep).name) for dep in meta["dependencies"]
    }


# ------------------------------------------------------ the language host model
def program_directory(root: Path, main: str | None) -> tuple[Path, str]:
    """The program directory and entry point for Pulumi.yaml's `main`.

    pulumi/pulumi pkg/engine/project.go, getPwdMain: `main` is joined to the
    project root and cleaned; a directory becomes the working directory (the
    language host's ProgramDirectory) with entry point ".".
    """
    if not main:
        return root, "."
    target = Path(os.path.normpath(root / main))
    if target.is_dir():
        return target, "."
    return target.parent, target.name


def virtualenv_path(root: Path, option: str | None) -> Path | None:
    """Where the pip toolchain puts the venv named by `runtime.options.virtualenv`.

    pulumi/pulumi sdk/python/toolchain/pip.go, resolveVirtualEnvironmentPath: a
    relative path is joined to the project ROOT (toolchain.PythonOptions.Root,
    set from RootDirectory in sdk/python/cmd/pulumi-language-python/main.go
    parseOptions), not to the program directory.
    """
    if not option:
        return None
    path = Path(option)
    return path if path.is_absolute() else root / path


def activate(environ: Mapping[str, str], venv: Path) -> dict[str, str]:
    """pulumi/pulumi sdk/python/toolchain/toolchain.go, ActivateVirtualEnv."""
    env = {k: v for k, v in environ.items() if k.upper() not in {"PYTHONHOME", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def base_python() -> str:
    """pip.go, CommandPath: $PULUMI_PYTHON_CMD, else `python3`, else `python`, on PATH."""
    for name in filter(None, (os.environ.get("PULUMI_PYTHON_CMD"), "python3", "python")):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no python3 on PATH: the language host could not create a venv either")


def install_dependencies(program_dir: Path, venv: Path, env: Mapping[str, str]) -> list[str]:
    """pulumi/pulumi sdk/python/toolchain/pip.go, InstallDependencies, as `pulumi install` calls it.

    `pulumi install` (pkg/cmd/pulumi/install/install.go) and the first `pulumi
    up` (main.go GetRequiredPackages -> pip.EnsureVenv, when the venv has no
    bin/python) both reach it with cwd = ProgramDirectory. It runs
    `python -m venv <venv>`, then, with cwd and the activated environment,
    `<venv>/bin/python -m pip install --upgrade pip setuptools wheel`, then
    `... -m pip install -r requirements.txt` only if <cwd>/requirements.txt
    exists: a missing file returns early, silently. Returns what it ran.
    """
    ran: list[str] = []

    def run(args: list[str], cwd: Path | None) -> None:
        ran.append(" ".join(args))
        done = subprocess.run(
            args, cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"`{' '.join(args)}` failed:\n{done.stdout}\n{done.stderr}"

    run([base_python(), "-m", "venv", str(venv)], None)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--upgrade", "pip", "setuptools", "wheel"], program_dir)
    if not (program_dir / "requirements.txt").exists():
        return ran
    run([python, "-m", "pip", "install", "-r", "requirements.txt"], program_dir)
    return ran


# pulumi/pulumi sdk/python/cmd/pulumi-language-python-exec: the venv's python
# runs this script from Pulumi's install directory (so sys.path[0] is not the
# repository), chdir()s to --pwd (the program directory), then
# runpy.run_path(".") puts "." first on sys.path and runs __main__.py. This
# probe does the same up to the program's own imports.
_PROBE = """
import json, os, sys
os.chdir(sys.argv[1])
sys.path.insert(0, ".")
try:
    import components
    import infra.program
except ImportError as error:
    print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
else:
    print(json.dumps({"infra.program": infra.program.__file__,
                      "components": components.__file__}))
"""


def import_program(
    probe: Path, venv: Path, program_dir: Path, env: Mapping[str, str]
) -> dict[str, str]:
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(probe), str(program_dir)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"the import probe crashed: {done.stderr}"
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def installed(venv: Path, env: Mapping[str, str]) -> set[str]:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    )
    return {canonicalize_name(p["name"]) for p in json.loads(done.stdout)}


# ------------------------------------------------------------------ the tests
@pytest.mark.slow
def test_pulumi_install_on_a_fresh_clone(tmp_path: Path) -> None:
    git = need("git")
    head = subprocess.run(
        [git, "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    root = tmp_path / "clone"
    subprocess.run([git, "clone", "--quiet", "--no-checkout", str(REPO), str(root)], check=True)
    subprocess.run([git, "-C", str(root), "checkout", "--quiet", "--detach", head], check=True)

    project = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8"))
    runtime = project["runtime"]
    assert runtime["name"] == "python" and runtime["options"]["toolchain"] == "pip", runtime
    program_dir, entry = program_directory(root, project.get("main"))
    venv = virtualenv_path(root, runtime["options"].get("virtualenv"))
    assert venv is not None, "Pulumi.yaml sets no virtualenv: pulumi would use the ambient python"
    print(
        f"\nclone of {head[:12]}: program directory {program_dir.relative_to(root)}/, "
        f"entry {entry!r}, venv {venv.relative_to(root)}"
    )

    probe = tmp_path / "pulumi-language-python-exec-probe.py"
    probe.write_text(_PROBE, encoding="utf-8")
    # The test's own interpreter paths must not leak into the model.
    base_env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env = activate(base_env, venv)

    # pip's default cache (~/.cache/pip) is left on, so repeat runs download nothing.
    started = time.monotonic()
    ran = install_dependencies(program_dir, venv, env)
    seconds = time.monotonic() - started
    print(f"pulumi install (modelled) ran, in {seconds:.1f} s:\n  " + "\n  ".join(ran))
    assert ran[-1].endswith("-m pip install -r requirements.txt"), (
        f"{program_dir.relative_to(root)}/requirements.txt is missing on a fresh clone: "
        "the language host would install nothing into the venv"
    )
    wanted = program_requirements(root)
    packages = installed(venv, env)
    assert wanted <= packages, f"the venv lacks {sorted(wanted - packages)}"
    imported = import_program(probe, venv, program_dir, env)
    assert "error" not in imported, f"the program cannot import from its venv: {imported['error']}"
    for module, file in imported.items():
        assert Path(file).is_relative_to(root), f"{module} came from {file}, not from the clone"
    print(f"venv holds {len(packages)} packages; imported {imported}")

    # The naive layout, with the real pip: infra/requirements.txt pulling in the
    # top-level file. Its `-e .` is read against pip's cwd (infra/) and fails.
    (program_dir / "requirements.txt").write_text("-r ../requirements.txt\n", encoding="utf-8")
    naive = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-r", "requirements.txt"],
        cwd=program_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    pip_version = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(" from ")[0]
    print(f"naive `-r ../requirements.txt` with {pip_version}: exit {naive.returncode}, ")
    print(f"  {naive.stderr.strip()[-160:]}")
    assert naive.returncode != 0, "pip resolved `-e .` against the file, not its cwd: simplify"
    assert f"{program_dir}" in naive.stderr and "Python project" in naive.stderr, naive.stderr

    # The old layout: no requirements.txt in the program directory. A venv made
    # then holds pip's own tools only, and the program cannot import its packages.
    shutil.rmtree(venv)
    (program_dir / "requirements.txt").unlink()
    ran = install_dependencies(program_dir, venv, env)
    packages = installed(venv, env)
    imported = import_program(probe, venv, program_dir, env)
    print("old layout ran:\n  " + "\n  ".join(ran) + f"\nleft {sorted(packages)}; {imported}")
    assert not any("requirements.txt" in command for command in ran), ran
    assert not packages & wanted, (
        f"the old layout was expected to leave no program package: {packages}"
    )
    assert "ModuleNotFoundError" in imported.get("error", ""), imported


# pypa/pip src/pip/_internal/req/req_file.py, RequirementsFileParser._parse_and_recurse:
# a nested `-r PATH` is joined to the directory of the file that names it.
# pypa/pip src/pip/_internal/req/constructors.py, _parse_pip_syntax_editable: an
# `-e PATH` is tested with os.path.isdir(PATH) and turned into a file: URL with
# os.path.abspath, i.e. against pip's working directory, not the file's.
def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def reached(requirements: Path, cwd: Path) -> set[str]:
    """The distributions `pip install -r requirements` run in `cwd` asks for (one level deep)."""
    found: set[str] = set()
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            nested = requirements.parent / line.split(maxsplit=1)[1]
            found |= reached(nested.resolve(), cwd)
        elif line.startswith(("-e ", "--editable ")):
            project = (cwd / line.split(maxsplit=1)[1]).resolve()
            pyproject = project / "pyproject.toml"
            assert pyproject.is_file(), (
                f"{shown(requirements)}: `{line}` run from {shown(cwd)}/ "
                f"names {shown(project)}/, which is no Python project"
            )
            meta = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
            found.add(canonicalize_name(meta["name"]))
            found |= {str(Requirement(dep)) for dep in meta.get("dependencies", [])}
        elif line.startswith("-"):
            pytest.fail(f"{shown(requirements)}: option {line!r} is not modelled here")
        else:
            found.add(str(Requirement(line)))
    return found


def test_both_requirement_files_install_the_same_set() -> None:
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text(encoding="utf-8"))
    program_dir, _ = program_directory(REPO, project.get("main"))
    assert (program_dir / "requirements.txt").is_file(), (
        f"{shown(program_dir)}/requirements.txt is missing: `pulumi install` reads it, "
        "and without it leaves the venv empty"
    )
    from_root = reached(REPO / "requirements.txt", REPO)
    by_language_host = reached(program_dir / "requirements.txt", program_dir)
    assert PROJECT_NAME in by_language_host, (
        f"{program_dir.relative_to(REPO)}/requirements.txt does not install {PROJECT_NAME}, "
        "so the program could not import components"
    )
    assert from_root == by_language_host, (
        "requirements.txt (workflows, scripts/test) and "
        f"{program_dir.relative_to(REPO)}/requirements.txt (pulumi install) differ: "
        f"only in requirements.txt {sorted(from_root - by_language_host)}, "
        f"only in the program's {sorted(by_language_host - from_root)}; "
        "put runtime dependencies in pyproject.toml's [project] dependencies"
    )


def test_the_model_rejects_the_naive_layout(tmp_path: Path) -> None:
    # `-r ../requirements.txt` in infra/ looks right, but its `-e .` is read
    # from pip's cwd, infra/, which is no project. The slow test shows the real
    # pip failing on it; the model must fail too, or the test above proves little.
    naive = tmp_path / "requirements.txt"
    naive.write_text(f"-r {REPO / 'requirements.txt'}\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="which is no Python project"):
        reached(naive, REPO / "infra")


def _init_lengths() -> dict[str, int]:
    """Lines of every component's constructor and of the program's build()."""
    import ast

    found: dict[str, int] = {}
    for path in sorted((REPO / "components").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        lines = (item.end_lineno or item.lineno) - item.lineno + 1
                        found[f"{path.name}:{node.name}.__init__"] = lines
    program = ast.parse((REPO / "infra" / "program.py").read_text())
    for node in program.body:
        if isinstance(node, ast.FunctionDef) and node.name == "build":
            found["program.py:build"] = (node.end_lineno or node.lineno) - node.lineno + 1
    return found


def test_constructors_and_build_read_as_named_steps() -> None:
    # STYLE.md: a constructor reads like a table of contents; over ~80 lines, split it.
    lengths = _init_lengths()
    assert {"logs.py:Logging.__init__", "monitoring.py:Monitoring.__init__",
            "program.py:build"} <= set(lengths), lengths  # fmt: skip
    long = {name: n for name, n in lengths.items() if n > 80}
    assert not long, f"over 80 lines: {long}"

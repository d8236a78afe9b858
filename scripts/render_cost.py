#!/usr/bin/env python3
"""What an offline render's imports cost, against the SDK modules it cannot avoid.

    .venv/bin/python scripts/render_cost.py [--stack prod] [--runs 7] [--max 1.3]

For each platform:

1. a render (``python -m infra.render --stack S --config platform=P``) runs once
   and records every module it imported, in order;
2. the SDK modules it *needs* are found from its own ``resources.json``: the
   module of each resource type (``kubernetes:apps/v1:Deployment`` ->
   ``pulumi_kubernetes.apps.v1``), plus ``pulumi``;
3. side by side in one fresh interpreter per run: it imports (b) the needed
   SDK modules, then (a) everything else the render imported, and reports the
   CPU seconds at both points, its own start-up included in both (CPU, not
   wall time: on a shared machine wall time mostly measures the neighbours).

The ratio is a / b of each run, and the median over ``--runs``. Both halves of a
run share one process, so a busy moment or a slower core hits both alike: two
separate processes per side varied by +-15 % on an idle machine. Every process runs with bytecode
caching on, into one private ``PYTHONPYCACHEPREFIX`` that the first render fills:
both sides then load compiled modules, as a user's second ``pulumi up`` does. (A
shell with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise make the project's own
modules pay for compiling on every run, while pip compiled the SDK at install.)

1.0 is a render that imports nothing beyond the SDK modules of what it creates;
one that imported the other platform's SDK shows it at once. Exit 1 when a ratio exceeds ``--max``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PLATFORMS = ("docker", "kubernetes")


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _module(token: str) -> str:
    """The SDK module that defines a resource type token's class."""
    package, module, _ = token.split(":")
    if package == "pulumi":  # pulumi:providers:<pkg>
        return f"pulumi_{token.rsplit(':', 1)[1]}.provider"
    if package != "kubernetes":
        # command:local:Command -> pulumi_command.local; "index/..." is the package root.
        name = f"pulumi_{package}.{module}"
        return name if not module.startswith("index") and _exists(name) else f"pulumi_{package}"
    group, version = module.split("/")[0], module.split("/")[-1]
    name = f"pulumi_kubernetes.{group.split('.')[0]}.{version}"
    # A custom resource (e.g. a CloudNativePG Cluster) has no typed module of its own.
    return name if _exists(name) else "pulumi_kubernetes.apiextensions.CustomResource"


# Registering any Kubernetes resource makes the SDK resolve the type hints of its
# args (pulumi/_types.py ``_types_from_py_properties``, called by
# ``rpc.serialize_properties``), and every kind's ``metadata`` is a
# ``pulumi_kubernetes.meta.v1.ObjectMetaArgs``: the SDK imports meta.v1 itself.
_SDK_RUNTIME = {"kubernetes": ("pulumi_kubernetes.meta.v1",)}


def needed_modules(resources_json: Path) -> list[str]:
    types = {r["type"] for r in json.loads(resources_json.read_text()) if r["custom"]}
    runtime = {m for t in types for m in _SDK_RUNTIME.get(t.split(":")[0], ())}
    return sorted({"pulumi", *runtime, *(_module(t) for t in types)})


# Records, in import order, every module a render loads (sys.modules at exit).
# The SDKs register their submodules lazily (pulumi/_utils.py ``_LazyModule``):
# one the render never touched sits in sys.modules unexecuted. Importing its own
# children by name (they are listed too when a sibling was touched) executes them,
# as do a parent's lazy siblings, so unexecuted placeholders are left out.
# ``type()`` reads the class without triggering the load.
_PROBE = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
def loaded():
    return [n for n, m in list(sys.modules.items()) if type(m).__name__ != "_LazyModule"]
atexit.register(lambda: open(out, "w").write(json.dumps(loaded())))
runpy.run_module("infra.render", run_name="__main__", alter_sys=True)
"""
# Imports the needed modules, then the render's, and reports the CPU seconds the
# process had used at both points.
_IMPORTER = """
import importlib, json, sys, time
failed = []
def load(names):
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:
            failed.append(f"{name}: {e}")
load(json.load(open(sys.argv[1])))
floor = time.process_time()
load(json.load(open(sys.argv[2])))
print(floor, time.process_time())
if failed:
    sys.exit("modules the render imported that a bare interpreter cannot: " + "; ".join(failed))
"""
_SKIP = ("__main__", "__mp_main__")


def _env(workdir: Path) -> dict[str, str]:
    """The environment of every measured process: bytecode cached under ``workdir``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(workdir / "pycache")}


def render_modules(argv: list[str], workdir: Path) -> list[str]:
    """Every module a render with ``argv`` imports, in the order it imports them."""
    listing = workdir / "modules.json"
    subprocess.run(
        [sys.executable, "-c", _PROBE, str(listing), *argv],
        cwd=REPO, env=_env(workdir), check=True, capture_output=True,
    )  # fmt: skip
    return [m for m in json.loads(listing.read_text()) if m not in _SKIP]


def import_cpu_seconds(floor: list[str], render: list[str], workdir: Path) -> tuple[float, float]:
    """CPU seconds of a fresh interpreter once it has imported ``floor``, then ``render``.

    CPU time, not wall time: on a shared machine wall time mostly measures the
    neighbours, while the CPU an import burns stays put.
    """
    lists = []
    for name, modules in (("floor", floor), ("render", render)):
        lists.append(workdir / f"{name}.json")
        lists[-1].write_text(json.dumps(modules))
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTER, *map(str, lists)],
        cwd=REPO, env=_env(workdir), check=False, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip())
    at_floor, at_render = map(float, proc.stdout.split())
    return at_floor, at_render


def _cpu_seconds(argv: list[str], workdir: Path) -> float:
    """User + system CPU of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = _env(workdir)
    subprocess.run([sys.executable, *argv], cwd=REPO, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(stack: str, platform: str, runs: int, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{stack}-{platform}"
    argv = ["--stack", stack, "--config", f"platform={platform}", "--out", str(out)]
    loaded = render_modules(argv, workdir)
    modules = needed_modules(out / "resources.json")
    # A floor module the render never loaded would inflate the floor, lowering the ratio.
    extra = sorted(set(modules) - set(loaded))
    if extra:
        raise SystemExit(f"{platform}: the floor names modules the render never loaded: {extra}")
    pairs = [import_cpu_seconds(modules, loaded, workdir) for _ in range(runs)]
    sdk = sorted({n.split(".")[0] for n in loaded if n.startswith("pulumi_")})
    return {
        "modules": modules,
        "sdks": sdk,
        "floor": statistics.median(f for f, _ in pairs),
        "render": statistics.median(r for _, r in pairs),
        "ratio": statistics.median(r / f for f, r in pairs),
        "cpu": _cpu_seconds(["-m", "infra.render", *argv], workdir),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default="prod", choices=("dev", "staging", "prod"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max", type=float, default=1.3)
    args = parser.parse_args(argv)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for platform in PLATFORMS:
            m = measure(args.stack, platform, args.runs, Path(tmp))
            worst = max(worst, m["ratio"])
            print(
                f"{args.stack} on {platform}: importing what the render imports costs "
                f"{m['render']:.2f} s CPU, the SDK modules it needs {m['floor']:.2f} s: "
                f"ratio {m['ratio']:.2f}x (median of {args.runs} runs; the whole render "
                f"{m['cpu']:.2f} s CPU). SDKs loaded: {', '.join(m['sdks'])}; needed: "
                f"{', '.join(m['modules'])}"
            )
    if worst > args.max:
        print(f"render cost {worst:.2f}x exceeds {args.max}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

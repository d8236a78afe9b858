#!/usr/bin/env python3
"""What an offline render's imports cost, against the SDK modules it cannot avoid.

    .venv/bin/python scripts/render_cost.py [--stack prod] [--runs 7] [--max 1.3]

For each platform:

1. a render (``python -m infra.render --stack S --config platform=P``) runs once
   and records every module it imported, in order;
2. the SDK modules it *needs* are found from its own ``resources.json``: the
   module of each resource type (``kubernetes:apps/v1:Deployment`` ->
   ``pulumi_kubernetes.apps.v1``), plus ``pulumi``;
3. side by side, alternating, fresh interpreters import (a) everything the
   render imported and (b) only the needed SDK modules, and report their CPU
   seconds (CPU, not wall time: on a shared machine wall time mostly measures
   the neighbours).

The ratio is min(a) / min(b) over ``--runs`` (the fastest run, as ``timeit``
advises: other processes only ever add time). Every process runs with bytecode
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
_PROBE = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(list(sys.modules))))
runpy.run_module("infra.render", run_name="__main__", alter_sys=True)
"""
# Imports a list of modules in order and reports the CPU seconds the process used.
_IMPORTER = """
import importlib, json, sys, time
for name in json.load(open(sys.argv[1])):
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(time.process_time())
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


def import_cpu_seconds(modules: list[str], workdir: Path) -> float:
    """CPU seconds of a fresh interpreter that imports ``modules`` (startup included).

    CPU time, not wall time: on a shared machine wall time mostly measures the
    neighbours, while the CPU an import burns stays put.
    """
    listing = workdir / "import.json"
    listing.write_text(json.dumps(modules))
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTER, str(listing)],
        cwd=REPO, env=_env(workdir), check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(proc.stdout.strip())


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
    samples: dict[str, list[float]] = {k: [] for k in ("floor", "render", "cpu")}
    for _ in range(runs):  # alternating, so that load hits both alike
        samples["floor"].append(import_cpu_seconds(modules, workdir))
        samples["render"].append(import_cpu_seconds(loaded, workdir))
        samples["cpu"].append(_cpu_seconds(["-m", "infra.render", *argv], workdir))
    # The fastest run: load from other processes only ever adds time (timeit's reasoning).
    m = {k: min(v) for k, v in samples.items()}
    sdk = sorted({n.split(".")[0] for n in loaded if n.startswith("pulumi_")})
    return {"modules": modules, "sdks": sdk, **m, "ratio": m["render"] / m["floor"]}


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
                f"ratio {m['ratio']:.2f}x (fastest of {args.runs}; the whole render "
                f"{m['cpu']:.2f} s CPU). SDKs loaded: {', '.join(m['sdks'])}; needed: "
                f"{', '.join(m['modules'])}"
            )
    if worst > args.max:
        print(f"render cost {worst:.2f}x exceeds {args.max}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

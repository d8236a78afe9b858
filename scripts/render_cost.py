#!/usr/bin/env python3
"""What an offline render's imports cost, against the SDK modules it cannot avoid.

    .venv/bin/python scripts/render_cost.py [--stack prod] [--runs 7] [--max 1.3]

For each platform, in fresh processes run side by side (alternating, so that
machine load hits both alike), with ``python -X importtime``:

- **render**: ``python -m infra.render --stack S --config platform=P --out TMP``;
- **SDK floor**: ``python -c "import pulumi, <every SDK module the render's
  resource types live in>"``, the modules found from the render's own
  ``resources.json`` (``kubernetes:apps/v1:Deployment`` -> ``pulumi_kubernetes.apps.v1``).

The ratio is min(render's total import time) / min(floor's), the fastest of
``--runs`` each (as ``timeit`` advises: other processes only ever add time): 1.0 would be a
render that imports nothing beyond the SDK modules of what it creates; a render
that imported the other platform's SDK would show it at once. The whole-process
CPU time of each is printed too, for information. Exit 1 when a ratio exceeds
``--max``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PLATFORMS = ("docker", "kubernetes")


def _module(token: str) -> str:
    """The SDK module that defines a resource type token."""
    package, module, _ = token.split(":")
    if package == "pulumi":  # pulumi:providers:<pkg>
        return f"pulumi_{token.rsplit(':', 1)[1]}.provider"
    if package != "kubernetes" or module.startswith("index"):
        return f"pulumi_{package}"
    group, version = module.split("/")[0], module.split("/")[-1]
    name = f"pulumi_kubernetes.{group.split('.')[0]}.{version}"
    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        found = False
    # A custom resource (e.g. a CloudNativePG Cluster) has no typed module.
    return name if found else "pulumi_kubernetes.apiextensions"


def needed_modules(resources_json: Path) -> list[str]:
    types = {r["type"] for r in json.loads(resources_json.read_text()) if r["custom"]}
    return sorted({"pulumi", *(_module(t) for t in types)})


def _import_seconds(argv: list[str]) -> float:
    """Total import time of one fresh process: the sum of ``-X importtime``'s self times."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], cwd=REPO, check=True, capture_output=True
    )
    total_us = 0
    for line in proc.stderr.decode().splitlines():
        match = re.match(r"import time:\s+(\d+) \|", line)
        if match:
            total_us += int(match.group(1))
    return total_us / 1e6


def _cpu_seconds(argv: list[str]) -> float:
    """User + system CPU of one fresh process (wall time on a shared machine mostly
    measures the neighbours)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *argv], cwd=REPO, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(stack: str, platform: str, runs: int, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{stack}-{platform}"
    render = ["-m", "infra.render", "--stack", stack]
    render += ["--config", f"platform={platform}", "--out", str(out)]
    subprocess.run([sys.executable, *render], cwd=REPO, check=True, capture_output=True)
    modules = needed_modules(out / "resources.json")
    floor = ["-c", "import " + ", ".join(modules)]
    samples: dict[str, list[float]] = {k: [] for k in ("floor", "render", "floor_cpu", "cpu")}
    for _ in range(runs):  # alternating, so that load hits both alike
        samples["floor"].append(_import_seconds(floor))
        samples["render"].append(_import_seconds(render))
        samples["floor_cpu"].append(_cpu_seconds(floor))
        samples["cpu"].append(_cpu_seconds(render))
    # The fastest run: load from other processes only ever adds time (timeit's reasoning).
    m = {k: min(v) for k, v in samples.items()}
    return {"modules": modules, **m, "ratio": m["render"] / m["floor"]}


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
                f"{args.stack} on {platform}: the render imports for {m['render']:.2f} s, "
                f"the SDK modules it needs for {m['floor']:.2f} s: ratio {m['ratio']:.2f}x "
                f"(fastest of {args.runs}). Whole process, CPU: render {m['cpu']:.2f} s, "
                f"SDK imports alone {m['floor_cpu']:.2f} s. Needed: {', '.join(m['modules'])}"
            )
    if worst > args.max:
        print(f"render cost {worst:.2f}x exceeds {args.max}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

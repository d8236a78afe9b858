"""A stand-in for ``helm upgrade``: the docs' helm commands checked as helm would parse them.

No helm binary is installable here (not in Debian bookworm, not on PyPI as a
binary). This stand-in knows:

- ``helm upgrade [RELEASE] [CHART] [flags]`` and its flags, from helm's command
  reference (helm/helm ``pkg/cmd/upgrade.go`` and ``pkg/cmd/flags.go``, v3: ``--install``,
  ``--repo``, ``--version``, ``--create-namespace``, ``--wait``...) plus the global
  ``-n/--namespace``, ``--kube-context``, ``--kubeconfig``;
- this project: the charts, versions, repository and namespace the program pins
  (components/platforms/kubernetes/cnpg_install.py), so a doc that drifts from the
  pins fails.

It proves a command would parse and installs what the program expects; it does not
prove what helm would then do on a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["check"]

# flag -> takes a value
GLOBAL: Final = {"-n": True, "--namespace": True, "--kube-context": True, "--kubeconfig": True,
                 "--debug": False, "--burst-limit": True, "--qps": True}  # fmt: skip
UPGRADE: Final = {
    "-i": False, "--install": False, "--repo": True, "--version": True, "--devel": False,
    "--create-namespace": False, "--wait": False, "--wait-for-jobs": False, "--timeout": True,
    "--atomic": False, "--cleanup-on-fail": False, "--force": False, "--reuse-values": False,
    "--reset-values": False, "--reset-then-reuse-values": False, "-f": True, "--values": True,
    "--set": True, "--set-string": True, "--set-file": True, "--set-json": True,
    "--dry-run": False, "--description": True, "--history-max": True, "--skip-crds": False,
    "--username": True, "--password": True, "--ca-file": True, "--cert-file": True,
    "--key-file": True, "--insecure-skip-tls-verify": False, "--pass-credentials": False,
    "--post-renderer": True, "--verify": False, "--keyring": True, "--no-hooks": False,
    "--render-subchart-notes": False, "--disable-openapi-validation": False,
    "--dependency-update": False, "-o": True, "--output": True,
}  # fmt: skip


def _parse(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    if not argv or argv[0] != "upgrade":
        raise ValueError(f"the docs use only `helm upgrade`, not {' '.join(argv[:1])!r}")
    known = {**GLOBAL, **UPGRADE}
    flags: dict[str, str] = {}
    positional: list[str] = []
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name not in known:
            raise ValueError(f"unknown flag: {name}")
        if known[name] and not eq:
            if not args:
                raise ValueError(f"flag needs an argument: {name}")
            value = args.pop(0)
        flags[name] = value
    if len(positional) != 2:
        raise ValueError(f"helm upgrade takes RELEASE and CHART, got {positional}")
    return flags, positional


def check(argv: Sequence[str]) -> str | None:
    """None when helm would parse the command and it installs a pinned chart as pinned."""
    from components.platforms.kubernetes.cnpg_install import (
        CHARTS,
        CHARTS_REPO,
        OPERATOR_NAMESPACE,
    )

    try:
        flags, (_release, chart) = _parse(argv)
    except ValueError as err:
        return str(err)
    if chart not in CHARTS:
        return f"chart {chart!r} is not one the program pins ({sorted(CHARTS)})"
    if "--install" not in flags and "-i" not in flags:
        return "without --install a first install fails (no release yet)"
    wanted = {"--repo": CHARTS_REPO, "--version": CHARTS[chart]}
    for flag, value in wanted.items():
        if flags.get(flag) != value:
            return f"{chart}: {flag} {flags.get(flag)!r}, the program pins {value!r}"
    namespace = flags.get("-n", flags.get("--namespace"))
    if namespace != OPERATOR_NAMESPACE:
        return f"{chart}: namespace {namespace!r}, not {OPERATOR_NAMESPACE!r} (operator and plugin)"
    return None

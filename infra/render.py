"""Offline render: run the real program under engine-like mocks and write what it would deploy.

    python -m infra.render --stack staging --out out/staging \
        [--config KEY=VALUE]... [--secret KEY=VALUE]...

Writes ``resources.json`` (every resource with its parent, dependencies,
options and inputs, secrets masked), ``outputs.json`` and ``files/`` (every
configuration file shipped into a container, secrets masked). For a kubernetes
stack it also writes ``manifests/<kind>-<name>.yaml``: one object per file, as
the provider would apply it, and ``files/<ConfigMap or Secret name>/<path>``.
Needs no Pulumi CLI and no network. Bad configuration exits 2 with one line.

``--out`` always holds exactly one render: each run writes a sibling temporary
folder and swaps it in, so repeating a render, or switching platform, never
leaves files of an earlier one behind. A folder that is neither empty nor an
earlier render is refused (exit 2) rather than deleted.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

import pulumi
import yaml
from pulumi.runtime import rpc

from infra.mocks import MASK, LunaMocks, Record, RecordingMonitor, mask, unwrap
from infra.program import build
from infra.settings import (
    NAMESPACE,
    STACKS,
    ConfigError,
    load_settings,
    placeholder_secret,
    required_secret_groups,
    required_secrets,
)

__all__ = [
    "MARKER",
    "ConfigSource",
    "Rendered",
    "autoscalers",
    "load_stack_config",
    "main",
    "on_platform",
    "render",
    "stack_config_file",
    "write",
]

REPO = Path(__file__).resolve().parent.parent
DEV_TEMPLATE = "Pulumi.dev.yaml"
# Each developer's own dev config (scripts/deploy-dev): the committed Pulumi.dev.yaml
# plus the salt of their passphrase and their `config set`s, outside git.
DEV_PERSONAL = ".pulumi-state/project/Pulumi.dev.yaml"
# Written into every output folder; only a folder carrying it (or an empty one) is replaced.
MARKER = ".luna-render"
# What a render writes; a folder holding only these predates the marker and is a render too.
_RENDER_ENTRIES = frozenset({MARKER, "resources.json", "outputs.json", "files", "manifests"})


@dataclass
class Rendered:
    """The result of one render, for tests: records keep secret wrappers."""

    monitor: RecordingMonitor
    outputs: dict[str, Any]

    def resources(self) -> list[dict[str, Any]]:
        return [
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "custom": r.custom,
                "parent": r.parent,
                "dependencies": r.dependencies,
                "protect": r.protect,
                "retain_on_delete": r.retain_on_delete,
                "delete_before_replace": r.delete_before_replace,
                "provider": r.provider,
                "inputs": mask(r.inputs),
            }
            for r in self.monitor.records.values()
        ]

    def manifests(self) -> list[dict[str, Any]]:
        """Every Kubernetes object as the provider would apply it; secret leaves masked."""
        objects = []
        for r in self.monitor.records.values():
            if not (r.custom and r.type.startswith("kubernetes:")):
                continue
            body = mask(r.inputs)
            if "apiVersion" not in body:
                # A Helm release (cnpgOperator=install) is no object of its own: its
                # chart's objects are Helm's to render, and it is in resources.json.
                continue
            name = unwrap(r.outputs.get("metadata") or {}).get("name")
            metadata = {**(body.pop("metadata", None) or {}), "name": name}
            api, kind = body.pop("apiVersion"), body.pop("kind")
            objects.append({"apiVersion": api, "kind": kind, "metadata": metadata, **body})
        return objects

    def files(self) -> dict[str, str]:
        """Every file shipped into a container, secrets masked.

        Docker: ``<container>/<path>``; Kubernetes: ``<ConfigMap or Secret>/<path>``.
        """
        # Each platform module is imported only when its resources are present: a
        # render pays for the SDK of its own platform only (scripts/render_cost.py).
        shipped: dict[str, str] = {}
        manifests = self.manifests()
        if manifests:
            from components.platforms.kubernetes import FILES_ANNOTATION
        for obj in manifests:
            note = (obj["metadata"].get("annotations") or {}).get(FILES_ANNOTATION)
            if obj["kind"] not in ("ConfigMap", "Secret") or not note:
                continue
            data = obj.get("data") or obj.get("stringData") or {}
            for key, path in json.loads(note).items():
                text = MASK + "\n" if obj["kind"] == "Secret" else str(data[key])
                shipped[f"{obj['metadata']['name']}{path}"] = text
        for r in self.monitor.records.values():
            if r.type == "command:local:Command":
                shipped.update(_job_files(r))
                continue
            if r.type != "docker:index/container:Container":
                continue
            from components.platforms.docker import SECRET_FILES_LABEL

            container = unwrap(r.inputs.get("name"))
            labels = {x["label"]: x["value"] for x in unwrap(r.inputs.get("labels") or [])}
            secret_paths = set(filter(None, labels.get(SECRET_FILES_LABEL, "").split(",")))
            # One secret upload makes the whole list secret (as in real state); the
            # platform's label names the files that are secret, and only those are masked.
            uploads, _ = _peel(r.inputs.get("uploads") or [])
            for item in uploads:
                upload, item_secret = _peel(item)
                content, content_secret = _peel(upload.get("content"))
                path = unwrap(upload["file"])
                secret = item_secret or content_secret or path in secret_paths
                text = MASK + "\n" if secret else str(unwrap(content))
                shipped[f"{container}{path}"] = text
        return shipped


def autoscalers(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each HorizontalPodAutoscaler's spec, by the name of the workload it scales."""
    return {
        o["spec"]["scaleTargetRef"]["name"]: o["spec"]
        for o in manifests
        if o["kind"] == "HorizontalPodAutoscaler"
    }


def _job_files(r: Record) -> dict[str, str]:
    """Files a Docker job's script writes into its container, from its environment."""
    script = str(unwrap(r.inputs.get("create") or ""))
    name = re.search(r"docker create --name (\S+)", script)
    if not name:
        return {}
    env, _ = _peel(r.inputs.get("environment") or {})
    shipped = {}
    for variable, path in re.findall(r'printf "%s" "\$(\w+)" > "\$stage"(\S+)', script):
        content, secret = _peel(env[variable])
        secret = secret or variable.startswith("LUNA_SECRET_FILE_")
        shipped[f"{name.group(1)}{path}"] = MASK + "\n" if secret else str(unwrap(content))
    return shipped


def _peel(value: Any) -> tuple[Any, bool]:
    if rpc.is_rpc_secret(value):
        return rpc.unwrap_rpc_secret(value), True
    return value, False


class UsageError(Exception):
    pass


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _full(key: str) -> str:
    return key if ":" in key else f"{NAMESPACE}:{key}"


def _yaml_file(path: Path) -> dict[str, Any]:
    """A stack or project file, parsed with libyaml where PyYAML has it (the test
    suite renders hundreds of times; the pure-Python parser was a fifth of that)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
    return doc if isinstance(doc, dict) else {}


def load_stack_config(
    stack: str,
    *,
    overrides: Sequence[tuple[str, str]] = (),
    secrets: Sequence[tuple[str, str]] = (),
    root: Path = REPO,
    personal: bool = False,
    placeholders: bool = True,
) -> tuple[dict[str, str], list[str]]:
    """Merge Pulumi.yaml defaults, the stack's file and overrides, as the CLI does.

    ``personal``: for dev, read the developer's own Pulumi.dev.yaml when it exists.

    ``secure:`` values cannot be decrypted here; they become placeholder secrets.
    """
    project = _yaml_file(root / "Pulumi.yaml")
    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key, decl in (project.get("config") or {}).items():
        value = decl.get("default") if isinstance(decl, dict) else decl
        if value is not None:
            config[_full(key)] = _text(value)
    stack_file = stack_config_file(stack, root, personal=personal)
    if not stack_file.exists():
        raise UsageError(f"--stack {stack}: {stack_file.name} does not exist")
    for key, value in (_yaml_file(stack_file).get("config") or {}).items():
        full = _full(key)
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full] = placeholder_secret(full.split(":")[-1])
            secret_keys.add(full)
        else:
            config[full] = _text(value)
    for key, value in overrides:
        config[_full(key)] = value
        secret_keys.discard(_full(key))
    for key, value in secrets:
        config[_full(key)] = value
        secret_keys.add(_full(key))
    groups = required_secret_groups(stack) if config.get(_full("monitoring")) != "false" else ()
    if not placeholders:
        return config, sorted(secret_keys)
    platform = config.get(_full("platform"), "docker")
    alerting = [g[0] for g in groups if not _any_set(g, config)]
    needed = [*required_secrets(stack, platform), *alerting]
    for key in needed:
        # Like a `secure:` value we cannot decrypt: set on the real stack by
        # `pulumi config set --secret`, a placeholder here. `pulumi up` still refuses
        # to run without it (infra/settings.py).
        if _full(key) not in config:
            config[_full(key)] = placeholder_secret(key)
            secret_keys.add(_full(key))
            print(
                f"note: {_full(key)} is not in {stack_file.name}; rendering with a "
                "placeholder secret",
                file=sys.stderr,
            )
    return config, sorted(secret_keys)


def stack_config_file(stack: str, root: Path = REPO, *, personal: bool = False) -> Path:
    """The committed config of ``stack``: ``Pulumi.<stack>.yaml``, except dev's.

    dev's committed config is Pulumi.dev.yaml; scripts/deploy-dev gives each developer
    a copy under .pulumi-state (``DEV_PERSONAL``), out of git, because Pulumi writes the
    salt of that developer's passphrase into it (docs/environments.md).
    """
    if stack == "dev":
        own = root / DEV_PERSONAL
        return own if personal and own.exists() else root / DEV_TEMPLATE
    return root / f"Pulumi.{stack}.yaml"


def on_platform(platform: str) -> list[tuple[str, str]]:
    """Overrides that move any stack to ``platform``, as an operator would set them:
    the demo app (dev) is built on a Docker host, so Kubernetes runs ``appImage``."""
    return [("platform", platform)] + ([("demoApp", "false")] if platform != "docker" else [])


def _any_set(keys: Sequence[str], config: dict[str, str]) -> bool:
    return any(_full(k) in config for k in keys)


class ConfigSource(TypedDict, total=False):
    """Where a render's config comes from: :func:`load_stack_config`'s keywords,
    with its defaults."""

    overrides: Sequence[tuple[str, str]]
    secrets: Sequence[tuple[str, str]]
    root: Path
    personal: bool
    placeholders: bool


def render(
    stack: str, *, mocks: pulumi.runtime.Mocks | None = None, **source: Unpack[ConfigSource]
) -> Rendered:
    """Run the program for ``stack`` under mocks. Raises ConfigError on bad config.

    ``source``: as for :func:`load_stack_config`. ``placeholders=False`` refuses, as
    ``pulumi up`` does, a missing required secret. ``mocks``: the provider stand-ins
    (default :class:`LunaMocks`; the rehearsal's issue real certificates).
    """
    config, secret_keys = load_stack_config(stack, **source)
    mocks = mocks or LunaMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="luna", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)
    # Validate before any resource exists, exactly like the real entry point.
    settings = load_settings(stack)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        exported = {k: pulumi.Output.from_input(v) for k, v in build(settings).items()}

        async def collect() -> None:
            # Keep secrecy: a secret stack output is stored wrapped, as the engine does.
            for key, output in exported.items():
                value = await output.future()
                outputs[key] = rpc.wrap_rpc_secret(value) if await output.is_secret() else value

        return pulumi.Output.from_input(collect())

    program()
    return Rendered(monitor=monitor, outputs=outputs)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def check_out(out: Path) -> None:
    """Refuse (UsageError) an ``--out`` this tool may not replace."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out}: not a folder; give a new or empty folder, or a render")
    if not out.exists():
        return
    entries = {p.name for p in out.iterdir()}
    if (
        entries
        and MARKER not in entries
        and not (entries <= _RENDER_ENTRIES and "resources.json" in entries)
    ):
        raise UsageError(
            f"--out {out}: holds files that are not a render ({', '.join(sorted(entries)[:3])}"
            f"{', …' if len(entries) > 3 else ''}); give a new or empty folder, or a render"
        )


def _write_tree(rendered: Rendered, out: Path) -> None:
    (out / MARKER).write_text("written by python -m infra.render; replaced by the next render\n")
    # Sorted, so that two renders of one configuration are byte-identical and a
    # `diff -r` between renders shows only what changed (registration is asynchronous).
    resources = sorted(rendered.resources(), key=lambda r: str(r["urn"]))
    (out / "resources.json").write_text(json.dumps(resources, indent=2, sort_keys=True) + "\n")
    outputs = json.dumps(mask(rendered.outputs), indent=2, sort_keys=True)
    (out / "outputs.json").write_text(outputs + "\n")
    manifests = [
        {"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": None, **_sorted(o)}
        for o in rendered.manifests()
    ]
    if manifests:
        folder = out / "manifests"
        folder.mkdir()
        for obj in manifests:
            path = folder / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            if path.exists():
                raise RuntimeError(f"two objects would be written to {path}")
            path.write_text(yaml.safe_dump(obj, sort_keys=False))
    files = out / "files"
    for relative, text in rendered.files().items():
        target = files / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def write(rendered: Rendered, out: Path) -> None:
    """Replace ``out`` with this render: written aside, then renamed into place.

    Readers see the previous render or the new one, never a mix; a failure while
    writing leaves the previous render untouched.
    """
    check_out(out)
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        _write_tree(rendered, staging)
        staging.chmod(0o755)  # mkdtemp makes it 0700; a render folder is an ordinary one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(aside / out.name)
    try:
        staging.rename(out)
    except BaseException:
        if aside is not None:
            (aside / out.name).rename(out)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.render", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack", required=True, choices=STACKS)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--config", action="append", type=_pair, default=[], metavar="KEY=VALUE")
    parser.add_argument("--secret", action="append", type=_pair, default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--require-secrets",
        action="store_true",
        help="no placeholder for a missing required secret: fail as `pulumi up` would",
    )
    args = parser.parse_args(argv)
    try:
        check_out(args.out)
        # What `pulumi up` would deploy from this checkout: your own dev config if any.
        rendered = render(
            args.stack,
            overrides=args.config,
            secrets=args.secret,
            personal=True,
            placeholders=not args.require_secrets,
        )
    except (ConfigError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write(rendered, args.out)
    count = len(rendered.monitor.records)
    print(f"rendered {args.stack}: {count} resources -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

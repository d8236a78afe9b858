"""Evaluate the policy pack on an offline render, before a pull request.

    python -m policy.check DIR [--policy-pack-config FILE]

DIR is the output of ``python -m infra.render --stack S --out DIR``. Every
resource in DIR/resources.json goes through pulumi-policy's own analyzer
(the servicer that ``PolicyPack`` serves to the Pulumi CLI): one ``Analyze``
request per resource, then one ``AnalyzeStack`` request, built as the engine
builds them. Prints one line per violation:

    <level> <resource> | <policy> | <control> | <message>

and exits 1 on any mandatory violation, 0 otherwise, 2 on bad arguments.

The render masks every secret leaf as "[secret]"; those leaves reach the
policies as secrets whose value reads "[secret]". A Docker container's upload
list is masked whole when one file is secret; its non-secret files are restored
from DIR/files/<container>/, where the render wrote them.
``--policy-pack-config`` takes the same JSON as ``pulumi preview
--policy-pack-config`` (policy name -> level, or {"enforcementLevel": ..., ...}).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel, Policy
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.policy import _PolicyAnalyzerServicer

from .evidence import MASK
from .luna_policies import PACK_NAME, POLICIES

__all__ = ["Violation", "analyze", "main", "requests_from_render"]

VERSION = "0.1.0"  # kept equal to PulumiPolicy.yaml's version by tests/policy


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    urn: str
    message: str

    @property
    def mandatory(self) -> bool:
        return self.level == "mandatory"

    @property
    def resource(self) -> str:
        return self.urn.rsplit("::", 1)[-1] if self.urn else "(stack)"

    def line(self) -> str:
        framework = _POLICY[self.policy].framework
        where = f"{framework.name} {framework.reference}" if framework else "-"
        return f"{self.level.upper()} {self.resource} | {self.policy} | {where} | {self.message}"


_POLICY: dict[str, Policy] = {p.name: p for p in POLICIES}
_LEVEL = {proto.ADVISORY: "advisory", proto.MANDATORY: "mandatory"}


def _wire(value: Any) -> Any:
    """A render value in the engine's wire form: "[secret]" leaves become secrets."""
    if value == MASK:
        return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": MASK}
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    json_format.ParseDict(value, message)
    return message


def _options(r: dict[str, Any]) -> proto.AnalyzerResourceOptions:
    return proto.AnalyzerResourceOptions(
        protect=bool(r.get("protect")),
        deleteBeforeReplace=bool(r.get("delete_before_replace")),
        deleteBeforeReplaceDefined=True,
        parent=r.get("parent") or "",
    )


def _restore_uploads(r: dict[str, Any], files: Path) -> dict[str, Any]:
    inputs = dict(r.get("inputs") or {})
    uploads = inputs.get("uploads") or []
    container = inputs.get("name")
    if not (uploads and isinstance(container, str) and all(_masked(u) for u in uploads)):
        return inputs
    folder = files / container
    if not folder.is_dir():
        return inputs
    inputs["uploads"] = [
        {"file": "/" + str(p.relative_to(folder)), "content": p.read_text()}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]
    return inputs


def _masked(upload: Any) -> bool:
    return isinstance(upload, dict) and upload.get("content") == MASK and upload.get("file") == MASK


def requests_from_render(
    resources: list[dict[str, Any]], files: Path | None = None
) -> tuple[list[proto.AnalyzeRequest], proto.AnalyzeStackRequest]:
    """Engine-shaped requests for every custom resource of a render (resources.json rows)."""
    singles, stack = [], []
    for r in resources:
        if not r.get("custom"):
            continue  # components never reach a policy pack
        inputs = _restore_uploads(r, files) if files else r.get("inputs") or {}
        props = _struct(_wire(inputs))
        # The engine describes a resource alike to both calls; the stack one adds its place.
        described = {
            "type": r["type"],
            "properties": props,
            "urn": r["urn"],
            "name": r["name"],
            "options": _options(r),
        }
        singles.append(proto.AnalyzeRequest(**described))
        stack.append(
            proto.AnalyzerResource(
                **described,
                parent=r.get("parent") or "",
                dependencies=r.get("dependencies") or [],
            )
        )
    return singles, proto.AnalyzeStackRequest(resources=stack)


def analyze(
    singles: Sequence[proto.AnalyzeRequest],
    stack: proto.AnalyzeStackRequest,
    config: dict[str, Any] | None = None,
    not_judged: list[str] | None = None,
) -> list[Violation]:
    """Run the pack's own analyzer servicer on the requests, as the CLI would.

    Policies that declare themselves not applicable are appended to ``not_judged``."""
    # pulumi-policy's servicer is untyped.
    servicer: Any = _PolicyAnalyzerServicer(PACK_NAME, VERSION, POLICIES, EnforcementLevel.ADVISORY)
    servicer.Configure(_configure_request(config or {}), None)
    found: list[Violation] = []
    for request in singles:
        for d in servicer.Analyze(request, None).diagnostics:
            found.append(_violation(d, request.urn))
    answer = servicer.AnalyzeStack(stack, None)
    for d in answer.diagnostics:
        found.append(_violation(d, d.urn))
    if not_judged is not None:
        not_judged += [f"{n.policy_name}: {n.reason}" for n in answer.not_applicable]
    return found


def _violation(d: Any, urn: str) -> Violation:
    # The servicer prefixes the policy's description; the line keeps what is specific.
    message = d.message.split("\n", 1)[-1].replace("\n", " ")
    return Violation(
        d.policyName, _LEVEL.get(d.enforcementLevel, "advisory"), d.urn or urn, message
    )


def _configure_request(config: dict[str, Any]) -> proto.ConfigureAnalyzerRequest:
    """Like the CLI, send every policy its level; a level missing from the config is
    the policy's own (Configure would otherwise read an absent level as advisory)."""
    request = proto.ConfigureAnalyzerRequest()
    for policy in POLICIES:
        entry = config.get(policy.name, {})
        if isinstance(entry, str):
            entry = {"enforcementLevel": entry}
        level = (
            entry.get("enforcementLevel")
            or (policy.enforcement_level or EnforcementLevel.ADVISORY).value
        )
        properties = {k: v for k, v in entry.items() if k != "enforcementLevel"}
        schema = policy.config_schema.properties if policy.config_schema else {}
        if "secretsMasked" in schema:
            # A render's secret leaves read "[secret]": policies that can tell say so.
            properties.setdefault("secretsMasked", True)
        request.policyConfig[policy.name].CopyFrom(
            proto.PolicyConfig(enforcementLevel=_ENUM[level], properties=_struct(properties))
        )
    return request


_ENUM = {
    "advisory": proto.ADVISORY,
    "mandatory": proto.MANDATORY,
    "remediate": proto.REMEDIATE,
    "disabled": proto.DISABLED,
}


class UsageError(Exception):
    pass


def _load(directory: Path, config_file: Path | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    path = directory / "resources.json"
    if not path.is_file():
        raise UsageError(f"{directory}: no resources.json (expected the --out of infra.render)")
    try:
        resources = json.loads(path.read_text())
    except ValueError as error:
        raise UsageError(f"{path}: not JSON ({error})") from None
    if not isinstance(resources, list):
        raise UsageError(f"{path}: expected a list of resources")
    config: dict[str, Any] = {}
    if config_file is not None:
        try:
            config = json.loads(config_file.read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"--policy-pack-config {config_file}: {error}") from None
        unknown = sorted(set(config) - set(_POLICY))
        bad = [k for k, v in config.items() if _level_of(v) not in _ENUM]
        if unknown or bad or not isinstance(config, dict):
            raise UsageError(
                f"--policy-pack-config {config_file}: unknown policies {unknown} or levels "
                f"for {bad}; policies: {', '.join(sorted(_POLICY))}; levels: "
                f"{', '.join(_ENUM)}"
            )
    return resources, config


def _level_of(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        return str(entry.get("enforcementLevel", "advisory"))
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policy.check", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument("--policy-pack-config", type=Path, default=None, metavar="FILE")
    try:
        args = parser.parse_args(argv)
        resources, config = _load(args.directory, args.policy_pack_config)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    singles, stack = requests_from_render(resources, args.directory / "files")
    not_judged: list[str] = []
    violations = analyze(singles, stack, config, not_judged)
    for v in violations:
        print(v.line())
    for note in not_judged:
        print(f"not judged offline: {note}", file=sys.stderr)
    mandatory = sum(v.mandatory for v in violations)
    print(
        f"{len(singles)} resources, {len(POLICIES)} policies: {mandatory} mandatory and "
        f"{len(violations) - mandatory} advisory violations",
        file=sys.stderr,
    )
    return 1 if mandatory else 0


if __name__ == "__main__":
    sys.exit(main())

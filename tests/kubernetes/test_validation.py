"""The rendered manifests pass the real validators: kubernetes-validate and checkov."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes_validate import utils as kv

from tests.kubernetes.conftest import KUBE_STACKS, KUBERNETES_VERSION, ident, manifests
from tests.support.tools import need

MAX_SKIPPED_IDS = 5

# kubernetes-validate reads and parses the kind's JSON schema file on every
# validate() call (kubernetes_validate/utils.py schema_contents); the files do not
# change during a run, so each is parsed once. It validates exactly as before.
kv.schema_contents = functools.cache(kv.schema_contents)


def _floats(value: Any, path: str = "") -> list[str]:
    if isinstance(value, float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _floats(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _floats(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_every_manifest_is_valid_against_the_pinned_schema(stack: str) -> None:
    objects = manifests(stack)
    assert len(objects) > 40, f"{stack}: only {len(objects)} objects"
    errors = []
    for obj in objects:
        if obj["apiVersion"].startswith(("postgresql.cnpg.io/", "barmancloud.cnpg.io/")):
            continue  # their own CRD schemas check these: tests/kubernetes/test_cnpg.py
        try:
            kv.validate(obj, KUBERNETES_VERSION, strict=True)
        except kv.ValidationError as error:
            errors.append(f"{ident(obj)}: {error.caught.message} at {list(error.caught.path)}")
    assert errors == [], f"{stack}: {len(errors)} schema errors:\n" + "\n".join(errors)


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_manifests_hold_ints_not_floats_and_resolved_names(stack: str) -> None:
    for obj in manifests(stack):
        assert _floats(obj) == [], f"{ident(obj)} has floats at {_floats(obj)}"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", obj["metadata"]["name"] or ""), (
            f"{ident(obj)}: unresolved or invalid name"
        )
        if obj["kind"] != "Namespace":
            # The log collector's objects live in its own namespace (collector.py).
            assert obj["metadata"]["namespace"] in (f"luna-{stack}", f"luna-{stack}-logging"), (
                f"{ident(obj)}: namespace"
            )


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_secret_values_are_masked(stack: str) -> None:
    for obj in manifests(stack):
        if obj["kind"] == "Secret":
            values = obj.get("stringData") or {}
            assert values, f"{ident(obj)} has no stringData"
            for key, value in values.items():
                assert value == "[secret]", f"{ident(obj)}[{key}] is not masked"


def _documents(text: str) -> list[dict[str, Any]]:
    """checkov prints one JSON document per directory (or a list of them)."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while index < len(text.rstrip()):
        value, end = decoder.raw_decode(text, index)
        found += value if isinstance(value, list) else [value]
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return found


@pytest.mark.slow  # checkov, a real scanner, over every manifest: about 6 s
def test_checkov_passes_every_check_with_few_reasoned_skips(
    manifest_dirs: dict[str, Path],
) -> None:
    """One checkov run over both stacks (about 20 s), so one test owns it."""
    checkov = need("checkov")
    folders = [arg for folder in manifest_dirs.values() for arg in ("-d", str(folder))]
    run = subprocess.run(
        [
            checkov,
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
            *folders,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    reports = _documents(run.stdout)
    assert reports, f"checkov printed no report: {run.stderr[-2000:]}"
    failed = [
        f"{c['check_id']} {c['file_abs_path']} {c['resource']}: {c['check_name']}"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [], "checkov failed:\n" + "\n".join(failed)
    passed = sum(report["summary"]["passed"] for report in reports)
    assert passed > 2000, f"checkov ran only {passed} checks on staging and prod"
    skipped = sum(report["summary"]["skipped"] for report in reports)
    # --quiet leaves skipped checks out of the report: their IDs and reasons are
    # read from the annotations checkov honoured (one per skip).
    ids = {check for stack in KUBE_STACKS for _, check, _ in _skips(stack)}
    assert skipped > 0, "checkov honoured none of the skip annotations"
    assert len(ids) <= MAX_SKIPPED_IDS, f"{len(ids)} distinct skipped checks: {sorted(ids)}"


def _skips(stack: str) -> list[tuple[str, str, str]]:
    """(object, check ID, reason) of every checkov skip annotation."""
    found = []
    for obj in manifests(stack):
        for key, value in (obj["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                found.append((ident(obj), check, reason))
    return found


@pytest.mark.parametrize("stack", KUBE_STACKS)
def test_skip_annotations_sit_on_the_object_with_a_reason(stack: str) -> None:
    for obj, check, reason in _skips(stack):
        assert re.fullmatch(r"CKV2?_K8S_\d+", check), f"{obj}: bad skip {check!r}"
        assert len(reason) > 20, f"{obj}: {check} is skipped without a reason"

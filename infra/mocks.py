"""Pulumi mocks that behave like the engine where it matters.

* Outputs a provider marks secret (``additionalSecretOutputs``, e.g.
  ``RandomPassword.result``) come back secret, as the engine makes them.
* Outputs the engine or provider would compute are filled in: image ids,
  job exit codes, generated keys, Kubernetes ``metadata.name``.
* Every registration is recorded with its parent, dependencies and resource
  options, which ``MockResourceArgs`` does not carry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc
from pulumi.runtime.sync_await import _sync_await

__all__ = ["LunaMocks", "Record", "RecordingMonitor", "mask", "unwrap"]

MASK = "[secret]"


@dataclass
class Record:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    dependencies: list[str]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    provider: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    """``create``/``update``/``delete`` timeouts the engine waits for this resource."""
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    """Input name -> URNs its value came from. The engine replaces a dependant of a
    delete-before-replace resource only through these, never through depends_on."""


def _fake(kind: str, name: str, length: int = 24) -> str:
    return f"mock-{kind}-" + hashlib.sha256(name.encode()).hexdigest()[:length]


class LunaMocks(pulumi.runtime.Mocks):
    """``exit_codes`` makes named one-shot jobs fail, as a failed migration would.

    A pulumi-command ``Command`` whose script exits non-zero fails its own create
    with Go's ``exec.ExitError`` text (pulumi/pulumi-command provider/pkg/provider/
    local/commandController.go runs the script; ``exit status N`` comes from Go's
    os/exec), so the mock fails the registration the same way.
    """

    def __init__(self, exit_codes: dict[str, int] | None = None) -> None:
        super().__init__()
        self.exit_codes = exit_codes or {}

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        typ, name = args.typ, args.name
        if typ == "random:index/randomPassword:RandomPassword":
            length = int(state.get("length", 32))
            state["result"] = (_fake("password", name, 64) * 2)[:length]
        elif typ == "random:index/randomId:RandomId":
            size = int(state.get("byteLength", 8))
            # Drawn anew when the keepers change (the resource is replaced).
            seed = f"id-{name}-{json.dumps(state.get('keepers'), sort_keys=True, default=str)}"
            state["hex"] = hashlib.sha256(seed.encode()).hexdigest()[: 2 * size]
        elif typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = (
                "sha256:" + hashlib.sha256(str(state.get("name")).encode()).hexdigest()
            )
            state["repoDigest"] = f"{state.get('name')}@{state['imageId']}"
        elif typ == "command:local:Command":
            code = self.exit_codes.get(name, 0)
            if code:
                raise RuntimeError(f"{name}: exit status {code}")
            state["stdout"], state["stderr"] = "", ""
        elif typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyPem"] = f"MOCK PRIVATE KEY PEM {_fake('key', name)}\n"
            state["publicKeyPem"] = f"MOCK PUBLIC KEY PEM {_fake('pub', name)}\n"
            state["privateKeyPemPkcs8"] = f"MOCK PKCS8 PRIVATE KEY PEM {_fake('key8', name)}\n"
        elif typ in (
            "tls:index/selfSignedCert:SelfSignedCert",
            "tls:index/locallySignedCert:LocallySignedCert",
        ):
            state["certPem"] = f"MOCK CERTIFICATE PEM {_fake('cert', name)}\n"
        elif typ == "tls:index/certRequest:CertRequest":
            state["certRequestPem"] = f"MOCK CERTIFICATE REQUEST PEM {_fake('csr', name)}\n"
        elif typ.startswith("kubernetes:") and args.custom:
            # The provider auto-names objects that have no metadata.name.
            meta = dict(state.get("metadata") or {})
            meta.setdefault("name", f"{name}-{_fake('sfx', name, 8)[-8:]}")
            state["metadata"] = meta
        return (f"{name}_id" if args.custom else None), state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(mocks.MockMonitor):
    """A mock monitor that records resource options and applies secret outputs."""

    def __init__(self, mock: pulumi.runtime.Mocks) -> None:
        super().__init__(mock)
        self.records: dict[str, Record] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        registration = self.resources[response.urn]
        secret_outputs = set(request.additionalSecretOutputs)
        if secret_outputs:
            state = {
                k: rpc.wrap_rpc_secret(v) if k in secret_outputs and not rpc.is_rpc_secret(v) else v
                for k, v in registration.state.items()
            }
            registration = registration._replace(state=state)
            self.resources[response.urn] = registration
            response.object.CopyFrom(_sync_await(rpc.serialize_properties(state, {})))
        self.records[response.urn] = Record(
            urn=response.urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=request.parent,
            dependencies=sorted(set(request.dependencies)),
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            delete_before_replace=bool(request.deleteBeforeReplace),
            provider=request.provider,
            inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
            outputs=dict(registration.state),
            property_dependencies={
                key: sorted(set(deps.urns)) for key, deps in request.propertyDependencies.items()
            },
            custom_timeouts={
                op: getattr(request.customTimeouts, op)
                for op in ("create", "update", "delete")
                if getattr(request.customTimeouts, op)
            },
        )
        return response


def unwrap(value: Any) -> Any:
    """Drop secret wrappers and turn integral floats (the wire's numbers) into ints."""
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def mask(value: Any) -> Any:
    """Like :func:`unwrap`, but every secret leaf becomes ``"[secret]"`` (shape kept)."""
    if rpc.is_rpc_secret(value):
        return _mask_leaves(unwrap(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return unwrap(value)


def _mask_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_leaves(v) for v in value]
    return MASK

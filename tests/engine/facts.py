"""What each provider does with a resource on the next ``pulumi up``: facts from source.

Every fact names the upstream file it was read from. Versions: pulumi/pulumi
(pkg/v3.259), pulumi-kubernetes v4.32+, kreuzwerker/terraform-provider-docker
v4.5.0 (bridged by pulumi-docker 5.x), moby/moby (docker 29),
terraform-provider-random and -tls (bridged by pulumi-random 4, pulumi-tls 5),
pulumi-command 1.x.

A provider is modelled by two functions:
- ``read_back(inputs)``: the state the provider stores after a create, which the
  next diff compares against;
- ``diff(old, new)``: which properties changed, which of them force a
  replacement, and which are recorded without ever reaching the running thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

__all__ = [
    "CNPG_RELOAD_LABEL",
    "DaemonConfig",
    "Diff",
    "cnpg_watches",
    "diff",
    "docker_name_conflict",
    "go_duration_string",
    "nano_to_decimal_string",
    "read_back",
]


@dataclass(frozen=True)
class Diff:
    changed: frozenset[str] = frozenset()
    replace: frozenset[str] = frozenset()
    """Changed properties that force a replacement."""
    unapplied: frozenset[str] = frozenset()
    """Changed properties the provider writes to its state but never applies."""
    delete_before_replace: bool = False
    """The provider's own preference (the resource option overrides it)."""


@dataclass(frozen=True)
class DaemonConfig:
    """The Docker host's daemon.json as far as logging goes."""

    default_driver: str = "json-file"
    log_opts: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------- docker
# kreuzwerker/terraform-provider-docker v4.5.0,
# internal/provider/resource_docker_container.go (schema), wire (Pulumi) names.
DOCKER_FORCE_NEW = frozenset(
    {
        "name", "image", "hostname", "domainname", "command", "entrypoints", "user", "dns",
        "dnsOpts", "dnsSearches", "publishAllPorts", "workingDir", "capabilities",
        "securityOpts", "runtime", "platform", "stopSignal", "stopTimeout", "mounts", "volumes",
        "ports", "hosts", "ulimits", "envs", "privileged", "devices", "deviceRequests", "labels",
        "shmSize", "logDriver", "logOpts", "networkMode", "networksAdvanced", "pidMode",
        "usernsMode", "uploads", "sysctls", "ipcMode", "groupAdds", "tty", "stdinOpen",
        "storageOpts", "gpus", "cpus", "cgroupnsMode", "cgroupParent", "readOnly",
    }
)  # fmt: skip
# resource_docker_container_funcs.go, resourceDockerContainerUpdate: one
# ContainerUpdate with these, sent when any of them changed.
DOCKER_APPLIED = frozenset(
    {"restart", "maxRetryCount", "cpuShares", "memory", "memoryReservation", "cpuSet",
     "memorySwap"}
)  # fmt: skip
# Not ForceNew, and resourceDockerContainerUpdate never sends them: a change is
# written to the state only.
DOCKER_UNAPPLIED = frozenset({"healthcheck", "tmpfs", "init", "cpuPeriod", "cpuQuota"})
# Schema attributes that are Computed: absent from the program, the state's value stands.
DOCKER_COMPUTED = frozenset(
    {"hostname", "command", "entrypoints", "securityOpts", "runtime", "platform", "stopSignal",
     "stopTimeout", "envs", "labels", "shmSize", "logDriver", "healthcheck", "ipcMode", "init",
     "exitCode", "containerLogs", "bridge", "networkDatas"}
)  # fmt: skip
_DOCKER_SETS = frozenset(
    {"envs", "labels", "securityOpts", "mounts", "networksAdvanced", "uploads", "devices"}
)


def nano_to_decimal_string(nano: int) -> str:
    """helpers.go ``nanoInt64ToDecimalString``, on exact rationals (Go's big.Rat).

    ``if nanoInt64 == 0 { return "0" }``; ``str := rat.FloatString(9)``;
    ``if strings.Count(str, "0") == 9 { return rat.FloatString(1) }``;
    ``return strings.TrimRight(str, "0")``.
    """
    if nano == 0:
        return "0"
    rat = Fraction(nano, 10**9)

    def float_string(places: int) -> str:
        # big.Rat.FloatString rounds the last digit half away from zero.
        scaled = rat * 10**places
        whole = int(scaled)
        if (scaled - whole) * 2 >= 1:
            whole += 1
        digits = str(whole).rjust(places + 1, "0")
        return f"{digits[:-places]}.{digits[-places:]}"

    text = float_string(9)
    if text.count("0") == 9:
        return float_string(1)
    return text.rstrip("0")


def _go_parse_duration(text: str) -> int:
    """Seconds in a Go duration such as ``90s``, ``1m30s``, ``1h0m0s`` (whole seconds)."""
    parts = re.findall(r"(\d+)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a whole-second Go duration: {text!r}")
    scale = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * scale[u] for n, u in parts)


def go_duration_string(seconds: int) -> str:
    """Go's ``time.Duration.String()`` (src/time/time.go) for whole seconds."""
    if seconds == 0:
        return "0s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    return f"{m}m{s}s" if m else f"{s}s"


def _docker_container_read_back(inputs: Mapping[str, Any], daemon: DaemonConfig) -> dict[str, Any]:
    """resource_docker_container_funcs.go ``resourceDockerContainerRead``, plus the daemon.

    Read back as written (so not modelled): ``image`` (``container.Image`` when the
    program gives a ``sha256:`` id, as this one does), ``mounts`` (HostConfig.Mounts,
    what create sent; ``volume_options`` only when configured), ``capabilities``,
    ``security_opts``, ``tmpfs``, ``init``, ``restart``, ``network_mode`` ("bridge",
    the schema default). Never read back: ``labels``, ``env``, ``upload``, and
    ``networks_advanced`` unless the state has none (so Docker's extra aliases,
    such as the container's short id, never become a diff).
    """
    state = dict(inputs)
    if state.get("cpus") not in (None, ""):
        # Read: d.Set("cpus", nanoInt64ToDecimalString(container.HostConfig.NanoCPUs)),
        # after create's decimal string -> NanoCPUs.
        nano = round(Fraction(str(state["cpus"])) * 10**9)
        state["cpus"] = nano_to_decimal_string(nano)
    health = state.get("healthcheck")
    if health:
        # flattenHealthcheck: durations through time.Duration.String().
        state["healthcheck"] = {
            k: go_duration_string(_go_parse_duration(v))
            if k in ("interval", "timeout", "startPeriod", "startInterval") and v
            else v
            for k, v in health.items()
        }
    memory = state.get("memory")
    if memory and not state.get("memorySwap"):
        # moby daemon/daemon_unix.go adaptContainerSettings: MemorySwap = 2 * Memory
        # when only memory is set; the provider reads memory_swap back (in MiB).
        state["memorySwap"] = 2 * int(memory)
    if "logOpts" in state:
        # moby daemon/logs.go mergeAndVerifyLogConfig: the daemon's log-opts fill the
        # keys a container leaves unset when its driver is the daemon's default;
        # loggerutils/cache MergeDefaultLogConfig adds `cache-*` ones for any driver.
        # The provider reads LogConfig.Config back when log_opts is configured.
        opts = dict(state.get("logOpts") or {})
        driver = state.get("logDriver") or daemon.default_driver
        for key, value in daemon.log_opts.items():
            if key not in opts and (driver == daemon.default_driver or key.startswith("cache-")):
                opts[key] = value
        state["logOpts"] = opts
    return state


def _same(key: str, a: Any, b: Any) -> bool:
    if a in (None, [], {}, "") and b in (None, [], {}, ""):
        return True
    if key in _DOCKER_SETS and isinstance(a, list) and isinstance(b, list):
        # TypeSet: order is not a change.
        return sorted(map(repr, a)) == sorted(map(repr, b))
    return bool(a == b)


def _docker_container_diff(
    state: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    changed = set()
    for key in set(state) | set(new):
        if key not in new and key in DOCKER_COMPUTED:
            continue
        if not _same(key, state.get(key), new.get(key)):
            changed.add(key)
    return (
        frozenset(changed),
        frozenset(changed & DOCKER_FORCE_NEW),
        frozenset(changed & DOCKER_UNAPPLIED),
    )


# ----------------------------------------------------------------- kubernetes
# pulumi-kubernetes provider/pkg/provider/diff.go: metadataForceNewProperties and
# the per-kind table (paths below .spec unless they start with a dot).
_K8S_FORCE_NEW: dict[str, tuple[str, ...]] = {
    "Deployment": (".spec.selector",),
    "DaemonSet": (".spec.selector",),
    "StatefulSet": (
        ".spec.podManagementPolicy", ".spec.revisionHistoryLimit", ".spec.selector",
        ".spec.serviceName", ".spec.volumeClaimTemplates",
    ),
    "Job": (".spec.completions", ".spec.parallelism", ".spec.selector", ".spec.template"),
    "Service": (".spec.clusterIP",),
    "PersistentVolumeClaim": (
        ".spec.accessModes", ".spec.selector", ".spec.storageClassName", ".spec.volumeName",
    ),
    # ConfigMaps and Secrets: data is immutable unless the provider runs with
    # enableConfigMapMutable / enableSecretMutable (both false by default in 4.x;
    # provider.go Configure reads kubernetes:config:enableSecretMutable, then the
    # PULUMI_K8S_ENABLE_SECRET_MUTABLE variable). See _force_new below.
    "Secret": (".type", ".stringData", ".data"),
    "ConfigMap": (".data", ".binaryData"),
}  # fmt: skip
# diff.go forceNewProperties: ``if clients.IsSecret(obj) && (!k.enableSecretMutable ||
# clients.IsImmutable(obj))`` adds .type, .stringData and .data; otherwise the core
# table's Secret entry applies, ``.type`` alone.
_K8S_MUTABLE_SECRET = (".type",)
_K8S_METADATA = (".metadata.name", ".metadata.namespace")
# Kinds the table does not name, custom resources among them (CloudNativePG's
# Cluster and ScheduledBackup), are replaced for metadata.name/namespace only
# (diff.go, forceNewProperties: the per-kind lookup misses, metadata stays); any
# spec change is a patch the operator reconciles.


def _paths(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_paths(v, f"{prefix}.{k}"))
        return out
    return {prefix: value}


def _truthy(value: Any) -> bool:
    """provider.go Configure: ``enabled == "true"`` on the config variable (the
    engine passes a provider's bool inputs as their JSON text)."""
    return value is True or value == "true"


def _force_new(kind: str, new: Mapping[str, Any], provider: Mapping[str, Any]) -> tuple[str, ...]:
    if (
        kind == "Secret"
        and _truthy(provider.get("enableSecretMutable"))
        and not new.get("immutable")
    ):
        return _K8S_METADATA + _K8S_MUTABLE_SECRET
    if (
        kind == "ConfigMap"
        and _truthy(provider.get("enableConfigMapMutable"))
        and not new.get("immutable")
    ):
        return _K8S_METADATA
    return _K8S_METADATA + _K8S_FORCE_NEW.get(kind, ())


def _kubernetes_diff(
    kind: str, old: Mapping[str, Any], new: Mapping[str, Any], provider: Mapping[str, Any]
) -> Diff:
    a, b = _paths(dict(old)), _paths(dict(new))
    changed = {p for p in set(a) | set(b) if a.get(p) != b.get(p)}
    force = _force_new(kind, new, provider)
    replace = {p for p in changed if any(p == f or p.startswith(f + ".") for f in force)}
    # provider.go: delete-before-replace when the object is explicitly named and
    # keeps its name and namespace (two objects cannot share a name).
    old_name = (old.get("metadata") or {}).get("name")
    new_name = (new.get("metadata") or {}).get("name")
    dbr = bool(replace) and new_name is not None and old_name == new_name
    return Diff(frozenset(changed), frozenset(replace), frozenset(), dbr)


# ------------------------------------------------------- kubernetes provider
def _kubernetes_provider_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> Diff:
    """pulumi-kubernetes provider/pkg/provider/provider.go ``DiffConfig``.

    - ``clusterIdentifier`` changed (set on both sides): replace.
    - ``clusterIdentifier`` set and unchanged: never replace ("we ignore
      replacements when the identifier is unchanged"), whatever else changed.
    - Otherwise a change of the kubeconfig's *active cluster* (``kubeconfig``,
      ``context`` or ``cluster``; getActiveClusterFromConfig) replaces. The model
      reads the active cluster from the ``cluster`` key of the inputs as the
      scenario gives it (the renders carry no kubeconfig).

    The engine then replaces every resource whose provider was replaced
    (pulumi/pulumi pkg/resource/deploy/step_generator.go ``providerChanged``:
    "If the provider field changes ... ReplaceKeys: provider").
    """
    changed = frozenset(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not changed:
        return Diff()
    ident = "clusterIdentifier"
    if old.get(ident) and new.get(ident):
        if old[ident] != new[ident]:
            return Diff(changed, frozenset({ident}))
        return Diff(changed)
    moved = old.get("cluster") != new.get("cluster")
    return Diff(changed, changed & {"kubeconfig", "context", "cluster"} if moved else frozenset())


# ------------------------------------------------------------- CloudNativePG
CNPG_RELOAD_LABEL = "cnpg.io/reload"
"""cloudnative-pg pkg/utils/labels_annotations.go ``WatchedLabelName``."""


def cnpg_watches(secret: Mapping[str, Any]) -> bool:
    """Whether the operator reconciles the Cluster when this Secret changes.

    cloudnative-pg internal/controller/cluster_predicates.go: ``secretsPredicate``
    passes a Secret's create, update and delete events only when
    ``isOwnedByClusterOrSatisfiesPredicate``: owned by the Cluster (ours are
    not: Pulumi creates them), or ``hasReloadLabelSet`` (the label key present,
    any value). Otherwise a rotated password waits for an unrelated reconcile.
    """
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return CNPG_RELOAD_LABEL in labels


# ------------------------------------------------------------- docker daemon
def docker_name_conflict(name: str) -> str:
    """moby daemon/names.go ``reserveName``: a second container of the same name is
    refused with ``errdefs.Conflict``, whatever state the first one is in."""
    return (
        f'Conflict. The container name "/{name}" is already in use by container. '
        "You have to remove (or rename) that container to be able to reuse that name."
    )


# ---------------------------------------------------------------------- other
# terraform-provider-random resource_password.go: every argument RequiresReplace.
# terraform-provider-tls: private key and self-signed certificate arguments all
# RequiresReplace (resource_private_key.go, resource_self_signed_cert.go); a
# certificate inside early_renewal_hours is replaced by ModifyPlan (common_cert.go).
_ALL_FORCE_NEW = ("random:", "tls:", "docker:index/network:Network", "docker:index/volume:Volume")
# pulumi-command provider/pkg/provider/local/command.go: `triggers` replaces, other
# changes update (running `update`, or `create` again when `update` is unset).
_COMMAND_REPLACE = frozenset({"triggers"})
# terraform-provider-docker resource_docker_image.go: `name` forces a new image.
_IMAGE_REPLACE = frozenset({"name", "pullTriggers", "triggers"})


def read_back(type_: str, inputs: Mapping[str, Any], daemon: DaemonConfig) -> dict[str, Any]:
    """The state the provider stores after creating ``inputs``."""
    if type_ == "docker:index/container:Container":
        return _docker_container_read_back(inputs, daemon)
    return dict(inputs)


def diff(
    type_: str,
    state: Mapping[str, Any],
    new: Mapping[str, Any],
    provider: Mapping[str, Any] | None = None,
) -> Diff:
    """What the provider reports for ``new`` inputs against the stored ``state``.

    ``provider``: the inputs of the provider resource that manages it (its
    configuration: pulumi-kubernetes' ``enableSecretMutable`` changes the answer).
    """
    if type_ == "docker:index/container:Container":
        changed, replace, unapplied = _docker_container_diff(state, new)
        return Diff(changed, replace, unapplied - replace if not replace else frozenset())
    if type_ == "pulumi:providers:kubernetes":
        return _kubernetes_provider_diff(state, new)
    if type_.startswith("kubernetes:") and not type_.startswith("pulumi:"):
        return _kubernetes_diff(type_.rsplit(":", 1)[-1], state, new, provider or {})
    changed = frozenset(k for k in set(state) | set(new) if state.get(k) != new.get(k))
    if type_.startswith(_ALL_FORCE_NEW):
        return Diff(changed, changed)
    if type_ == "command:local:Command":
        return Diff(changed, changed & _COMMAND_REPLACE)
    if type_ == "docker:index/remoteImage:RemoteImage":
        return Diff(changed, changed & _IMAGE_REPLACE)
    # Providers (pulumi:providers:*) and anything else: updated in place.
    return Diff(changed, frozenset())

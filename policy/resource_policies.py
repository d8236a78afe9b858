"""Policies that judge one resource at a time (the engine's ``Analyze`` call).

Each validator reads only the resource's inputs (policy/evidence.py) and reports
what is wrong in words that name the offending value, never a secret: URLs are
shown with their credentials cut out.
"""

from __future__ import annotations

import re

from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from . import capabilities as cap
from .controls import control, resource_policy
from .evidence import (
    DATA_PORTS,
    DOCKER_CONTAINER,
    MASK,
    container_specs,
    env_pairs,
    get,
    ilm_policies,
    image_refs,
    items,
    k8s_labels,
    pod_spec,
    service_of,
    stack_of,
    strings,
)

__all__ = ["RESOURCE_POLICIES", "redact"]

DATA_SERVICES = frozenset({"database", "cache", "elasticsearch"})
"""Services that hold data: never reachable from outside the stack."""

# Exceptions to a read-only root filesystem, each with its reason. On Docker there is
# one more, structural: a container that ships files through `uploads` needs a writable
# root, because Docker copies them onto the root filesystem before
# start and refuses on a read-only one (components/platforms/docker/__init__.py).
WRITABLE_ROOT: dict[str, str] = {
    "elasticsearch": "writes its keystore and generated config under its install dir",
    "kibana": "writes optimizer bundles under its install dir",
    "logstash": "writes its settings and queue under its install dir",
}
# Exceptions to running as a non-root user, each with its reason.
ROOT_USER: dict[str, str] = {
    "log-collector": "reads the node's /var/log/pods, which only root may read",
}
# Docker services whose image's own USER is relied on (no `user` input).
IMAGE_USER: dict[str, str] = {
    "proxy": "nginxinc/nginx-unprivileged: its Dockerfile ends with USER $UID (101)",
}

_CREDENTIALS = re.compile(r"(://)[^/\s@'\"]+@")


def redact(text: str) -> str:
    """A URL without its userinfo, short enough for one line."""
    cut = _CREDENTIALS.sub(r"\1***@", text)
    return cut if len(cut) <= 120 else cut[:117] + "..."


# --- HIPAA 164.312(e)(1): transmission security ---------------------------------
_PG_URL = re.compile(r"postgres(?:ql)?://[^\s'\"`]+")
_WEAK_SSLMODE = re.compile(r"sslmode=(disable|allow|prefer)\b")
_REDIS_URL = re.compile(r"\bredis://[^\s'\"`]*")
_ES_PLAIN = re.compile(r"\bhttp://elasticsearch\b[^\s'\"`]*")


def _postgres_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for name, value in env_pairs(args.resource_type, args.props):
        if name == "PGSSLMODE" and value in ("disable", "allow", "prefer"):
            report(f"PGSSLMODE={value} lets libpq connect in clear text", None)
    for text in strings(args.props):
        for weak in _WEAK_SSLMODE.finditer(text):
            report(f"sslmode={weak.group(1)} allows a clear-text connection", None)
        for url in _PG_URL.findall(text):
            if "sslmode=" not in url:
                report(
                    f"{redact(url)} has no sslmode (libpq and Prisma default to prefer, "
                    "which falls back to clear text)",
                    None,
                )


def _redis_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for text in strings(args.props):
        for url in _REDIS_URL.findall(text):
            report(f"{redact(url)} is clear text; use rediss://", None)


def _elasticsearch_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for text in strings(args.props):
        for url in _ES_PLAIN.findall(text):
            report(f"{redact(url)} is clear text; use https:// with the stack's CA", None)


_SERVER_BLOCK = re.compile(r"\bserver\s*\{")
_LISTEN_SSL = re.compile(r"^\s*listen\s+[^;]*\bssl\b", re.MULTILINE)
_SSL_PROTOCOLS = re.compile(r"^\s*ssl_protocols\s+([^;]+);", re.MULTILINE)
_HSTS = re.compile(r"Strict-Transport-Security\s+\"?max-age=(\d+)", re.IGNORECASE)
HSTS_MIN_SECONDS = 31536000
_UPSTREAM_SERVER = re.compile(r"^\s*server\s+([^\s;{]+)[^;{\n]*;", re.MULTILINE)


def _loopback_front(text: str) -> bool:
    """A TLS front inside a pod (components/configs/tls_front.py): no server_name,
    and every upstream server is on the loopback. No browser reaches it (the
    edge does), so HSTS is the edge's header, not its."""
    servers = _UPSTREAM_SERVER.findall(text)
    return (
        "server_name" not in text
        and bool(servers)
        and all(s.startswith("127.0.0.1:") for s in servers)
    )


def _edge_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    stack = stack_of(args.urn)
    for text in strings(args.props):
        if not (_SERVER_BLOCK.search(text) and "listen" in text):
            continue
        if not _LISTEN_SSL.search(text):
            if stack in ("staging", "prod"):
                report(f"nginx config serves no TLS (no `listen ... ssl`) in {stack}", None)
            continue
        protocols = _SSL_PROTOCOLS.findall(text)
        if not protocols:
            report("nginx serves TLS without ssl_protocols (defaults include TLSv1/1.1)", None)
        for line in protocols:
            weak = set(line.split()) - {"TLSv1.2", "TLSv1.3"}
            if weak:
                report(f"ssl_protocols allows {' '.join(sorted(weak))}; only TLSv1.2+", None)
        ages = [int(a) for a in _HSTS.findall(text)]
        if not ages and _loopback_front(text):
            continue
        if not ages:
            report("nginx serves TLS without a Strict-Transport-Security header", None)
        elif min(ages) < HSTS_MIN_SECONDS:
            report(f"HSTS max-age={min(ages)} is under one year ({HSTS_MIN_SECONDS})", None)


# --- HIPAA 164.312(a)(1): access control --------------------------------------
def _no_public_data(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props, typ = args.props, args.resource_type
    if typ == DOCKER_CONTAINER:
        ports = items(get(props, "ports"))
        service = service_of(typ, props)
        data = service in DATA_SERVICES or any(
            int(get(p, "internal") or 0) in DATA_PORTS for p in ports
        )
        for port in ports if data else []:
            report(
                f"data service {service or '?'} publishes container port "
                f"{int(get(port, 'internal') or 0)} on host "
                f"{get(port, 'ip') or 'all interfaces'}:{int(get(port, 'external') or 0)}",
                None,
            )
    elif typ == "kubernetes:core/v1:Service":
        kind = get(props, "spec", "type") or "ClusterIP"
        exposed = kind in ("LoadBalancer", "NodePort") or items(get(props, "spec", "externalIPs"))
        selector = get(props, "spec", "selector") or {}
        target = selector.get("app.kubernetes.io/name", "") if selector else ""
        numbers = {
            int(n)
            for p in items(get(props, "spec", "ports"))
            for n in (get(p, "port"), get(p, "targetPort"))
            if isinstance(n, int | float)
        }
        if exposed and (target in DATA_SERVICES or numbers & DATA_PORTS):
            report(f"{kind} Service exposes data service {target or sorted(numbers)}", None)
    elif typ == "kubernetes:postgresql.cnpg.io/v1:Cluster":
        for extra in items(get(props, "spec", "managed", "services", "additional")):
            kind = get(extra, "serviceTemplate", "spec", "type")
            if kind in ("LoadBalancer", "NodePort"):
                report(f"the database cluster adds a {kind} service", None)


def _pod_security(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "kubernetes:core/v1:Namespace":
        return
    name = get(args.props, "metadata", "name")
    if name != f"luna-{stack_of(args.urn)}":
        return
    enforce = k8s_labels(args.props).get("pod-security.kubernetes.io/enforce")
    if enforce != "restricted":
        report(
            f"namespace {name} enforces Pod Security {enforce or 'nothing'}, not restricted",
            None,
        )


def _hardening(args: ResourceValidationArgs, report: ReportViolation) -> None:
    typ, props = args.resource_type, args.props
    service = service_of(typ, props)
    if typ == DOCKER_CONTAINER:
        who = f"container of {service or args.name}"
        if get(props, "privileged") is True:
            report(f"{who} is privileged", None)
        if get(props, "networkMode") == "host":
            report(f"{who} shares the host's network namespace", None)
        user = get(props, "user")
        if user is None and service not in IMAGE_USER:
            report(f"{who} sets no user (the image may run as root)", None)
        elif isinstance(user, str) and user.split(":")[0] in ("0", "root"):
            report(f"{who} runs as root ({user})", None)
        if "ALL" not in [str(c) for c in items(get(props, "capabilities", "drops"))]:
            report(f"{who} does not drop ALL capabilities", None)
        opts = [str(o) for o in items(get(props, "securityOpts"))]
        if not {"no-new-privileges", "no-new-privileges:true"} & set(opts):
            report(f"{who} allows privilege escalation (no no-new-privileges)", None)
        shipping = bool(items(get(props, "uploads")))
        if get(props, "readOnly") is not True and not shipping and service not in WRITABLE_ROOT:
            report(f"{who} has a writable root filesystem (not a listed exception)", None)
        return
    found = pod_spec(typ, props)
    if not found:
        return
    pod = found[1]
    pod_sc = get(pod, "securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if get(pod, flag) is True:
            report(f"pod of {service} sets {flag}", None)
    for c in container_specs(pod):
        who = f"container {get(c, 'name')} of {service}"
        sc = get(c, "securityContext") or {}
        if get(sc, "privileged") is True:
            report(f"{who} is privileged", None)
        if get(sc, "allowPrivilegeEscalation") is not False:
            report(f"{who} does not set allowPrivilegeEscalation: false", None)
        if "ALL" not in [str(x) for x in items(get(sc, "capabilities", "drop"))]:
            report(f"{who} does not drop ALL capabilities", None)
        non_root = get(sc, "runAsNonRoot")
        non_root = get(pod_sc, "runAsNonRoot") if non_root is None else non_root
        uid = get(sc, "runAsUser")
        uid = get(pod_sc, "runAsUser") if uid is None else uid
        if service not in ROOT_USER and (non_root is not True or uid == 0):
            report(f"{who} may run as root (runAsNonRoot={non_root}, runAsUser={uid})", None)
        if get(sc, "readOnlyRootFilesystem") is not True and service not in WRITABLE_ROOT:
            report(f"{who} has a writable root filesystem (not a listed exception)", None)


# --- GDPR Art. 32 / 25 --------------------------------------------------------
_SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|_PASS$|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ACCESS_KEY", re.I
)
_NOT_A_VALUE = re.compile(r"(_FILE|_PATH|_FILE_PATH)$", re.I)
_URL_PASSWORD = re.compile(r"://[^/\s:@'\"]*:[^@\s/'\"]+@")


def _secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _NOT_A_VALUE.search(name)


def _no_plaintext_secret(args: ResourceValidationArgs, report: ReportViolation) -> None:
    typ, props = args.resource_type, args.props
    if typ == "kubernetes:core/v1:ConfigMap":
        for text in strings(get(props, "data")):
            if _URL_PASSWORD.search(text):
                report("a ConfigMap holds a URL with a password; use a Secret", None)
        return
    if pod_spec(typ, props):
        for name, value in env_pairs(typ, props):
            if isinstance(value, str) and (_secret_name(name) or _URL_PASSWORD.search(value)):
                report(f"env {name} is a literal; use valueFrom.secretKeyRef", None)
        return
    if typ not in (DOCKER_CONTAINER, "command:local:Command"):
        return
    # The engine hands a policy secret values unwrapped, so during a preview a Docker
    # env that came from a secret Output reads like a plain one. Only a render, whose
    # secret leaves read "[secret]", shows which are plain (policy.check sets this).
    if not args.get_config().get("secretsMasked"):
        return
    for name, value in env_pairs(typ, props):
        if value == MASK:
            continue
        if _secret_name(name) or (isinstance(value, str) and _URL_PASSWORD.search(value)):
            report(f"env {name} holds a secret in plain text; pass a secret Output", None)


_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _tag(ref: str) -> str | None:
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def _image_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for ref in image_refs(args.resource_type, args.props):
        if _DIGEST.search(ref):
            continue
        tag = _tag(ref.split("@")[0])
        if tag is None or tag == "latest":
            report(f"image {ref} is not pinned (no tag, or latest)", None)


def _image_digest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if stack_of(args.urn) != "prod":
        return
    for ref in image_refs(args.resource_type, args.props):
        if not _DIGEST.search(ref):
            report(f"prod image {ref} is pinned by tag, not by digest", None)


# --- HIPAA 164.308(a)(7): contingency plan ------------------------------------
DATA_TYPES = frozenset(
    {
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:core/v1:Namespace",
        "kubernetes:postgresql.cnpg.io/v1:Cluster",
        "docker:index/volume:Volume",
        "random:index/randomPassword:RandomPassword",
    }
)


def _prod_data_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    prod_data = stack_of(args.urn) == "prod" and args.resource_type in DATA_TYPES
    if prod_data and not args.opts.protect:
        report(f"prod data resource {args.name} is not protected", None)


# --- GDPR Art. 5(1)(e): storage limitation ------------------------------------
def _log_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    bound = float(args.get_config().get("maxLogRetentionDays", 30))
    for text in strings(args.props):
        for name, days in ilm_policies(text):
            if "audit" in name:
                continue
            if days is None:
                report(f"log index policy {name} never deletes", None)
            elif days > bound:
                report(f"log index policy {name} keeps {days:g} days (bound {bound:g})", None)


TRANSMISSION = control("HIPAA", "164.312(e)(1)", "Transmission security")
ACCESS = control("HIPAA", "164.312(a)(1)", "Access control")
CONTINGENCY = control("HIPAA", "164.308(a)(7)", "Contingency plan")
STORAGE_LIMITATION = control("GDPR", "Art. 5(1)(e)", "Storage limitation")
SECURITY_BY_DESIGN = control("GDPR", "Art. 32, Art. 25", "Security of processing; by design")

RESOURCE_POLICIES: list[ResourceValidationPolicy] = [
    resource_policy(
        "internal-tls-postgres",
        "PostgreSQL clients connect with TLS: no sslmode=disable/allow/prefer, no URL "
        "without sslmode.",
        _postgres_tls,
        TRANSMISSION,
        needs=cap.TLS_POSTGRES,
    ),
    resource_policy(
        "internal-tls-redis",
        "Redis clients connect with TLS (rediss://), never redis://.",
        _redis_tls,
        TRANSMISSION,
        needs=cap.TLS_REDIS,
    ),
    resource_policy(
        "internal-tls-elasticsearch",
        "Elasticsearch clients connect over https, never http://elasticsearch.",
        _elasticsearch_tls,
        TRANSMISSION,
        needs=cap.TLS_ELASTICSEARCH,
    ),
    resource_policy(
        "edge-tls",
        "The edge serves TLSv1.2+ only, with HSTS for at least a year; staging and prod serve TLS.",
        _edge_tls,
        TRANSMISSION,
    ),
    resource_policy(
        "no-public-data-service",
        "No data service (PostgreSQL, Redis, Elasticsearch) is published on a host port or "
        "through a LoadBalancer/NodePort Service.",
        _no_public_data,
        ACCESS,
    ),
    resource_policy(
        "pod-security-restricted",
        "The stack's namespace enforces Pod Security `restricted`.",
        _pod_security,
        ACCESS,
        needs=cap.POD_SECURITY_ENFORCE,
    ),
    resource_policy(
        "container-hardening",
        "Containers run as non-root, unprivileged, without privilege escalation, with ALL "
        "capabilities dropped and a read-only root filesystem (listed exceptions only).",
        _hardening,
        ACCESS,
    ),
    resource_policy(
        "no-plaintext-secret",
        "No secret in a plain input: secret env values come from Secrets (Kubernetes) or "
        "secret Outputs (Docker); no password in a ConfigMap.",
        _no_plaintext_secret,
        SECURITY_BY_DESIGN,
        config_schema=PolicyConfigSchema(
            properties={"secretsMasked": {"type": "boolean", "default": False}}
        ),
    ),
    resource_policy(
        "image-pinned",
        "Every image is pinned by tag or digest; never latest.",
        _image_pinned,
        SECURITY_BY_DESIGN,
    ),
    resource_policy(
        "image-digest-prod",
        "Prod images are pinned by digest.",
        _image_digest,
        SECURITY_BY_DESIGN,
        needs=cap.DIGEST_PINS,
    ),
    resource_policy(
        "prod-data-protected",
        "In prod, data resources (volumes, PVCs, the namespace, generated passwords, the "
        "database cluster) are protected.",
        _prod_data_protected,
        CONTINGENCY,
    ),
    resource_policy(
        "log-retention-bound",
        "Operational log indices are deleted within the configured bound "
        "(maxLogRetentionDays, 30 by default).",
        _log_retention,
        STORAGE_LIMITATION,
        config_schema=PolicyConfigSchema(
            properties={"maxLogRetentionDays": {"type": "number", "default": 30}}
        ),
    ),
]

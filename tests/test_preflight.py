"""The preflight (infra/preflight.py): every missing secret at once, the TLS pair, the
pager key, bad arguments, and the Kubernetes checks against an API stand-in.

The stand-in answers the read-only GETs the preflight makes with bodies shaped as
the Kubernetes API reference documents them (kubernetes.io/docs/reference/
kubernetes-api/: CustomResourceDefinition, Deployment, StorageClass, Node,
APIService). It is a stand-in for an API server, not one: it proves the
preflight's reading of those documented shapes, over TLS with a bearer token.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.preflight import main, preflight, stack_values
from infra.preflight_checks import Check, pager_key, tls_pair
from infra.preflight_kube import CNPG_CRDS, KubeApi, kube_checks
from infra.settings import required_secret_groups, required_secrets
from tests.support.tls import CaSignedPair, make_ca_signed_pair
from tests.support.tools import REPO

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _failed(rows: list[Check]) -> dict[str, str]:
    return {r.name: r.detail for r in rows if r.failed}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_missing_secret_is_reported_in_one_run(stack: str) -> None:
    values, secrets = stack_values(stack, None, [("platform", "docker")])
    rows = preflight(stack, values, secrets)
    failed = _failed(rows)
    expected = {f"secret {k}" for k in required_secrets(stack)}
    expected |= {"secret " + " or ".join(g) for g in required_secret_groups(stack)}
    assert expected, stack
    assert expected <= set(failed), f"{stack}: not reported at once: {expected - set(failed)}"
    # The rest is still validated in the same run (placeholders stand for the missing).
    assert any(r.name == "settings" for r in rows), rows


def test_values_file_supplies_secrets_like_pulumi_config_json(tmp_path: Path) -> None:
    # `pulumi config --json --show-secrets` shape: {"ns:key": {"value": ..., "secret": ...}}.
    entries = {"openaiApiKey": "sk-proj-Zq8vN3kR7wP2xL9mT4yB6cH1jF5dG0sA"}
    doc = {f"luna:{k}": {"value": v, "secret": True} for k, v in entries.items()}
    values, secrets = stack_values("staging", doc, [])
    assert values["openaiApiKey"] == entries["openaiApiKey"]
    assert "openaiApiKey" in secrets
    assert "secret openaiApiKey" not in _failed(preflight("staging", values, secrets))


# --------------------------------------------------------------------------- TLS
def _cert(
    key: Any, *, names: list[str], issuer_key: Any = None, issuer: str | None = None,
    days: int = 90, ca: bool = False, subject: str = "leaf",
) -> x509.Certificate:  # fmt: skip
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip


@pytest.fixture(scope="module")
def chain() -> dict[str, Any]:
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _cert(ca_key, names=[], ca=True, subject="Luna test CA", days=3650)
    leaf = _cert(leaf_key, names=["luna.example", "*.luna.example"], issuer_key=ca_key,
                 issuer="Luna test CA")  # fmt: skip
    return {"ca": ca, "ca_key": ca_key, "leaf": leaf, "leaf_key": leaf_key}


def test_a_good_pair_passes_every_tls_check(chain: dict[str, Any]) -> None:
    for host in ("luna.example", "www.luna.example"):
        rows = tls_pair(
            _pem(chain["leaf"], chain["ca"]), _key_pem(chain["leaf_key"]), host, now=NOW
        )
        assert not _failed(rows), (host, rows)


@pytest.mark.parametrize(
    ("case", "check"),
    [
        ("other key", "tls key matches"),
        ("other host", "tls covers host"),
        ("deep wildcard", "tls covers host"),
        ("expiring", "tls expiry"),
        ("expired", "tls expiry"),
        ("chain reversed", "tls chain order"),
        ("garbage cert", "tls certificate"),
        ("cert in key slot", "tls key"),
    ],
)
def test_a_bad_pair_fails_the_check_that_names_it(
    chain: dict[str, Any], case: str, check: str
) -> None:
    cert, key, host = _pem(chain["leaf"], chain["ca"]), _key_pem(chain["leaf_key"]), "luna.example"
    if case == "other key":
        key = _key_pem(ec.generate_private_key(ec.SECP256R1()))
    elif case == "other host":
        host = "luna.example.org"
    elif case == "deep wildcard":
        host = "a.b.luna.example"
    elif case in ("expiring", "expired"):
        days = 10 if case == "expiring" else -1
        leaf = _cert(chain["leaf_key"], names=["luna.example"], issuer_key=chain["ca_key"],
                     issuer="Luna test CA", days=days)  # fmt: skip
        cert = _pem(leaf, chain["ca"])
    elif case == "chain reversed":
        cert = _pem(chain["ca"], chain["leaf"])
    elif case == "garbage cert":
        cert = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    elif case == "cert in key slot":
        key = _pem(chain["leaf"])
    failed = _failed(tls_pair(cert, key, host, now=NOW))
    assert check in failed, f"{case}: {check} passed; failures: {failed}"


def test_pager_key_format_is_checked_without_echoing_it() -> None:
    good = {"pagerdutyRoutingKey": "a" * 16 + "0" * 16}
    assert not _failed(pager_key(good))
    bad = {"pagerdutyRoutingKey": "R0ut1ngKey\n"}
    failed = _failed(pager_key(bad))
    assert "pager key pagerdutyRoutingKey" in failed
    assert "R0ut1ngKey" not in json.dumps(failed)


# -------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "argv",
    [
        ["--stack", "qa"],
        ["--stack", "staging", "--values", "/nonexistent/values.json"],
        ["--stack", "staging", "--config", "noequals"],
        [],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code == 2, argv
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_exit_1_and_a_table_when_a_check_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "staging", "--config", "platform=docker"]) == 1
    out = capsys.readouterr().out
    assert "| secret openaiApiKey | FAIL |" in out, out


# ------------------------------------------------------------ Kubernetes stand-in
TOKEN = "preflight-test-token"


def _api_objects(*, operator: str, reclaim: str, nodes: int, metrics: bool) -> dict[str, Any]:
    crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    default = {"storageclass.kubernetes.io/is-default-class": "true"}
    objects: dict[str, Any] = {crd + n: {"kind": "CustomResourceDefinition"} for n in CNPG_CRDS}
    pod = {"containers": [{"image": f"ghcr.io/cloudnative-pg/cloudnative-pg:{operator}"}]}
    objects["/apis/apps/v1/deployments"] = {"items": [{"spec": {"template": {"spec": pod}}}]}
    objects["/apis/storage.k8s.io/v1/storageclasses"] = {
        "items": [
            {"metadata": {"name": "standard", "annotations": default}, "reclaimPolicy": reclaim}
        ]
    }
    objects["/api/v1/nodes"] = {"kind": "NodeList", "items": [ready] * nodes}
    status = "True" if metrics else "False"
    objects["/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io"] = {
        "status": {"conditions": [{"type": "Available", "status": status}]}
    }
    return objects  # fmt: skip


@pytest.fixture(scope="module")
def api_pair(tmp_path_factory: pytest.TempPathFactory) -> CaSignedPair:
    folder = tmp_path_factory.mktemp("kube-api")
    return make_ca_signed_pair(folder, common_name="localhost", alt_names="DNS:localhost")


@contextlib.contextmanager
def _api_server(pair: CaSignedPair, objects: dict[str, Any]) -> Iterator[str]:

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_response(401)
                self.end_headers()
                return
            body = objects.get(self.path.split("?")[0])
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {"kind": "Status", "code": 404}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pair.cert, pair.key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        ca = base64.b64encode(pair.ca.read_bytes()).decode()
        yield json.dumps({
            "current-context": "luna",
            "contexts": [{"name": "luna", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": f"https://localhost:{port}",
                                                   "certificate-authority-data": ca}}],
            "users": [{"name": "u", "user": {"token": TOKEN}}],
        })  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()


def test_kubernetes_prerequisites_pass_on_a_ready_cluster(api_pair: CaSignedPair) -> None:
    objects = _api_objects(operator="1.30.0", reclaim="Retain", nodes=3, metrics=True)
    with _api_server(api_pair, objects) as kubeconfig:
        rows = kube_checks(KubeApi.from_kubeconfig(kubeconfig), stack="prod", storage_class=None)
    assert not _failed(rows), rows
    assert {f"crd {c}" for c in CNPG_CRDS} <= {r.name for r in rows}


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"operator": "1.27.1"}, "cnpg operator"),
        ({"reclaim": "Delete"}, "storage class"),
        ({"nodes": 2}, "nodes"),
        ({"metrics": False}, "metrics-server"),
        ({"crd": "objectstores.barmancloud.cnpg.io"}, "crd objectstores.barmancloud.cnpg.io"),
    ],
)
def test_each_missing_kubernetes_prerequisite_fails_its_row(
    api_pair: CaSignedPair, change: dict[str, Any], check: str
) -> None:
    base: dict[str, Any] = {"operator": "1.30.2", "reclaim": "Retain", "nodes": 3, "metrics": True}
    crd = change.pop("crd", None)
    objects = _api_objects(**{**base, **change})
    if crd:
        del objects[f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"]
    with _api_server(api_pair, objects) as kubeconfig:
        failed = _failed(kube_checks(KubeApi.from_kubeconfig(kubeconfig), stack="prod",
                                     storage_class=None))  # fmt: skip
    assert set(failed) == {check}, failed


def test_a_wrong_token_fails_every_kubernetes_row(api_pair: CaSignedPair) -> None:
    objects = _api_objects(operator="1.30.0", reclaim="Retain", nodes=3, metrics=True)
    with _api_server(api_pair, objects) as kubeconfig:
        doc = json.loads(kubeconfig)
        doc["users"][0]["user"]["token"] = "stolen"
        rows = kube_checks(KubeApi.from_kubeconfig(json.dumps(doc)), stack="staging",
                           storage_class=None)  # fmt: skip
    assert rows and all(r.failed for r in rows), rows


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_stack_file_header_names_every_required_secret(stack: str) -> None:
    header = "".join(
        line for line in (REPO / f"Pulumi.{stack}.yaml").read_text().splitlines(True)
        if line.startswith("#")
    )  # fmt: skip
    keys = [*required_secrets(stack), *(k for g in required_secret_groups(stack) for k in g)]
    missing = [k for k in keys if f"luna:{k}" not in header]
    assert not missing, f"Pulumi.{stack}.yaml's header omits {missing}"


@pytest.mark.parametrize("text", ["just-a-token", "- a\n- list\n", "{unclosed"])
def test_a_kubeconfig_that_is_no_mapping_is_one_failed_row(text: str) -> None:
    from infra.preflight_kube import KubeconfigError

    with pytest.raises(KubeconfigError):
        KubeApi.from_kubeconfig(text)

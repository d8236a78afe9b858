"""Every stack, both platforms: clients of internal services ask for verified TLS,
each as its own least-privileged user (never a shared or superuser identity).

PostgreSQL's clients (DATABASE_URL, the postgres exporter) are another change's.
Elasticsearch, Logstash and Kibana do not run here: their settings are read from
what the render ships (the pipeline through tests/support/lscl.py, Logstash's
grammar) and checked against their upstream meaning, cited in components/logs.py
and components/configs/{logstash,fluentbit}.py; Debian's openssl verifies the
certificates' names and uses (tests/real/test_logging_tls.py).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from components.app import INTERNAL_CA_FILE
from components.cache import TLS
from components.configs.fluentbit import CA_FILE as FLUENT_BIT_CA
from components.logs import ES_CERTS, KIBANA_CERTS, LOGSTASH_CERTS
from components.monitoring import REDIS_EXPORTER_CA
from components.platforms.kubernetes import FILES_ANNOTATION
from infra.mocks import MASK, unwrap
from infra.render import Rendered, render
from tests.conftest import PLATFORMS, rendered
from tests.support import lscl
from tests.support.inventory import service_env, services

CACHE_STACKS = [(s, p) for s in ("staging", "prod") for p in PLATFORMS]


def _shipped(stack: str, platform: str, path: str) -> set[str]:
    """Contents (secrets in clear) of every file shipped at ``path``."""
    found: set[str] = set()
    for rec in rendered(stack, platform).monitor.records.values():
        inputs = unwrap(rec.inputs)
        if rec.type == "docker:index/container:Container":
            found |= {u["content"] for u in inputs.get("uploads") or [] if u["file"] == path}
        elif rec.type in ("kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:Secret"):
            note = (inputs["metadata"].get("annotations") or {}).get(FILES_ANNOTATION)
            data = inputs.get("data") or inputs.get("stringData") or {}
            found |= {data[k] for k, p in json.loads(note or "{}").items() if p == path}
    assert found, f"{stack}/{platform}: {path} is not shipped"
    return found


@pytest.mark.parametrize(("stack", "platform"), CACHE_STACKS, ids=lambda v: str(v))
def test_redis_clients_use_tls_verified_against_the_ca_as_their_own_users(
    stack: str, platform: str
) -> None:
    r = rendered(stack, platform)
    what = f"{stack}/{platform}"
    assert "cache" in services(r), f"{what}: no cache"
    app = service_env(r, "app")
    url = urlsplit(app["REDIS_URL"])
    assert url.scheme == "rediss", f"{what}: the app's REDIS_URL is {url.scheme}://, not TLS"
    assert (url.hostname, url.port, url.username) == ("cache", 6380, "app"), f"{what}: {url}"
    # Node verifies TLS by default; the stack's CA is added to its roots.
    assert app.get("NODE_EXTRA_CA_CERTS") == INTERNAL_CA_FILE, f"{what}: the app lacks the CA"
    exporter = service_env(r, "redis-exporter")
    assert exporter["REDIS_ADDR"] == "rediss://cache:6380", f"{what}: {exporter['REDIS_ADDR']}"
    assert exporter["REDIS_USER"] == "exporter", f"{what}: the exporter is {exporter['REDIS_USER']}"
    assert exporter["REDIS_EXPORTER_TLS_CA_CERT_FILE"] == REDIS_EXPORTER_CA, what
    assert exporter.get("REDIS_EXPORTER_SKIP_TLS_VERIFICATION", "false") == "false", what
    assert exporter["REDIS_PASSWORD"] != unquote(url.password or ""), (
        f"{what}: the exporter shares the app's Redis password"
    )
    # Every client trusts the one CA that the server's certificate chains to.
    cas = [_shipped(stack, platform, p) for p in (INTERNAL_CA_FILE, REDIS_EXPORTER_CA, TLS.ca_file)]
    assert len(set.union(*cas)) == 1, f"{what}: clients trust different CAs: {cas}"
    assert _shipped(stack, platform, TLS.cert_file) != cas[0], f"{what}: redis serves its CA"
    # Nothing anywhere in the stack still speaks plaintext Redis.
    everything = json.dumps([unwrap(rec.inputs) for rec in r.monitor.records.values()])
    assert "redis://" not in everything, f"{what}: a plaintext redis:// URL is configured"


def test_a_supplied_redis_password_with_url_and_quote_syntax_survives_the_url() -> None:
    password = 'p@ss:/#?%"\\x41-0123456789'
    r = render("staging", overrides=[("platform", "docker")], secrets=[("redisPassword", password)])
    url = urlsplit(service_env(r, "app")["REDIS_URL"])
    assert (url.hostname, url.port, url.username) == ("cache", 6380, "app"), url
    assert unquote(url.password or "") == password, url.password


# --- Elasticsearch, Logstash and Kibana ------------------------------------------------

LOG_STACKS = [(s, p) for s in ("staging", "prod") for p in PLATFORMS]
FLUENT_BIT_CONF = "/fluent-bit/etc/fluent-bit.conf"
PIPELINE = "/usr/share/logstash/pipeline/logstash.conf"
LOGSTASH_YML = "/usr/share/logstash/config/logstash.yml"
ES_SETUP = "/opt/luna/es-setup.sh"


def _records(r: Rendered, typ: str) -> dict[str, dict[str, Any]]:
    return {rec.name: unwrap(rec.inputs) for rec in r.monitor.records.values() if rec.type == typ}


def _section(conf: str, name: str) -> dict[str, str]:
    """A fluent-bit ``[name]`` section as key -> value (keys are case-insensitive there)."""
    body = conf.split(f"[{name}]", 1)[1].split("\n[", 1)[0]
    pairs = (line.split(None, 1) for line in body.strip().splitlines() if line.strip())
    return {p[0].lower(): p[1].strip() for p in pairs if len(p) == 2}


def _pipeline(stack: str, platform: str) -> list[tuple[str, list[Any]]]:
    (text,) = _shipped(stack, platform, PIPELINE)
    (yml,) = _shipped(stack, platform, LOGSTASH_YML)
    return lscl.parse(text, escapes=lscl.support_escapes(yml))


def _file(r: Rendered, path: str) -> str:
    """The one file shipped at ``path`` (jobs' files included; secrets masked)."""
    (text,) = [text for key, text in r.files().items() if key.endswith(path)]
    return text


def _one(plugin: lscl.Plugin, key: str) -> Any:
    values = plugin.get_all(key)
    assert len(values) == 1, f"{plugin.name}: {key} is set {len(values)} times"
    return values[0]


def client_hosts(stack: str, platform: str) -> dict[str, set[str]]:
    """Every host name a client of the logging stack dials, read from what is shipped."""
    r = rendered(stack, platform)
    es: set[str] = set()
    es |= {
        urlsplit(u).hostname or ""
        for u in service_env(r, "kibana")["ELASTICSEARCH_HOSTS"].split(",")
    }
    (output,) = lscl.plugins(_pipeline(stack, platform), "output")
    es |= {urlsplit(u).hostname or "" for u in _one(output, "hosts")}
    script = _file(r, ES_SETUP)
    es |= {urlsplit(u).hostname or "" for u in re.findall(r'^es="([^"]+)"', script, re.M)}
    es |= _url_hosts(_health(r, "elasticsearch"))
    kibana = _url_hosts(_health(r, "kibana"))
    kibana.add(urlsplit(r.outputs["kibana_url"]).hostname or "")
    logstash: set[str] = set()
    if platform == "kubernetes":
        out = _section(next(iter(_shipped(stack, platform, FLUENT_BIT_CONF))), "OUTPUT")
        logstash |= {out["host"], out["tls.vhost"]}
    return {"elasticsearch": es, "kibana": kibana, "logstash": logstash}


def _url_hosts(text: str) -> set[str]:
    return {urlsplit(u).hostname or "" for u in re.findall(r"https?://[^'\s\"]+", text)}


def _health(r: Rendered, service: str) -> str:
    """The health command of ``service`` (Docker healthcheck or Kubernetes exec probe)."""
    for rec in r.monitor.records.values():
        inputs = unwrap(rec.inputs)
        if rec.type == "docker:index/container:Container" and inputs.get("hostname") == service:
            return " ".join(inputs["healthcheck"]["tests"])
        kinds = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")
        if rec.type in kinds and inputs["metadata"]["name"] == service:
            container = inputs["spec"]["template"]["spec"]["containers"][0]
            return " ".join(container["readinessProbe"]["exec"]["command"])
    raise AssertionError(f"{service}: no health check found")


@pytest.mark.parametrize(("stack", "platform"), LOG_STACKS, ids=lambda v: str(v))
def test_every_logging_client_asks_for_verified_tls_against_the_stack_ca(
    stack: str, platform: str
) -> None:
    r = rendered(stack, platform)
    what = f"{stack}/{platform}"
    es = service_env(r, "elasticsearch")
    for layer in ("http", "transport"):
        pre = f"xpack.security.{layer}.ssl"
        assert es[f"{pre}.enabled"] == "true", f"{what}: Elasticsearch {layer} is plaintext"
        for key, path in (("certificate", ES_CERTS.cert), ("key", ES_CERTS.key)):
            assert es[f"{pre}.{key}"] == path, f"{what}: {pre}.{key} = {es[f'{pre}.{key}']}"
        assert es[f"{pre}.certificate_authorities"] == ES_CERTS.ca, what
    assert es["xpack.security.transport.ssl.verification_mode"] == "full", what
    # Kibana -> Elasticsearch, and Kibana's own port.
    kb = service_env(r, "kibana")
    assert urlsplit(kb["ELASTICSEARCH_HOSTS"]).scheme == "https", f"{what}: {kb}"
    assert kb["ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES"] == KIBANA_CERTS.ca, what
    assert kb["ELASTICSEARCH_SSL_VERIFICATIONMODE"] == "full", what
    assert (kb["SERVER_SSL_ENABLED"], kb["SERVER_SSL_CERTIFICATE"], kb["SERVER_SSL_KEY"]) == (
        "true", KIBANA_CERTS.cert, KIBANA_CERTS.key,
    ), what  # fmt: skip
    assert urlsplit(r.outputs["kibana_url"]).scheme == "https", r.outputs["kibana_url"]
    # Logstash -> Elasticsearch, read as Logstash reads its pipeline.
    sections = _pipeline(stack, platform)
    (output,) = lscl.plugins(sections, "output")
    assert output.name == "elasticsearch", output
    assert all(urlsplit(h).scheme == "https" for h in _one(output, "hosts")), output
    assert _one(output, "ssl_enabled") == "true", f"{what}: {output}"
    assert _one(output, "ssl_verification_mode") == "full", f"{what}: {output}"
    assert _one(output, "ssl_certificate_authorities") == [LOGSTASH_CERTS.ca], what
    # The setup job and both health checks verify with curl (no -k / --insecure).
    script = _file(r, ES_SETUP)
    calls = re.findall(r"\bcurl\b[^\n]*", script)
    assert calls and all('--cacert "$ca"' in c for c in calls), f"{what}: {calls}"
    assert re.search(rf'^ca="{re.escape(ES_CERTS.ca)}"$', script, re.M), what
    for service, ca in (("elasticsearch", ES_CERTS.ca), ("kibana", KIBANA_CERTS.ca)):
        check = _health(r, service)
        assert f"--cacert {ca}" in check and "https://localhost:" in check, f"{what}: {check}"
        assert not re.search(r"\s(-k|--insecure)\b", check), f"{what}: {check}"
    # The log collector -> Logstash.
    inputs = lscl.plugins(sections, "input")
    if platform == "kubernetes":
        (tcp,) = inputs
        assert tcp.name == "tcp" and _one(tcp, "ssl_enabled") == "true", f"{what}: {tcp}"
        assert (_one(tcp, "ssl_certificate"), _one(tcp, "ssl_key")) == (
            LOGSTASH_CERTS.cert, LOGSTASH_CERTS.key,
        ), what  # fmt: skip
        (key,) = _shipped(stack, platform, LOGSTASH_CERTS.key)
        assert "PKCS8" in key, f"{what}: Logstash's tcp input gets a non-PKCS#8 key"
        out = _section(next(iter(_shipped(stack, platform, FLUENT_BIT_CONF))), "OUTPUT")
        for key_, want in (("tls", "On"), ("tls.verify", "On"), ("tls.verify_hostname", "On")):
            assert out.get(key_) == want, f"{what}: fluent-bit {key_} = {out.get(key_)}"
        assert out["tls.vhost"] == out["host"] == "logstash", f"{what}: {out}"
        assert out["tls.ca_file"] == FLUENT_BIT_CA, what
        cas = {FLUENT_BIT_CA, ES_CERTS.ca, LOGSTASH_CERTS.ca, KIBANA_CERTS.ca}
    else:
        # Docker: the daemon's gelf driver to the host loopback only (no TLS there).
        assert [(p.name, _one(p, "use_tcp")) for p in inputs] == [("gelf", "false")], inputs
        cas = {ES_CERTS.ca, LOGSTASH_CERTS.ca, KIBANA_CERTS.ca}
    # One CA for every client, and it is the one Redis's clients trust too.
    trusted = set.union(*(_shipped(stack, platform, p) for p in (*cas, INTERNAL_CA_FILE)))
    assert len(trusted) == 1, f"{what}: clients trust different CAs"
    # The stack output an operator trusts for Kibana is that same CA.
    assert {unwrap(r.outputs["internal_ca_pem"])} == trusted, f"{what}: internal_ca_pem differs"
    for served in (ES_CERTS.cert, LOGSTASH_CERTS.cert, KIBANA_CERTS.cert):
        assert _shipped(stack, platform, served).isdisjoint(trusted), f"{what}: {served} is the CA"
    # Nothing anywhere still dials Elasticsearch or Kibana in clear text.
    everything = json.dumps([unwrap(rec.inputs) for rec in r.monitor.records.values()])
    plain = re.findall(r"http://[^\"'\s]*:(?:9200|5601)\b", everything)
    assert not plain, f"{what}: plaintext URLs {sorted(set(plain))}"


@pytest.mark.parametrize(("stack", "platform"), LOG_STACKS, ids=lambda v: str(v))
def test_logging_keys_are_secret_files_and_certificates_name_what_clients_dial(
    stack: str, platform: str
) -> None:
    r = rendered(stack, platform)
    what = f"{stack}/{platform}"
    csrs = _records(r, "tls:index/certRequest:CertRequest")
    certs = _records(r, "tls:index/locallySignedCert:LocallySignedCert")
    keys = _records(r, "tls:index/privateKey:PrivateKey")
    hosts = client_hosts(stack, platform)
    print(f"\n{what}: hosts dialled { ({k: sorted(v) for k, v in hosts.items()}) }")
    for service, dialled in hosts.items():
        names = set(csrs[f"luna-ca-{service}-csr"]["dnsNames"])
        assert dialled <= names, f"{what}: clients dial {dialled - names}, not in {service}'s SANs"
        key = keys[f"luna-ca-{service}-key"]
        assert (key["algorithm"], key["ecdsaCurve"]) == ("ECDSA", "P256"), f"{what}: {key}"
        cert = certs[f"luna-ca-{service}-cert"]
        uses = set(cert["allowedUses"])
        assert "server_auth" in uses, f"{what}: {service} cannot serve TLS: {uses}"
        # Elasticsearch's transport dials as well as answers, with the same certificate.
        assert ("client_auth" in uses) == (service == "elasticsearch"), f"{what}: {service} {uses}"
        assert 0 < cert["earlyRenewalHours"] < cert["validityPeriodHours"], f"{what}: {cert}"
    # Private keys reach their programs only as secret files (masked in the render:
    # a Kubernetes Secret, or a Docker upload the platform marks secret).
    files = r.files()
    for path in (ES_CERTS.key, LOGSTASH_CERTS.key, KIBANA_CERTS.key):
        shipped = {k: v for k, v in files.items() if k.endswith(path)}
        assert shipped, f"{what}: {path} is not shipped"
        clear = [k for k, v in shipped.items() if v != MASK + "\n"]
        assert not clear, f"{what}: private keys shipped in clear: {clear}"
    for rec in r.monitor.records.values():
        if rec.type == "kubernetes:core/v1:ConfigMap":
            note = (unwrap(rec.inputs)["metadata"].get("annotations") or {}).get(FILES_ANNOTATION)
            paths = set(json.loads(note or "{}").values())
            assert not paths & {ES_CERTS.key, LOGSTASH_CERTS.key, KIBANA_CERTS.key}, (
                f"{what}: a private key ships in ConfigMap {rec.name}"
            )

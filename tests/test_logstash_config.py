"""The Logstash pipeline's strings, inputs and audit condition, read back as Logstash reads them.

Strings are parsed by tests/support/lscl.py, the model of Logstash's config grammar
and of ``config.support_escapes`` (logstash-core lib/logstash/config/string_escape.rb,
cited there). The slow tests run the whole pipeline's filters in Ruby
(tests/real/test_redaction.py); these catch a broken builder without a real program.
"""

from __future__ import annotations

import re

import pytest

from components.configs.logstash import (
    GELF_PORT,
    LogstashTls,
    audit_origin,
    logstash_pipeline,
    lscl_string,
)
from tests.support import lscl

TLS = LogstashTls(
    ca_file="/tls/ca.crt", cert_file="/tls/logstash.crt", key_file="/tls/logstash.key"
)
CONTAINER_ID = "0123456789abcdef" * 4

# Redaction patterns and Windows-ish paths: backslashes, quotes, both at the end.
HOSTILE = [
    r"(?<![\w+.:/-])\d{3}-\d{2}-\d{4}(?![\w-])",
    'say "hello"',
    "C:\\logs\\x",
    '\\"',
    "it's [plain]",
    # Escapes Logstash would turn into a newline, a tab or one backslash if left alone.
    r"line\nbreak\tand\\one",
    "",
]


def _read_back(literal: str) -> object:
    sections = lscl.parse(f"filter {{\n  mutate {{\n    id => {literal}\n  }}\n}}\n", escapes=True)
    (plugin,) = lscl.plugins(sections, "filter")
    (value,) = plugin.get_all("id")
    return value


@pytest.mark.parametrize("value", HOSTILE)
def test_a_string_reads_back_as_itself_with_escapes_on(value: str) -> None:
    assert _read_back(lscl_string(value)) == value


@pytest.mark.parametrize("value", ["${ES_PASSWORD}", "user %{[user][email]}"])
def test_env_and_field_references_are_refused(value: str) -> None:
    # Logstash would substitute an environment variable or an event field into them.
    with pytest.raises(ValueError, match=r"has a meaning in Logstash strings") as refused:
        lscl_string(value)
    assert repr(value) in str(refused.value), refused.value


def test_a_final_backslash_is_refused_as_logstash_could_not_read_it() -> None:
    value = "C:\\logs\\"
    # The model refuses the literal the plain escaping would give: backslash-quote
    # is one unit in the grammar, so the string never closes.
    with pytest.raises(lscl.LsclError):
        _read_back('"' + value.replace("\\", "\\\\") + '"')
    with pytest.raises(ValueError, match="cannot end with a backslash"):
        lscl_string(value)


def _inputs(*, tls_input: bool) -> list[lscl.Plugin]:
    text = logstash_pipeline(
        stack="staging",
        elasticsearch_url="https://elasticsearch:9200",
        user="logstash_writer",
        password_env="ES_PASSWORD",
        tls=TLS,
        tls_input=tls_input,
        audit_from=audit_origin(stack="staging", namespace=None),
    )
    return lscl.plugins(lscl.parse(text, escapes=True), "input")


def test_docker_takes_gelf_over_udp_and_kubernetes_json_lines_over_tls() -> None:
    # Docker's gelf log driver sends UDP from the daemon; the Kubernetes collector sends
    # JSON lines over TLS. Either input on the other platform receives nothing.
    (docker,) = _inputs(tls_input=False)
    assert docker.name == "gelf", docker
    assert docker.get_all("use_udp") == ["true"] and docker.get_all("port") == [GELF_PORT]
    (kube,) = _inputs(tls_input=True)
    assert kube.name == "tcp" and kube.get_all("codec") == ["json_lines"], kube
    assert kube.get_all("ssl_enabled") == ["true"], kube
    assert kube.get_all("ssl_certificate") == [TLS.cert_file], kube
    assert kube.get_all("ssl_key") == [TLS.key_file], kube


def test_docker_audit_lines_come_from_the_database_containers_tag() -> None:
    assert audit_origin(stack="prod", namespace=None) == '[tag] == "prod/database"'


def test_kubernetes_audit_lines_come_from_the_database_pods_postgres_log_only() -> None:
    condition = audit_origin(stack="prod", namespace="luna-prod")
    match = re.fullmatch(r"\[log_file\] =~ /(.+)/", condition)
    assert match, condition
    # Anchors, classes and \/ mean the same in Python's re as in Onigmo here.
    path = re.compile(match.group(1))

    def log(pod: str, namespace: str, container: str) -> str:
        return f"/var/log/containers/{pod}_{namespace}_{container}-{CONTAINER_ID}.log"

    assert path.search(log("database-1", "luna-prod", "postgres")), condition
    assert path.search(log("database-12", "luna-prod", "postgres")), condition
    for pod, namespace, container in (
        ("app-7d9f-x2", "luna-prod", "app"),  # the app could print an audit-shaped line
        ("database-1", "luna-staging", "postgres"),  # another stack
        ("database-1", "luna-prod", "bootstrap-controller"),  # another container
        ("database-x", "luna-prod", "postgres"),
    ):
        assert not path.search(log(pod, namespace, container)), (pod, namespace, container)


def test_elasticsearch_over_plain_http_is_refused_naming_the_url() -> None:
    with pytest.raises(ValueError, match=r"^http://elasticsearch:9200: .*https only$"):
        logstash_pipeline(
            stack="staging",
            elasticsearch_url="http://elasticsearch:9200",
            user="logstash_writer",
            password_env="ES_PASSWORD",
            tls=TLS,
            tls_input=False,
            audit_from=audit_origin(stack="staging", namespace=None),
        )

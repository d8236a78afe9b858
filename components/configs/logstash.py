"""The Logstash pipeline: logs in, personal data redacted, Elasticsearch out over TLS.

Inputs, per platform:
- Docker: GELF over UDP from the Docker daemon's gelf log driver. The driver runs
  in the daemon and has no TLS option (Docker daemon/logger/gelf); it sends to
  Logstash's port published on the host's loopback only (127.0.0.1), so the
  datagrams never leave the host's kernel. Logstash's gelf input has no TLS
  option either (logstash-input-gelf lib/logstash/inputs/gelf.rb).
- Kubernetes: the log collector (Fluent Bit) crosses nodes, so it sends JSON
  lines over TLS to a ``tcp`` input and verifies Logstash's certificate
  against the stack's CA (logstash-input-tcp lib/logstash/inputs/tcp.rb:
  ``ssl_enabled``, ``ssl_certificate``, ``ssl_key`` (PKCS#8),
  ``ssl_client_authentication``).

Two indices per stack: ``luna-<stack>-logs-*`` (operational, short retention)
and ``luna-<stack>-audit-*`` (who touched which record: the database's pgaudit
lines, identified by their origin, kept for years). docs/logging.md says who may read which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from components.configs.redaction import FREE_TEXT_FIELDS, KEPT_FIELDS, REDACTIONS

__all__ = [
    "AUDIT_LINE",
    "GELF_PORT",
    "QUEUE_MAX_BYTES",
    "LogstashTls",
    "audit_origin",
    "logstash_pipeline",
    "logstash_yml",
    "lscl_string",
]

GELF_PORT: Final = 12201
QUEUE_DIR: Final = "/usr/share/logstash/data"
QUEUE_MAX_BYTES: Final = "1gb"

# The audit index takes the database's audit stream only. Its origin is proven
# by a field the runtime sets, never by the line's text, which any container can
# print (AUDIT_ORIGIN below). Within that stream, pgaudit's lines are the LOG
# lines whose message starts "AUDIT: SESSION," or "AUDIT: OBJECT," right after
# the log_line_prefix (components/configs/postgres.py, "%m [%p] user=%u db=%d
# app=%a client=%h "): anchored, so an ERROR line quoting such text is not one.
# app=\S*: an application_name with a space would let a session forge the prefix,
# so such lines stay out (the app sets application_name without spaces).
AUDIT_LINE: Final = (
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ \[\d+\] user=\S* db=\S* app=\S* "
    r"client=\S* LOG:  AUDIT: (?:SESSION|OBJECT),"
)
DATABASE_SERVICE: Final = "database"
"""components/database.py's service: the Docker container's log tag and the
CloudNativePG Cluster's name, whose pods are ``database-<n>``."""


def audit_origin(*, stack: str, namespace: str | None) -> str:
    """The LSCL condition that a record comes from the database's own stream.

    - Docker: ``[tag]``, which the daemon's gelf driver sets from the container's
      ``tag`` log option (components/platforms/docker, ``<stack>/<service>``).
    - Kubernetes: ``[log_file]``, the file Fluent Bit read the line from
      (tail ``Path_Key``), which the kubelet names
      ``<pod>_<namespace>_<container>-<id>.log``; CloudNativePG's instance pods
      are ``database-<n>`` with the container ``postgres``.
    """
    if namespace is None:
        return f'[tag] == "{stack}/{DATABASE_SERVICE}"'
    pod = rf"{DATABASE_SERVICE}-\d+"
    path = rf"^\/var\/log\/containers\/{pod}_{namespace}_postgres-[0-9a-f]{{64}}\.log$"
    return f"[log_file] =~ /{path}/"


def lscl_string(value: str) -> str:
    """A double-quoted LSCL string that reads back as ``value`` with escapes on.

    With ``config.support_escapes: true`` (logstash_yml) Logstash turns ``\\\\``
    into ``\\`` and ``\\"`` into ``"`` (logstash-core lib/logstash/config/
    string_escape.rb). ``${`` would be taken for an environment variable and
    ``%{`` for a field reference, so neither may appear.
    """
    for bad in ("${", "%{"):
        if bad in value:
            raise ValueError(f"{value!r}: {bad} has a meaning in Logstash strings")
    # The grammar reads backslash-quote as one unit wherever it stands
    # (lscl_grammar.treetop, double_quoted_string), so the escaped final backslash
    # would swallow the closing quote and Logstash would refuse the pipeline.
    if value.endswith("\\"):
        raise ValueError(f"{value!r}: a Logstash string cannot end with a backslash")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class LogstashTls:
    """Where Logstash finds its TLS files."""

    ca_file: str
    """The stack CA: Elasticsearch's certificate is verified against it."""
    cert_file: str
    """The tcp input's server certificate (Kubernetes)."""
    key_file: str
    """Its key in PKCS#8 PEM, the form logstash-input-tcp reads."""


def _input(tls: LogstashTls, *, tls_input: bool) -> str:
    if not tls_input:
        return f"""  # Docker's gelf log driver sends UDP to the host loopback (see the module doc).
  gelf {{
    port => {GELF_PORT}
    use_udp => true
    use_tcp => false
  }}"""
    return f"""  # The Kubernetes log collector: JSON lines over TLS, which it verifies.
  # Only the collector may reach this port (its NetworkPolicy); it presents no
  # certificate of its own, so the server asks for none.
  tcp {{
    port => {GELF_PORT}
    codec => json_lines
    ssl_enabled => true
    ssl_certificate => {lscl_string(tls.cert_file)}
    ssl_key => {lscl_string(tls.key_file)}
    ssl_client_authentication => "none"
  }}"""


def _gsub() -> str:
    entries = [
        f"        {lscl_string(f)}, {lscl_string(rx)}, {lscl_string(repl)}"
        for f in FREE_TEXT_FIELDS
        for _, rx, repl in REDACTIONS
    ]
    return ",\n".join(entries)


def _kept() -> str:
    names = sorted({*KEPT_FIELDS, *FREE_TEXT_FIELDS})
    return ", ".join(lscl_string(f"^{n}$") for n in names)


def logstash_pipeline(
    *,
    stack: str,
    elasticsearch_url: str,
    user: str,
    password_env: str,
    tls: LogstashTls,
    tls_input: bool,
    audit_from: str,
) -> str:
    """Return the pipeline; the password is read from ``${password_env}`` at start.

    ``tls_input`` picks the TLS tcp input (Kubernetes) over the loopback gelf one;
    ``audit_from`` is :func:`audit_origin`'s condition for the platform.
    """
    if not elasticsearch_url.startswith("https://"):
        raise ValueError(f"{elasticsearch_url}: Logstash reaches Elasticsearch over https only")
    audit = f"{audit_from} and [message] =~ /{AUDIT_LINE}/"
    return f"""# Generated by components/configs/logstash.py
input {{
{_input(tls, tls_input=tls_input)}
}}

filter {{
  # Only fields the runtime sets, and the free-text ones redacted below, go on:
  # a field nobody listed cannot carry personal data into the index.
  prune {{
    whitelist_names => [{_kept()}]
  }}
  # Every free-text field, every pattern (components/configs/redaction.py).
  mutate {{
    gsub => [
{_gsub()}
    ]
  }}
  if {audit} {{
    mutate {{
      add_field => {{ "[@metadata][index]" => "audit" }}
    }}
  }} else {{
    mutate {{
      add_field => {{ "[@metadata][index]" => "logs" }}
    }}
  }}
  mutate {{
    add_field => {{ "[luna][stack]" => "{stack}" }}
  }}
}}

output {{
  elasticsearch {{
    hosts => ["{elasticsearch_url}"]
    user => "{user}"
    password => "${{{password_env}}}"
    # Verified TLS: the chain to the stack CA and the host name ("full"; logstash-output-
    # elasticsearch lib/logstash/plugin_mixins/elasticsearch/api_configs.rb).
    ssl_enabled => true
    ssl_certificate_authorities => [{lscl_string(tls.ca_file)}]
    ssl_verification_mode => "full"
    index => "luna-{stack}-%{{[@metadata][index]}}-%{{+YYYY.MM.dd}}"
    # create, never index: the writer role may add documents, not replace them.
    action => "create"
    data_stream => false
    ilm_enabled => false
    manage_template => false
  }}
}}
"""


def logstash_yml() -> str:
    return f"""# Generated by components/configs/logstash.py
api.http.host: 127.0.0.1
xpack.monitoring.enabled: false
config.reload.automatic: false
path.config: /usr/share/logstash/pipeline
# The redaction patterns are written with escaped backslashes ("\\\\d"); without
# this Logstash keeps both backslashes and no pattern matches (lscl.rb).
config.support_escapes: true
# Events wait on disk, not in memory, while Elasticsearch is down or slow; a
# restart or a replaced container (the volume stays) loses nothing.
queue.type: persisted
path.queue: {QUEUE_DIR}/queue
queue.max_bytes: {QUEUE_MAX_BYTES}
queue.checkpoint.writes: 1
"""

"""Checks of supplied secrets and hostile config values: pure functions, no Pulumi.

infra/settings.py calls them while it reads the configuration, so a bad value
stops the program with one ``ConfigError`` line before any resource exists.
Each function returns ``None`` when the value is fine, or what is allowed. A
secret's value never appears in a message.

Consumers and what they accept (why the rules are what they are):
- Passwords end up in URLs (percent-encoded by components/urls.py), in redis.conf
  (as a SHA-256 only, components/configs/redis.py) and in environment variables:
  any printable ASCII works there, but whitespace and control characters are
  almost always a paste accident (a trailing newline) and break ``.env``-style
  and command-line consumers, so they are refused rather than encoded.
- Grafana ignores an empty ``GF_SECURITY_ADMIN_PASSWORD`` and keeps admin/admin.
- pgBackRest's cipher pass (``backupEncryptionKey``) and the object-store keys
  travel as environment variables; whitespace in them is a paste accident that
  would make every backup unreadable or every upload refused.
- A JWT secret is an HMAC key: RFC 7518 §3.2 wants at least the hash size (32
  bytes for HS256), and a key of one repeated character is no key.
- Strength: a length floor does not stop ``Password1234567!``, ``changeme`` twice
  or a repeated block. Human-chosen secrets are scored with zxcvbn (Dropbox's
  estimator, dwolfhub/zxcvbn-python) and refused under 10^12 guesses: zxcvbn's
  "very unguessable" starts at 10^10, and these secrets guard health data behind
  services an attacker can reach (Grafana's and Kibana's logins, Redis AUTH), so
  the floor is a hundred times that. A random 16-character secret scores far
  above it (openssl rand -base64 24: about 10^32).
- Template and expansion syntax: Grafana expands ``$__env{…}``, ``$__file{…}``
  and ``$__vault{…}`` in configuration values (grafana pkg/setting/expanders.go),
  so such a "password" reads a file or variable instead; ``{{`` reaches
  Alertmanager's and Prometheus's Go templates, which fail to load or send nothing.
- Pager keys: PagerDuty's Events v2 routing key is 32 characters, Opsgenie's API
  key a 36-character UUID; a blank, pasted-newline or one-character key means no
  page ever reaches a person.
- URLs (webhooks, the heartbeat): a port outside 1-65535 makes every notification
  fail at dial time.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlparse, urlsplit

__all__ = [
    "MIN_GUESSES_LOG10",
    "MIN_JWT_BYTES",
    "MIN_PASSWORD",
    "app_url_problem",
    "ascii_host",
    "https_url",
    "image_problem",
    "port_collision",
    "secret_problem",
]

MIN_PASSWORD: Final = 16
MAX_PASSWORD: Final = 128
MIN_JWT_BYTES: Final = 32
MIN_JWT_DISTINCT: Final = 8

PASSWORDS: Final = (
    "dbPassword",
    "redisPassword",
    "grafanaPassword",
    "elasticPassword",
    "registryPassword",
)
MIN_GUESSES_LOG10: Final = 12
ZXCVBN_MAX: Final = 72
"""zxcvbn 4.5 refuses longer input; the first 72 characters of a longer secret are scored."""
STRENGTH_CHECKED: Final = (*PASSWORDS, "jwtSecret", "backupEncryptionKey")
PAGER_KEYS: Final = ("pagerdutyRoutingKey", "opsgenieApiKey")
URL_KEYS: Final = ("chatWebhookUrl", "alertWebhookUrl", "heartbeatUrl")
_EXPANSION = re.compile(r"\$__\w*\{|\{\{|\}\}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PRINTABLE_ASCII = re.compile(r"[!-~]+")  # no space, no control, no non-ASCII


def secret_problem(key: str, value: str | None) -> str | None:
    """What ``key`` must be, if ``value`` is not acceptable; ``None`` otherwise."""
    if value is None:
        return None
    if value == "":
        return "must not be empty (unset it to have a strong one generated)"
    if _EXPANSION.search(value):
        return "text without $__…{ or {{ }} (Grafana and Go templates expand them)"
    problem = _shape_problem(key, value)
    # The offline render's stand-in for a secret it cannot decrypt (infra/render.py;
    # imported here: infra.alerting imports this module).
    from infra.alerting import placeholder_secret

    if problem is None and key in STRENGTH_CHECKED and value != placeholder_secret(key):
        problem = strength_problem(key, value)
    return problem


def strength_problem(key: str, value: str) -> str | None:
    """zxcvbn's guess estimate under the floor (see the module doc); the stack's and
    services' own names count as known words."""
    from zxcvbn import zxcvbn  # imported here: its word lists load in ~0.2 s

    words = ["luna", "admin", "elastic", "grafana", "postgres", "redis", "kibana", key]
    guesses = float(zxcvbn(value[:ZXCVBN_MAX], user_inputs=words)["guesses_log10"])
    if guesses < MIN_GUESSES_LOG10:
        return (
            f"a secret that resists guessing (zxcvbn: about 10^{guesses:.0f} guesses, "
            f"need 10^{MIN_GUESSES_LOG10}): no words, repeats or sequences, e.g. "
            "openssl rand -base64 32 (or unset it to have one generated)"
        )
    return None


def _shape_problem(key: str, value: str) -> str | None:
    """Length and character rules per consumer (module doc)."""
    if key in PASSWORDS:
        allowed = (
            f"{MIN_PASSWORD} to {MAX_PASSWORD} printable ASCII characters without spaces "
            "(unset it to have one generated)"
        )
        if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD or not _PRINTABLE_ASCII.fullmatch(value):
            return allowed
        return None
    if key == "jwtSecret":
        data = value.encode()
        if len(data) < MIN_JWT_BYTES or len(set(value)) < MIN_JWT_DISTINCT:
            return (
                f"at least {MIN_JWT_BYTES} bytes with {MIN_JWT_DISTINCT}+ distinct characters, "
                "e.g. openssl rand -base64 48 (unset it to have one generated)"
            )
        if not _PRINTABLE_ASCII.fullmatch(value):
            return "printable ASCII without spaces, e.g. openssl rand -base64 48"
        return None
    if key == "backupEncryptionKey":
        # pgBackRest's repo1-cipher-pass: a pasted newline would be part of the key,
        # and a backup no restore can decrypt is no backup.
        if len(value) < MIN_PASSWORD or not _PRINTABLE_ASCII.fullmatch(value):
            return (
                f"{MIN_PASSWORD}+ printable ASCII characters without spaces, "
                "e.g. openssl rand -base64 48"
            )
        return None
    if key in ("backupAccessKeyId", "backupSecretAccessKey"):
        if not _PRINTABLE_ASCII.fullmatch(value):
            return "an object-store key: printable ASCII, no spaces or newlines"
        return None
    if key in PAGER_KEYS:
        if not _PRINTABLE_ASCII.fullmatch(value) or not 20 <= len(value) <= 128:
            return "a pager integration key: 20-128 printable ASCII characters, no spaces"
        return None
    if key in URL_KEYS:
        return _url_port_problem(value)
    if key == "openaiApiKey":
        if not _PRINTABLE_ASCII.fullmatch(value) or len(value) < 20:
            return "an API key: 20+ printable ASCII characters, no spaces or newlines"
        return None
    # PEM blocks and kubeconfigs are multi-line; only NUL and other controls are refused.
    if _CONTROL.search(value):
        return "text without control characters"
    return None


def _url_port_problem(value: str) -> str | None:
    try:
        port = urlsplit(value).port
    except ValueError:
        port = 0
    if port == 0 or any(c.isspace() for c in value):
        return "an https:// URL whose port, if any, is 1-65535, without spaces"
    return None


# RFC 1123 labels; the whole name ≤ 253 characters; at least one dot unless localhost.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def app_url_problem(url: str, *, stack: str) -> str | None:
    """``appUrl`` must be ``http(s)://<DNS name>[:port]`` with nothing else; prod needs https.

    Its host becomes nginx's ``server_name`` and the redirect target, so anything
    but a DNS name (spaces, ``;{}"'``, userinfo, controls) would inject into nginx.conf.
    """
    allowed = "http(s)://<DNS name>[:port], nothing else (no path, userinfo, spaces or ;{}\"')"
    match = re.fullmatch(r"(https?)://([^/:?#@\s]+)(?::(\d{1,5}))?/?", url)
    if not match:
        return allowed
    scheme, host, port = match.groups()
    if stack == "prod" and scheme != "https":
        return "an https:// URL in prod (the edge redirects to it and sends HSTS)"
    if port and not 1 <= int(port) <= 65535:
        return allowed
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return "a DNS name, not an IP address (it is the certificate's and nginx's name)"
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return allowed
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return allowed
    if len(labels) < 2 and ascii_host != "localhost":
        return "a fully qualified DNS name such as luna-app.com"
    return None


def image_problem(ref: str) -> str | None:
    """Trailing newlines and other whitespace slip through ``$`` in a regex; refuse them."""
    if ref != ref.strip() or any(c.isspace() for c in ref) or _CONTROL.search(ref):
        return "an image reference without whitespace or newlines"
    return None


def port_collision(ports: dict[str, int]) -> tuple[str, int, str] | None:
    """The first key whose port is already taken by an earlier key: (key, port, other)."""
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            return key, port, seen[port]
        seen[port] = key
    return None


def ascii_host(url: str) -> str:
    """The URL's host in punycode (``bücher.de`` → ``xn--bcher-kva.de``), lowercase:
    what nginx's ``server_name``, SNI and certificates carry."""
    host = urlsplit(url).hostname or ""
    return host.encode("idna").decode("ascii").lower()


def https_url(value: str) -> bool:
    parsed = urlparse(value)
    return (
        parsed.scheme == "https"
        and bool(parsed.hostname)
        and not any(c.isspace() for c in value)
        and "@" not in parsed.netloc
    )

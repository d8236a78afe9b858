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
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlparse, urlsplit

__all__ = [
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
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PRINTABLE_ASCII = re.compile(r"[!-~]+")  # no space, no control, no non-ASCII


def secret_problem(key: str, value: str | None) -> str | None:
    """What ``key`` must be, if ``value`` is not acceptable; ``None`` otherwise."""
    if value is None:
        return None
    if value == "":
        return "must not be empty (unset it to have a strong one generated)"
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
    if key == "openaiApiKey":
        if not _PRINTABLE_ASCII.fullmatch(value) or len(value) < 20:
            return "an API key: 20+ printable ASCII characters, no spaces or newlines"
        return None
    # PEM blocks and kubeconfigs are multi-line; only NUL and other controls are refused.
    if _CONTROL.search(value):
        return "text without control characters"
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

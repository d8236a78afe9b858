"""Reading one ``luna:*`` key: the reader behind infra/settings.py.

:class:`Reader` reads keys, remembers which were read (to catch typos) and how
each is validated (docs/configuration.md is generated from its :class:`KeySpec`).
Part of the settings, kept apart so the modules that read keys (settings,
alerting) import it without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pulumi
from pulumi.runtime import config as runtime_config

from infra.config_error import NAMESPACE, ConfigError
from infra.secret_checks import https_url, image_problem, secret_problem

__all__ = ["HOST_PORT", "KeySpec", "Reader", "matches", "pinned"]

V = TypeVar("V")

# name[:tag][@sha256:digest] with a tag other than "latest", or a digest.
IMAGE_RE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9._-]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass(frozen=True)
class KeySpec:
    """What validation enforces for one key: docs/configuration.md is generated from these."""

    key: str
    kind: str
    """integer, number, boolean, choice, image, path, url, string or secret."""
    allowed: str
    """The exact text a ConfigError prints for this key."""


class Reader:
    """Reads ``luna:*`` keys, remembering which were read (to catch typos) and how
    each is validated (to document it: ``python -m infra.docs_config``)."""

    def __init__(self, config: pulumi.Config, secret_keys: tuple[str, ...]) -> None:
        self._config = config
        self._secret_keys = secret_keys
        self.read: set[str] = set()
        self.specs: dict[str, KeySpec] = {}

    def _spec(self, key: str, kind: str, allowed: str) -> None:
        self.specs[key] = KeySpec(key, kind, allowed)

    def raw(self, key: str, allowed: str = "any text") -> str | None:
        self.read.add(key)
        self.specs.setdefault(key, KeySpec(key, "string", allowed))
        if key in self._secret_keys:
            raise AssertionError(f"{key} is secret; use secret()")
        if runtime_config.is_config_secret(f"{NAMESPACE}:{key}"):
            raise ConfigError(key, "[secret]", "this key is not a secret; set it without --secret")
        return self._config.get(key)

    def require(self, key: str, allowed: str) -> str:
        value = self.raw(key)
        if value is None or value == "":
            raise ConfigError(key, None, f"required; {allowed} (defaults live in Pulumi.yaml)")
        return value

    def parsed(
        self, key: str, kind: str, allowed: str, parse: Callable[[str], V], ok: Callable[[V], bool]
    ) -> V:
        """``key`` as ``parse`` reads it, when ``ok``; else one ConfigError naming ``allowed``."""
        self._spec(key, kind, allowed)
        value = self.require(key, allowed)
        try:
            result = parse(value)
        except ValueError:
            raise ConfigError(key, value, allowed) from None
        if not ok(result):
            raise ConfigError(key, value, allowed)
        return result

    def checked(
        self, key: str, allowed: str, ok: Callable[[str], bool], *, kind: str = "string"
    ) -> str:
        return self.parsed(key, kind, allowed, str, ok)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        return self.checked(
            key, "one of " + ", ".join(choices), choices.__contains__, kind="choice"
        )

    def integer(self, key: str, low: int, high: int, *, options: tuple[int, ...] = ()) -> int:
        allowed = (
            f"one of {', '.join(map(str, options))}"
            if options
            else f"an integer from {low} to {high}"
        )
        return self.parsed(
            key,
            "integer",
            allowed,
            int,
            lambda n: low <= n <= high and (not options or n in options),
        )

    def port(self, key: str) -> int:
        return self.integer(key, 1, 65535)

    def number(self, key: str, low: float, high: float) -> float:
        allowed = f"a number from {low:g} to {high:g}"
        return self.parsed(key, "number", allowed, float, lambda n: low <= n <= high)

    def boolean(self, key: str) -> bool:
        value = self.checked(key, "true or false", ("true", "false").__contains__, kind="boolean")
        return value == "true"

    def image(self, key: str) -> str:
        return self.checked(
            key,
            "a pinned image reference: name:tag (not latest) or name@sha256:…",
            lambda v: pinned(v) and image_problem(v) is None,
            kind="image",
        )

    def path(self, key: str) -> str:
        return self.checked(
            key,
            "an absolute URL path such as /api/health",
            matches(r"/[A-Za-z0-9._~/-]*"),
            kind="path",
        )

    def secret(self, key: str) -> pulumi.Output[str] | None:
        self.read.add(key)
        self._spec(key, "secret", "any text, set with --secret")
        full = f"{NAMESPACE}:{key}"
        if runtime_config.get_config(full) is None:
            return None
        if not runtime_config.is_config_secret(full):
            raise ConfigError(
                key, "[hidden]", f"must be encrypted: pulumi config set --secret {full} …"
            )
        problem = secret_problem(key, runtime_config.get_config(full))
        if problem:
            raise ConfigError(key, "[hidden]", problem)
        return self._config.get_secret(key)

    def secret_url(self, key: str) -> pulumi.Output[str] | None:
        """A secret URL, checked before anything is created; the error never shows it."""
        value = self.secret(key)
        text = runtime_config.get_config(f"{NAMESPACE}:{key}")
        if value is not None and not https_url(text or ""):
            raise ConfigError(
                key, "[hidden]", "an https:// URL with a host, e.g. https://hooks.example.com/…"
            )
        return value

    def optional(self, key: str, allowed: str, ok: Callable[[str], bool]) -> str | None:
        allowed = f"empty, or {allowed}"
        value = self.raw(key, allowed) or ""
        if value and not ok(value):
            raise ConfigError(key, value, allowed)
        return value or None


def pinned(ref: str) -> bool:
    match = IMAGE_RE.match(ref)
    if not match:
        return False
    tag, digest = match.group("tag"), match.group("digest")
    return bool(digest) or (tag is not None and tag != "latest")


# host[:port] as image references and S3 clients name a server: no scheme, no path.
HOST_PORT = r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?"


def matches(pattern: str) -> Callable[[str], bool]:
    return lambda value: bool(re.fullmatch(pattern, value))

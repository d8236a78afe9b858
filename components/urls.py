"""Credentials inside connection URLs, percent-encoded (RFC 3986 userinfo).

A password with ``@:/#?%`` pasted into ``scheme://user:password@host`` moves the
host, the port or the path, so every URL that carries a credential is built here.
Client libraries decode the userinfo before they authenticate (Node's WHATWG
``URL`` and ``url.parse``, libpq, Go's ``net/url``), so the server sees the
original password.
"""

from __future__ import annotations

from urllib.parse import quote

import pulumi

__all__ = ["credential_url", "userinfo"]


def userinfo(user: str, password: str) -> str:
    """``user:password``, each percent-encoded (nothing is left unescaped but RFC 3986
    unreserved characters)."""
    return f"{quote(user, safe='')}:{quote(password, safe='')}"


def credential_url(
    scheme: str, user: str, password: pulumi.Input[str], host_and_rest: str
) -> pulumi.Output[str]:
    """``scheme://user:password@host_and_rest`` as a secret Output, the password encoded.

    Usage::

        credential_url("postgresql", "luna_app", pw, "database:5432/luna?sslmode=verify-full")
    """
    return pulumi.Output.secret(
        pulumi.Output.from_input(password).apply(
            lambda p: f"{scheme}://{userinfo(user, p)}@{host_and_rest}"
        )
    )

"""infra/secret_checks.py and the port rule, in-process (fast): each value a deploy must refuse.

tests/test_hostile_inputs.py runs a table like this one through ``python -m infra.render``
(one process each, slow); these are the cheap checks the bug catalogue
(tests/mutants/catalogue.py) names.
"""

from __future__ import annotations

import pytest

from infra.render import render
from infra.secret_checks import app_url_problem, secret_problem
from infra.settings import ConfigError

STRONG = "q8/Zr+Xc2VbN1mLk0PoIu9YtRe4WsQa="

REFUSED = [
    ("dbPassword", "short-pw"),  # 8 characters
    ("dbPassword", "pass word with spaces 123"),
    ("dbPassword", "trailing-newline-password-1\n"),
    ("redisPassword", "tab\tseparated-password-123"),
    ("jwtSecret", "a" * 64),
    ("jwtSecret", "abababab" * 8),
    # Strong to zxcvbn, refused only by the length and distinct-character rules.
    ("dbPassword", "Zq8#vN3k!R7wLp2"),  # 15 characters
    ("jwtSecret", "cbdfaageaceaebaaddabaedageabffeaeedabaegbcdbeaecegfbaeefbcaefaea"),  # 7 kinds
    ("jwtSecret", "has a space in it but is long enough 1234567890"),
    ("backupEncryptionKey", STRONG + "\n"),
    ("backupAccessKeyId", "AKIAIOSFODNN7EXAMPLE\n"),
    ("backupSecretAccessKey", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY\n"),
    ("openaiApiKey", "sk-abcdefghijklmnopqrstuvwxyz\n"),
    ("tlsCert", "-----BEGIN CERTIFICATE-----\x07"),
    ("kubeconfig", "apiVersion: v1\x1b[31m"),
]


@pytest.mark.parametrize(("key", "value"), REFUSED, ids=[f"{k}={v!r}" for k, v in REFUSED])
def test_weak_or_pasted_secrets_are_refused(key: str, value: str) -> None:
    problem = secret_problem(key, value)
    assert problem is not None, f"{key}={value!r} accepted"
    assert value.strip() not in problem, "the message echoes the secret"


def test_app_url_labels_follow_rfc_1123() -> None:
    for bad in ("https://-bad-.com", "https://bad-.luna-app.com", "https://a..com"):
        assert app_url_problem(bad, stack="prod") is not None, bad
    assert app_url_problem("https://x-1.luna-app.com", stack="prod") is None


def test_docker_host_ports_may_not_collide() -> None:
    """Grafana and Kibana are published on the Docker host beside the edge's 80/443."""
    with pytest.raises(ConfigError) as info:
        render("staging", overrides=[("platform", "docker"), ("grafanaPort", "443")])
    assert info.value.key == "grafanaPort", str(info.value)

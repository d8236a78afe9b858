"""Hostile or malformed config keys and secrets, each through ``python -m infra.render``:
exit 2, one ``error:`` line naming the key, no traceback, no secret echoed.

The table runs as separate processes, as a deploy would start (slow: ~1 s each).
The pure checks behind it (infra/secret_checks.py) are unit-tested below, fast.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.secret_checks import (
    app_url_problem,
    ascii_host,
    image_problem,
    port_collision,
    secret_problem,
)
from tests.support.tools import REPO


@dataclass(frozen=True)
class Case:
    key: str
    value: str
    secret: bool = False
    stack: str = "staging"
    extra: tuple[tuple[str, str], ...] = ()
    """Other plain keys the case needs (e.g. the Docker platform)."""


DOCKER = (("platform", "docker"),)
CASES = [
    # Secrets: empty, short, whitespace, pasted newlines, controls, non-ASCII, weak keys.
    Case("dbPassword", "", secret=True),
    Case("dbPassword", "short-pw", secret=True),
    Case("dbPassword", "pass word with spaces 123", secret=True),
    Case("dbPassword", "trailing-newline-password-1\n", secret=True),
    Case("dbPassword", "x" * 200, secret=True),
    Case("dbPassword", "pässwörd-ünicode-123456", secret=True),
    Case("dbPassword", "PlainTextPassword1234"),  # not encrypted
    Case("redisPassword", "", secret=True),
    Case("redisPassword", 'short"q', secret=True),
    Case("redisPassword", 'quote" and space 1234567', secret=True),
    Case("redisPassword", "tab\tseparated-password-123", secret=True),
    Case("grafanaPassword", "", secret=True),
    Case("grafanaPassword", "admin", secret=True),
    Case("elasticPassword", "changeme", secret=True),
    Case("jwtSecret", "x", secret=True),
    Case("jwtSecret", "a" * 64, secret=True),
    Case("jwtSecret", "abababab" * 8, secret=True),
    Case("jwtSecret", "short-but-random-9f8e7d", secret=True),
    Case("jwtSecret", "has a space in it but is long enough 1234567890", secret=True),
    Case("openaiApiKey", "", secret=True),
    Case("openaiApiKey", "sk-abcdefghijklmnopqrstuvwxyz\n", secret=True),
    Case("registryPassword", "", secret=True),
    Case("backupEncryptionKey", "short-cipher", secret=True),
    Case("backupSecretAccessKey", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY\n", secret=True),
    Case("tlsCert", "-----BEGIN CERTIFICATE-----\x07", secret=True),
    Case("kubeconfig", "apiVersion: v1\x1b[31m", secret=True),
    # appUrl: nginx injection, userinfo, paths, quotes, controls, IPs, bad labels.
    Case("appUrl", "https://x.com; location ~ . { return 418; }"),
    Case("appUrl", "https://user:pw@luna-app.com"),
    Case("appUrl", "https://luna app.com"),
    Case("appUrl", "https://luna-app.com/path"),
    Case("appUrl", "http://luna-app.com", stack="prod"),
    Case("appUrl", 'https://"quoted".com'),
    Case("appUrl", "https://x.com'{}"),
    Case("appUrl", "https://luna-app.com\n"),
    Case("appUrl", "https://127.0.0.1"),
    Case("appUrl", "https://-bad-.com"),
    Case("appUrl", "javascript:alert(1)"),
    Case("appUrl", "https://luna-app"),
    # Ports that collide, an unencrypted Docker API, images with whitespace.
    Case("httpsPort", "80"),
    Case("httpsPort", "80", stack="prod"),
    Case("grafanaPort", "443", extra=DOCKER),
    Case("dockerHost", "tcp://10.0.0.5:2375", extra=DOCKER),
    Case("dockerHost", "ssh://user@host; rm -rf /", extra=DOCKER),
    Case("appImage", "ghcr.io/luna-app/luna-web:1.4.2\n"),
    Case("nginxImage", "nginxinc/nginx-unprivileged:1.27 "),
    Case("storageClass", "fast; rm -rf"),
    Case("storageClass", "UPPER"),
    Case("appReplicas", "1e3"),
    Case("httpPort", "0"),
    Case("registryServer", "https://ghcr.io"),
    Case("crisisPath", "/api/crisis;return 418"),
    Case("healthPath", "/he alth"),
    Case("platform", "Docker"),
]


def _run(case: Case, out: Path) -> tuple[Case, int, str]:
    flag = "--secret" if case.secret else "--config"
    # A value that slips through renders into the test's own folder, never the filesystem's.
    argv = [sys.executable, "-m", "infra.render", "--stack", case.stack, "--out", str(out)]
    for key, value in case.extra:
        argv += ["--config", f"{key}={value}"]
    argv += [flag, f"{case.key}={case.value}"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    return case, proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_every_hostile_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    assert len(CASES) >= 40, len(CASES)
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda case: _run(case, tmp_path / "out"), CASES))
    for case, code, output in results:
        what = f"{case.stack}: luna:{case.key}={case.value!r}"
        lines = [line for line in output.splitlines() if not line.startswith("note:")]
        problems = []
        if code != 2:
            problems.append(f"exit {code}")
        if len(lines) != 1 or not lines[0].startswith(f"error: config luna:{case.key} "):
            problems.append(f"output {lines}")
        if "Traceback" in output:
            problems.append("traceback")
        if case.secret and len(case.value) > 3 and case.value in output:
            problems.append("the secret is echoed")
        if problems:
            failures.append(f"{what}: {'; '.join(problems)}")
    print(f"{len(CASES)} hostile inputs through python -m infra.render: "
          f"{len(CASES) - len(failures)} refused with exit 2 and one line")  # fmt: skip
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dbPassword", "p@ss:/#?%word-0123"),  # URL syntax is encoded, not refused
        ("redisPassword", 'q"uote\\x41-long-enough'),  # hashed in redis.conf
        ("grafanaPassword", "Gr4fana-Admin-Pass"),
        ("jwtSecret", "3q2+7w/yJkLz0fH1aB9cD8eF7gH6iJ5kL4mN3oP2"),
        ("tlsCert", "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"),
        ("backupEncryptionKey", "q8/Zr+Xc2VbN1mLk0PoIu9YtRe4WsQa="),
    ],
)
def test_strong_secrets_with_punctuation_are_accepted(key: str, value: str) -> None:
    assert secret_problem(key, value) is None


def test_app_url_accepts_dns_names_and_idns_and_refuses_the_rest() -> None:
    for ok in ("https://luna-app.com", "https://staging.luna-app.com:8443/", "https://bücher.de"):
        assert app_url_problem(ok, stack="prod") is None, ok
    assert app_url_problem("http://localhost:3000", stack="dev") is None
    assert app_url_problem("http://luna-app.com", stack="prod") is not None
    assert app_url_problem("https://a.com;x", stack="dev") is not None
    assert ascii_host("https://Bücher.de:8443") == "xn--bcher-kva.de"


def test_images_and_ports() -> None:
    assert image_problem("nginx:1.27\n") and image_problem(" nginx:1.27")
    assert image_problem("nginx:1.27") is None
    assert port_collision({"httpPort": 80, "httpsPort": 443}) is None
    assert port_collision({"httpPort": 80, "httpsPort": 80}) == ("httpsPort", 80, "httpPort")

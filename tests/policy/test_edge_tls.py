"""The edge-tls policy: an edge that offers any protocol below TLS 1.2 fails the pack.

Each weak protocol is tried alone beside TLSv1.2, in a config that is otherwise
compliant (HSTS for a year), so the violation can only come from the protocol.
nginx's names are those of ``ssl_protocols`` (nginx.org/en/docs/http/ngx_http_ssl_module.html).
"""

from __future__ import annotations

import re

import pytest

from tests.policy.cases import configmap
from tests.policy.support import by, run

POLICY = "edge-tls"


def _nginx(protocols: str) -> str:
    return f"""http {{
    server {{
        listen 8443 ssl;
        ssl_protocols {protocols};
        add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
    }}
}}
"""


def _violations(protocols: str) -> list[str]:
    files = configmap("luna-proxy-files", {"nginx.conf": _nginx(protocols)})
    return [v.message for v in by(run([files]), POLICY)]


@pytest.mark.parametrize("weak", ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"])
def test_a_protocol_below_tls_1_2_fails_the_pack(weak: str) -> None:
    found = _violations(f"{weak} TLSv1.2 TLSv1.3")
    # Named as itself: "TLSv1" must not be read out of "TLSv1.2+".
    named = re.compile(rf"\b{re.escape(weak)}(?![.\d])")
    assert any(named.search(m) for m in found), f"ssl_protocols with {weak} passed: {found}"


@pytest.mark.parametrize("good", ["TLSv1.2 TLSv1.3", "TLSv1.3", "TLSv1.2"])
def test_tls_1_2_and_up_pass(good: str) -> None:
    assert not _violations(good), f"ssl_protocols {good} was refused"

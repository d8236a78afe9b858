"""The app's internal paths answer 404 at the edge, for every spelling settings allow;
the conf behind a trusted balancer loads.

nginx picks a location as documented for ``location``
(nginx.org/en/docs/http/ngx_http_core_module.html#location): an exact ``=``
match wins; otherwise the longest matching prefix is remembered, and used at once
if it is ``^~``; otherwise the regular expressions are tried in file order and
the first that matches wins; otherwise the remembered prefix. The model below
does that on the rendered server block; tests/real/test_nginx.py asks a real
nginx (slow). Settings allow ``[A-Za-z0-9._~/-]`` in a path, a trailing slash
included (infra/config_reader.py, ``path``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from components.configs.nginx import NginxSettings, nginx_conf
from tests.support.tls import make_tls_pair
from tests.support.tools import need

_LOCATION = re.compile(r'location\s+(=|\^~|~\*|~)?\s*("[^"]*"|\S+)\s*\{')


def _app_server(conf: str) -> str:
    (block,) = [b for b in re.split(r"\n    server \{", conf) if "proxy_pass" in b]
    return block


def _locations(block: str) -> list[tuple[str, str, str]]:
    """(modifier, pattern, body) for each location, in file order."""
    found = []
    for m in _LOCATION.finditer(block):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(block[i], 0)
            i += 1
        found.append((m.group(1) or "", m.group(2).strip('"'), block[m.end() : i - 1]))
    return found


def _chosen(locations: list[tuple[str, str, str]], uri: str) -> str:
    """The body of the location nginx picks for ``uri``."""
    for mod, pattern, body in locations:
        if mod == "=" and uri == pattern:
            return body
    prefixes = [(p, mod, b) for mod, p, b in locations if mod in ("", "^~") and uri.startswith(p)]
    longest = max(prefixes, key=lambda x: len(x[0]), default=None)
    if longest and longest[1] == "^~":
        return longest[2]
    for mod, pattern, body in locations:
        flags = re.IGNORECASE if mod == "~*" else 0
        if mod in ("~", "~*") and re.search(pattern, uri, flags):
            return body
    assert longest, f"no location for {uri}"
    return longest[2]


@pytest.mark.parametrize(
    "path", ["/api/metrics", "/api/metrics/", "/api/v1.0/~ops-metrics", "/api/opsX"]
)
def test_internal_paths_and_below_are_404_and_nothing_else_is(path: str) -> None:
    other = "/api/internal/health"
    conf = nginx_conf(NginxSettings(server_name="x", upstream="a:1", internal_paths=(path, other)))
    locations = _locations(_app_server(conf))
    base = path.rstrip("/")

    def hidden(uri: str) -> bool:
        return "return 404;" in _chosen(locations, uri)

    for uri in (base, f"{base}/", f"{base}/x", base.upper(), f"{base.upper()}/X", other):
        assert hidden(uri), f"internal path {path!r}: {uri} reaches the app"
    # Only those: a longer name, or one that differs where the path has . ~ or -.
    lookalikes = [f"{base}foo", "/api/crisis", "/"]
    lookalikes += [base.replace(c, "x", 1) for c in ".~-" if c in base]
    for uri in lookalikes:
        assert not hidden(uri), f"internal path {path!r}: {uri} is hidden too"


def test_nginx_loads_the_conf_behind_a_trusted_balancer(tmp_path: Path) -> None:
    """The real_ip directives only appear with ``trusted_proxies``, which no stack renders
    by default: ``nginx -t`` on that variant (Debian's nginx 1.22, as in test_configs)."""
    nginx, unshare = need("nginx"), need("unshare")
    conf = nginx_conf(
        NginxSettings(server_name="luna.test", upstream="app:3000", trusted_proxies=("10.0.0.0/8",))
    )
    assert "set_real_ip_from 10.0.0.0/8;" in conf and "/etc/nginx/tls/" in conf, "update this test"
    make_tls_pair(tmp_path, common_name="luna.test", alt_names="DNS:luna.test")
    (tmp_path / "nginx.conf").write_text(conf.replace("/etc/nginx/tls/", f"{tmp_path}/"))
    # nginx resolves the static upstream name at load time: a private /etc/hosts.
    (tmp_path / "hosts").write_text("127.0.0.1 app\n")
    script = f"mount --bind {tmp_path}/hosts /etc/hosts && {nginx} -t -c {tmp_path}/nginx.conf"
    proc = subprocess.run(
        [unshare, "-m", "sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0 and "syntax is ok" in proc.stderr, proc.stderr

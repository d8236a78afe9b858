"""A crisis outage paged end to end by the real programs, on the rendered configs.

Debian's Prometheus 2.42, Alertmanager 0.25 and blackbox exporter 0.23 run on
prod's rendered prometheus.yml, alert rules, alertmanager.yml and blackbox
config, unchanged in their timing: 15 s scrape and evaluation, the rules'
``for`` durations and Alertmanager's group waits are the production values.

These are older than the pinned images (Prometheus 2.54, Alertmanager 0.27). The one
difference paging depends on: Alertmanager 0.27 removed API v1, which 0.25 still
serves, so this test cannot catch a Prometheus speaking v1; tests/test_alerting.py
asserts the API version against the pinned image's CHANGELOG.

Adaptations to this host, each an asserted substitution: the service
addresses (``blackbox:9115``, ``alertmanager:9093``, ``app-N:3000``, the
self-scrape) become 127.0.0.1 ports; the receivers' URLs (PagerDuty's API,
the Slack webhook, the heartbeat) become a local webhook receiver; the public
URL keeps its host name, which a private /etc/hosts (``unshare -m``) maps to
loopback for the blackbox exporter, and gets a free port instead of 443.

Stand-ins (not the real programs): the app replicas and the edge are Python
servers whose crisis endpoint answers, fails (503) or is slow on demand; the
edge one speaks TLS with a test certificate for the public name, which the
blackbox exporter verifies (``SSL_CERT_FILE``). nginx itself is tested in
test_nginx.py.
"""

from __future__ import annotations

import functools
import itertools
import json
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.render import load_stack_config, render
from tests.real.support import Daemon, free_ports, substitute, wait_for_port
from tests.support.alerting import alertmanager_yml
from tests.support.tls import TlsPair
from tests.support.tools import need

pytestmark = pytest.mark.slow

STACK = "prod"
PAGE_WITHIN_S = 120
SLOW_S = 1.0
"""How long the slow crisis endpoint takes; prod's budget is 500 ms."""
# 20+ printable characters, as the settings require of a pager key.
PD_KEY = "pd-e2e-routing-key-0123456789"
CHAT_URL = "https://hooks.slack.test/services/e2e"
HEARTBEAT_URL = "https://heartbeat.test/e2e"


@dataclass
class CrisisState:
    mode: str = "ok"
    """``ok``, ``fail`` (503) or ``slow`` (``SLOW_S`` then 200)."""


def _app_handler(crisis_path: str, metrics_path: str, state: CrisisState) -> type[Any]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, body = 404, b"not found\n"
            if self.path == crisis_path:
                if state.mode == "slow":
                    time.sleep(SLOW_S)
                status = 503 if state.mode == "fail" else 200
                body = b"crisis line\n"
            elif self.path == metrics_path:
                status, body = 200, b"# TYPE luna_up gauge\nluna_up 1\n"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@dataclass
class Received:
    at: float
    path: str
    body: dict[str, Any]


@dataclass
class Inbox:
    """The local webhook receiver: everything Alertmanager posts, with arrival times."""

    items: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[Any]:
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with inbox.lock:
                    inbox.items.append(Received(time.monotonic(), self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [i for i in self.items if i.path == path]

    def wait(self, what: str, pred: Callable[[Received], bool], timeout: float) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [i for i in self.items if pred(i)]
            if found:
                return found[0]
            time.sleep(0.25)
        with self.lock:
            seen = [(i.path, json.dumps(i.body)[:200]) for i in self.items]
        raise AssertionError(f"no {what} within {timeout:.0f}s; received {seen}")


def _page(alertname: str, since: float) -> Callable[[Received], bool]:
    """A PagerDuty Events v2 trigger for ``alertname``, on the stack's routing key."""

    def match(item: Received) -> bool:
        body = item.body
        return (
            item.path == "/pagerduty"
            and item.at >= since
            and body.get("routing_key") == PD_KEY
            and body.get("event_action") == "trigger"
            and alertname in body.get("payload", {}).get("summary", "")
        )

    return match


def _serve(server: ThreadingHTTPServer, stack: list[ThreadingHTTPServer]) -> int:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack.append(server)
    return int(server.server_address[1])


@dataclass
class Pipeline:
    state: CrisisState
    inbox: Inbox
    prometheus: int
    alertmanager: int
    daemons: list[Daemon]

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.prometheus}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        with urllib.request.urlopen(url, timeout=10) as resp:
            result: list[dict[str, Any]] = json.load(resp)["data"]["result"]
            return result

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.alertmanager}/api/v2/alerts?" + urllib.parse.urlencode(
            {"filter": f'alertname="{alertname}"'}
        )
        with urllib.request.urlopen(url, timeout=10) as resp:
            alerts: list[dict[str, Any]] = json.load(resp)
            return alerts

    def wait_until(self, what: str, ok: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            for d in self.daemons:
                assert d.proc.poll() is None, f"{d.argv[0]} exited:\n{d.output()[-2000:]}"
            time.sleep(0.5)
        raise AssertionError(f"{what} not within {timeout:.0f}s")


def _args(rendered_args: list[str], replacements: dict[str, str], what: str) -> list[str]:
    """The container's rendered arguments, with each listed one replaced exactly once."""
    out = list(rendered_args)
    for old, new in replacements.items():
        assert out.count(old) == 1, f"{what}: expected the argument {old!r} in {rendered_args}"
        out[out.index(old)] = new
    return out


def _command(r: Any, service: str) -> list[str]:
    from infra.mocks import unwrap

    found = [
        unwrap(rec.inputs.get("command"))
        for rec in r.monitor.records.values()
        if rec.type == "docker:index/container:Container"
        and unwrap(rec.inputs.get("hostname")) == service
    ]
    assert len(found) == 1, f"{STACK}: expected one {service} container"
    return list(found[0])


@pytest.fixture
def pipeline(tls_pair: TlsPair) -> Iterator[Pipeline]:
    prometheus, amtool = need("prometheus"), need("amtool")
    alertmanager = need("prometheus-alertmanager")
    blackbox, unshare = need("prometheus-blackbox-exporter"), need("unshare")
    del amtool
    r = render(
        STACK,
        overrides=[("platform", "docker")],
        secrets=[
            ("pagerdutyRoutingKey", PD_KEY),
            ("chatWebhookUrl", CHAT_URL),
            ("heartbeatUrl", HEARTBEAT_URL),
        ],
    )
    files = r.files()

    def shipped(path: str) -> str:
        found = [t for k, t in files.items() if k.endswith(path)]
        assert len(found) == 1, f"{STACK}: expected one {path}"
        return found[0]

    prom_yml = shipped("/etc/prometheus/prometheus.yml")
    rules = shipped("/etc/prometheus/rules/luna-alerts.yml")
    bb_yml = shipped("/etc/blackbox_exporter/config.yml")
    am_yml = alertmanager_yml(r)
    config = yaml.safe_load(prom_yml)
    settings = {
        "crisis": "/api/crisis/health",
        "metrics": next(j for j in config["scrape_configs"] if j["job_name"] == "app")[
            "metrics_path"
        ],
    }
    app_job = next(j for j in config["scrape_configs"] if j["job_name"] == "app")
    if "dns_sd_configs" in app_job:
        # Docker's embedded DNS answers `app` with every replica; Prometheus' DNS
        # discovery asks a DNS server, never /etc/hosts, so here the replicas are
        # listed instead: the discovery is substituted, the job and rules are not.
        assert app_job["dns_sd_configs"] == [{"names": ["app"], "type": "A", "port": 3000}]
        del app_job["dns_sd_configs"]
        replicas = int(load_stack_config(STACK)[0]["luna:appReplicas"])
        app_job["static_configs"] = [{"targets": [f"app-{i}:3000" for i in range(replicas)]}]
        prom_yml = yaml.safe_dump(config, sort_keys=False)
    app_targets = app_job["static_configs"][0]["targets"]

    state, inbox = CrisisState(), Inbox()
    servers: list[ThreadingHTTPServer] = []
    daemons: list[Daemon] = []
    tmp = Path(tempfile.mkdtemp(prefix="luna-paging-"))
    try:
        handler = _app_handler(settings["crisis"], settings["metrics"], state)
        apps = [
            _serve(ThreadingHTTPServer(("127.0.0.1", 0), handler), servers) for _ in app_targets
        ]
        edge_server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(tls_pair.cert), str(tls_pair.key))
        edge_server.socket = ctx.wrap_socket(edge_server.socket, server_side=True)
        edge = _serve(edge_server, servers)
        hook = _serve(ThreadingHTTPServer(("127.0.0.1", 0), inbox.handler()), servers)
        prom_port, am_port, bb_port = free_ports(3)

        what = f"{STACK}: prometheus.yml"
        prom_yml = substitute(prom_yml, "blackbox:9115", f"127.0.0.1:{bb_port}", count=2, what=what)
        prom_yml = substitute(
            prom_yml, "alertmanager:9093", f"127.0.0.1:{am_port}", count=2, what=what
        )
        prom_yml = substitute(prom_yml, "127.0.0.1:9090", f"127.0.0.1:{prom_port}", what=what)
        prom_yml = substitute(
            prom_yml,
            f"http://app:3000{settings['crisis']}",
            f"http://127.0.0.1:{apps[0]}{settings['crisis']}",
            what=what,
        )
        prom_yml = substitute(
            prom_yml,
            f"https://luna-app.com{settings['crisis']}",
            f"https://luna-app.com:{edge}{settings['crisis']}",
            what=what,
        )
        for target, port in zip(app_targets, apps, strict=True):
            prom_yml = substitute(prom_yml, f"- {target}\n", f"- 127.0.0.1:{port}\n", what=what)
        what = f"{STACK}: alertmanager.yml"
        local = f"http://127.0.0.1:{hook}"
        am_yml = substitute(
            am_yml,
            "pagerduty_url: https://events.pagerduty.com/v2/enqueue",
            f"pagerduty_url: {local}/pagerduty",
            what=what,
        )
        # The chat receiver and the all-channels one.
        am_yml = substitute(am_yml, CHAT_URL, f"{local}/chat", count=2, what=what)
        am_yml = substitute(am_yml, HEARTBEAT_URL, f"{local}/heartbeat", what=what)

        (tmp / "prometheus" / "rules").mkdir(parents=True)
        (tmp / "prometheus" / "prometheus.yml").write_text(prom_yml)
        (tmp / "prometheus" / "rules" / "luna-alerts.yml").write_text(rules)
        (tmp / "alertmanager.yml").write_text(am_yml)
        (tmp / "blackbox.yml").write_text(bb_yml)
        (tmp / "hosts").write_text("127.0.0.1 localhost luna-app.com\n")

        bb_args = _args(
            _command(r, "blackbox"),
            {
                "--config.file=/etc/blackbox_exporter/config.yml": (
                    f"--config.file={tmp}/blackbox.yml"
                )
            },
            "blackbox",
        )
        script = (
            f"mount --bind {tmp}/hosts /etc/hosts && exec {blackbox} "
            + " ".join(bb_args)
            + f" --web.listen-address=127.0.0.1:{bb_port}"
        )
        daemons.append(
            Daemon(
                [unshare, "-m", "sh", "-c", script],
                log=tmp / "blackbox.log",
                # Trust the test certificate the way a browser trusts the real CA.
                env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "SSL_CERT_FILE": str(tls_pair.cert)},
            )
        )
        am_args = _args(
            _command(r, "alertmanager"),
            {
                "--config.file=/etc/alertmanager/alertmanager.yml": (
                    f"--config.file={tmp}/alertmanager.yml"
                ),
                "--storage.path=/alertmanager": f"--storage.path={tmp}/am-data",
                "--web.listen-address=:9093": f"--web.listen-address=127.0.0.1:{am_port}",
            },
            "alertmanager",
        )
        daemons.append(Daemon([alertmanager, *am_args], log=tmp / "alertmanager.log"))
        prom_args = _args(
            _command(r, "prometheus"),
            {
                "--config.file=/etc/prometheus/prometheus.yml": (
                    f"--config.file={tmp}/prometheus/prometheus.yml"
                ),
                "--storage.tsdb.path=/prometheus": f"--storage.tsdb.path={tmp}/prom-data",
            },
            "prometheus",
        )
        daemons.append(
            Daemon(
                [prometheus, *prom_args, f"--web.listen-address=127.0.0.1:{prom_port}"],
                log=tmp / "prometheus.log",
            )
        )
        for port, d in zip((bb_port, am_port, prom_port), daemons, strict=True):
            wait_for_port(port, proc=d.proc, what=d.argv[0], log=d.log, timeout=30)
        pipeline = Pipeline(state, inbox, prom_port, am_port, daemons)
        for port in (prom_port, am_port):
            pipeline.wait_until(f"127.0.0.1:{port}/-/ready", functools.partial(_ready, port), 60)
        yield pipeline
    finally:
        for d in reversed(daemons):
            d.stop()
        for s in servers:
            s.shutdown()
            s.server_close()
        shutil.rmtree(tmp, ignore_errors=True)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None


def test_a_crisis_outage_pages_within_two_minutes(pipeline: Pipeline) -> None:
    p = pipeline
    started = time.monotonic()
    # Healthy first: both probes succeed, the edge one over verified TLS to the public name.
    for job in ("crisis-probe", "crisis-edge"):
        query = f'probe_success{{job="{job}"}}'

        def succeeding(query: str = query) -> bool:
            return _value(p.query(query)) == 1.0

        p.wait_until(f"{job} succeeding", succeeding, 90)
    # Every replica scraped once (the first scrapes are spread over the interval).
    p.wait_until(
        "3 app replicas answering", lambda: _value(p.query('count(up{job="app"} == 1)')) == 3.0, 60
    )
    assert not p.alerts("LunaAppDown"), "LunaAppDown fires while every replica answers"

    # 1. Slower than the budget: the latency burn rate pages; its warning is inhibited.
    slow_at = time.monotonic()
    p.state.mode = "slow"
    page = p.inbox.wait(
        "latency burn-rate page", _page("LunaCrisisLatencyBudgetBurn", slow_at), 240
    )
    burn_s = page.at - slow_at
    print(f"\nslow crisis endpoint -> LunaCrisisLatencyBudgetBurn page: {burn_s:.1f} s")

    def inhibited() -> bool:
        alerts = p.alerts("LunaCrisisLatencyHigh")
        return bool(alerts) and all(a["status"]["inhibitedBy"] for a in alerts)

    p.wait_until("LunaCrisisLatencyHigh active and inhibited", inhibited, 240)
    warning = p.alerts("LunaCrisisLatencyHigh")[0]
    assert warning["status"]["state"] == "suppressed", warning["status"]
    print(
        "LunaCrisisLatencyHigh (warning) suppressed, inhibited by "
        f"{warning['status']['inhibitedBy']} (LunaCrisisLatencyBudgetBurn, critical)"
    )

    # 2. The crisis endpoint fails: a page within two minutes.
    p.state.mode = "fail"
    failed_at = time.monotonic()
    page = p.inbox.wait("crisis page", _page("LunaCrisisEndpointDown", failed_at), 240)
    page_s = page.at - failed_at
    print(f"crisis endpoint failing -> LunaCrisisEndpointDown page: {page_s:.1f} s")
    assert page_s <= PAGE_WITHIN_S, f"the crisis page took {page_s:.1f}s (> {PAGE_WITHIN_S}s)"
    details = json.dumps(page.body)
    assert '"severity": "critical"' in details, details

    # 3. The dead-man's switch: Watchdog heartbeats, about every minute.
    beats = [b for b in p.inbox.at("/heartbeat") if b.body.get("status") == "firing"]
    names = {a["labels"]["alertname"] for b in beats for a in b.body["alerts"]}
    gaps = [b.at - a.at for a, b in itertools.pairwise(beats)]
    print(
        f"heartbeats: {len(beats)} in {time.monotonic() - started:.0f} s, gaps "
        + ", ".join(f"{g:.0f}s" for g in gaps)
    )
    assert len(beats) >= 2 and names == {"Watchdog"}, [b.body for b in beats]
    assert max(gaps) <= 90, f"heartbeat gaps {gaps}"

    # The warning never reached chat: the critical alert of its cause held it back.
    chat = [json.dumps(c.body) for c in p.inbox.at("/chat")]
    assert not [c for c in chat if "LunaCrisisLatencyHigh" in c], chat
    assert not p.inbox.at("/chat") or all("Watchdog" not in c for c in chat), chat

"""Alerting under mocks: who is told, what alerts carry, secrecy, and bad input."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from components.configs.alertmanager import Email, Receivers, alertmanager_config
from infra.mocks import mask, unwrap
from infra.render import main, render
from tests.conftest import PLATFORMS, rendered
from tests.support.alerting import alertmanager_yml, prometheus_yml, rules_yml
from tests.support.inventory import exposed_ports, replica_count, workloads
from tests.support.tools import REPO

MONITORED = [(s, p) for s in ("staging", "prod") for p in PLATFORMS]
RUNBOOKS = REPO / "docs" / "runbooks" / "alerts"
BASE = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]["luna:runbookBaseUrl"][
    "default"
]
# What an alert may say about itself: services and probe targets, never a user.
LABEL_KEYS = {"severity", "cause"}
ANNOTATION_KEYS = {"summary", "runbook_url"}
TEMPLATE_REFS = {"$value", "$value | humanizePercentage", "$labels.instance", "$labels.integration"}
GROUPING = {"le", "integration", "instance, job", "job"}


def _alerts(r: Any) -> list[dict[str, Any]]:
    return [rule for g in rules_yml(r)["groups"] for rule in g["rules"] if "alert" in rule]


@pytest.mark.parametrize(("stack", "platform"), MONITORED)
def test_every_alert_links_a_runbook_section_that_exists(stack: str, platform: str) -> None:
    alerts = _alerts(rendered(stack, platform))
    assert len(alerts) > 15, f"{stack}/{platform}: only {len(alerts)} alerts"
    for rule in alerts:
        name, url = rule["alert"], rule["annotations"].get("runbook_url", "")
        cause = rule["labels"]["cause"]
        assert url == f"{BASE}/alerts/{cause}.md#{name.lower()}", f"{name}: runbook_url {url!r}"
        page = RUNBOOKS / f"{cause}.md"
        assert page.is_file(), f"{name}: {page.relative_to(REPO)} does not exist"
        text = page.read_text()
        section = re.search(rf"^## {name}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
        assert section, f"{name}: no '## {name}' section in {page.name}"
        body = section.group(1).strip()
        assert len(body.split()) >= 25, f"{name}: the runbook section in {page.name} is a stub"
    index = (RUNBOOKS / "README.md").read_text()
    missing = [r["alert"] for r in alerts if r["alert"] not in index]
    assert not missing, f"docs/runbooks/alerts/README.md does not list {missing}"


@pytest.mark.parametrize(("stack", "platform"), MONITORED)
def test_alerts_carry_no_health_data(stack: str, platform: str) -> None:
    for rule in _alerts(rendered(stack, platform)):
        name = rule["alert"]
        assert set(rule["labels"]) == LABEL_KEYS, f"{name}: labels {sorted(rule['labels'])}"
        assert rule["labels"]["severity"] in ("critical", "warning", "none"), name
        assert set(rule["annotations"]) == ANNOTATION_KEYS, f"{name}: {rule['annotations']}"
        refs = set(re.findall(r"\{\{\s*(.*?)\s*\}\}", rule["annotations"]["summary"]))
        assert refs <= TEMPLATE_REFS, f"{name}: summary uses {refs - TEMPLATE_REFS}"
        # Aggregations keep no request-level label (path, user, session).
        grouped = set(re.findall(r"(?:by|without) \(([^)]*)\)", rule["expr"]))
        assert grouped <= GROUPING, f"{name}: groups by {grouped - GROUPING}"


# Who reports each backup metric on each platform: the Docker database pushes
# to the Pushgateway; on Kubernetes nothing pushes: each instance's exporter serves
# CloudNativePG's own and the Barman Cloud plugin's (components/configs/rules.py).
BACKUP_SOURCES = {
    "docker": ("luna_backup_last_success_timestamp_seconds", "pg_stat_archiver_failed_count"),
    "kubernetes": (
        "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp",
        "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp",
        "cnpg_pg_stat_archiver_failed_count",
    ),
}


@pytest.mark.parametrize(("stack", "platform"), MONITORED)
def test_backup_alerts_read_what_the_platform_reports(stack: str, platform: str) -> None:
    """An alert on a metric nobody reports would page forever (``absent``) or never."""
    alerts = {r["alert"]: r["expr"] for r in _alerts(rendered(stack, platform))}
    for name in ("LunaBackupTooOld", "LunaBackupMissing", "LunaWalArchivingFailing"):
        assert name in alerts, f"{stack}/{platform}: no {name}"
        metrics = set(re.findall(r"\b([a-z_]+_(?:seconds|timestamp|count))\b", alerts[name]))
        assert metrics, f"{stack}/{platform} {name}: no metric in {alerts[name]!r}"
        assert metrics <= set(BACKUP_SOURCES[platform]), (
            f"{stack}/{platform} {name} reads {sorted(metrics)}, which nothing on "
            f"{platform} reports"
        )


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_stack_without_backups_has_no_backup_alert(platform: str) -> None:
    """dev with PostgreSQL and monitoring but no backups: nothing would ever report one."""
    overrides = [("platform", platform), ("demoApp", "false"), ("database", "postgres"),
                 ("monitoring", "true"), ("backups", "false")]  # fmt: skip
    names = {r["alert"] for r in _alerts(render("dev", overrides=overrides))}
    assert "LunaDatabaseDown" in names, f"dev/{platform}: the database is not monitored: {names}"
    backup = {n for n in names if "Backup" in n or "WalArchiving" in n or "Drill" in n}
    assert not backup, f"dev/{platform} without backups alerts on {sorted(backup)}"


@pytest.mark.parametrize(("stack", "platform"), MONITORED)
def test_lunaappdown_counts_the_replicas_the_stack_runs(stack: str, platform: str) -> None:
    r = rendered(stack, platform)
    rule = next(a for a in _alerts(r) if a["alert"] == "LunaAppDown")
    replicas = replica_count(r, "app")
    assert rule["expr"] == f'(count(up{{job="app"}} == 1) or vector(0)) < {replicas}', (
        f"{stack}/{platform}: LunaAppDown is {rule['expr']!r}, the stack runs {replicas}"
    )


@pytest.mark.parametrize("platform", PLATFORMS)
def test_alertmanager_runs_clustered_on_kubernetes_and_single_on_docker(platform: str) -> None:
    r = rendered("prod", platform)
    am = workloads(r)["alertmanager"]
    if platform == "kubernetes":
        assert replica_count(r, "alertmanager") == 2, "prod/kubernetes: Alertmanager replicas"
        args = am[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--cluster.peer=alertmanager-pods:9094" in args, args
        pdbs = [
            o
            for o in r.manifests()
            if o["kind"] == "PodDisruptionBudget"
            and o["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "alertmanager"
        ]
        assert len(pdbs) == 1 and pdbs[0]["spec"]["maxUnavailable"] == 1, pdbs
        peers = next(
            o
            for o in r.manifests()
            if o["kind"] == "Service" and o["metadata"]["name"] == ("alertmanager-pods")
        )
        assert peers["spec"]["clusterIP"] == "None", "the peer Service must list each replica"
        gossip = {(p["port"], p["protocol"]) for p in peers["spec"]["ports"]}
        assert {(9094, "TCP"), (9094, "UDP")} <= gossip, gossip
    else:
        assert len(am) == 1, f"prod/docker: {len(am)} Alertmanager containers"
        args = unwrap(am[0]["command"])
        assert "--cluster.listen-address=" in args, args


@pytest.mark.parametrize(("stack", "platform"), MONITORED)
def test_alertmanager_ui_is_never_published(stack: str, platform: str) -> None:
    r = rendered(stack, platform)
    assert "alertmanager" in workloads(r), f"{stack}/{platform}: no Alertmanager"
    assert exposed_ports(r, "alertmanager") == [], f"{stack}/{platform}: Alertmanager published"


@pytest.mark.parametrize(("stack", "platform"), MONITORED)
def test_prometheus_sends_alerts_to_every_alertmanager(stack: str, platform: str) -> None:
    managers = prometheus_yml(rendered(stack, platform))["alerting"]["alertmanagers"]
    assert len(managers) == 1, managers
    if platform == "kubernetes":
        # One A record per replica: Prometheus must notify both, not a balanced one.
        assert managers[0]["dns_sd_configs"] == [
            {"names": ["alertmanager-pods"], "type": "A", "port": 9093}
        ], managers
    else:
        # One Alertmanager on Docker, by its name.
        assert managers[0]["static_configs"] == [{"targets": ["alertmanager:9093"]}], managers


@pytest.mark.parametrize(("stack", "platform"), MONITORED)
def test_nothing_routes_to_nowhere(stack: str, platform: str) -> None:
    doc = yaml.safe_load(alertmanager_yml(rendered(stack, platform)))
    assert doc["route"]["receiver"] == "pager", "unmatched alerts must page"
    for receiver in doc["receivers"]:
        integrations = [k for k in receiver if k.endswith("_configs")]
        if receiver["name"] == "watchdog-unmonitored":
            assert stack != "prod", "prod's Watchdog must reach the heartbeat"
            continue
        assert integrations, f"{stack}/{platform}: receiver {receiver['name']} reaches nobody"


SECRETS = {
    "pagerdutyRoutingKey": "pd-routing-0a1b2c3d4e5f",
    "chatWebhookUrl": "https://hooks.slack.com/services/T000/B000/slackSECRETtoken",
    "heartbeatUrl": "https://hc-ping.com/2f7c3f0e-heartbeat-SECRET",
    "alertWebhookUrl": "https://incidents.example.com/hook/webhookSECRET",
    "smtpPassword": "smtpSECRETpassword",
}
EMAIL = [
    ("smtpSmarthost", "smtp.example.com:587"),
    ("smtpFrom", "alerts@luna-app.com"),
    ("alertEmailTo", "oncall@luna-app.com"),
    ("smtpUsername", "alerts"),
]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_receiver_secrets_stay_secret_end_to_end(platform: str) -> None:
    r = render("prod", overrides=[("platform", platform), *EMAIL], secrets=list(SECRETS.items()))
    text = alertmanager_yml(r)
    for key, value in SECRETS.items():
        assert value in text, f"{key} did not reach alertmanager.yml"
    holders = []
    for rec in r.monitor.records.values():
        plain = json.dumps(mask(rec.inputs), default=str)
        leaked = [k for k, v in SECRETS.items() if v in plain]
        assert not leaked, f"{rec.type} {rec.name} holds {leaked} in plain text"
        if SECRETS["pagerdutyRoutingKey"] in json.dumps(unwrap(rec.inputs), default=str):
            holders.append(rec)
    assert holders, "no resource ships the routing key"
    for rec in holders:
        assert rec.type in (
            "docker:index/container:Container",
            "kubernetes:core/v1:Secret",
        ), f"{rec.type} {rec.name} carries the receivers"
    shipped = "\n".join(r.files().values())
    assert not [k for k, v in SECRETS.items() if v in shipped], "the render shows a receiver secret"
    for key in SECRETS:
        assert key not in json.dumps(mask(r.outputs)), key


def test_receivers_are_secret_outputs_in_settings() -> None:
    import pulumi

    from infra.mocks import LunaMocks
    from infra.render import load_stack_config
    from infra.settings import load_settings

    secrets = [(k, v) for k, v in SECRETS.items() if k != "smtpPassword"]
    config, keys = load_stack_config("prod", secrets=secrets)
    pulumi.runtime.set_mocks(LunaMocks(), project="luna", stack="prod")
    pulumi.runtime.set_all_config(config, keys)
    a = load_settings("prod").alerting
    outputs = [a.pagerduty_routing_key, a.chat_webhook_url, a.heartbeat_url, a.webhook_url]
    assert all(o is not None for o in outputs)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def check() -> pulumi.Output[None]:
        async def flags() -> None:
            found = [await o.is_secret() for o in outputs if o is not None]
            assert all(found), f"receiver settings lost secrecy: {found}"

        return pulumi.Output.from_input(flags())

    check()


# Valid values of the other required secrets (infra/secret_checks.py checks them too).
REQUIRED = [("openaiApiKey", "sk-test-0123456789abcdefghij"), ("tlsCert", "PEM"), ("tlsKey", "PEM"),
            ("backupAccessKeyId", "AKIAEXAMPLE0123"), ("backupSecretAccessKey", "s3-secret-0123"),
            ("backupEncryptionKey", "cipher-pass-0123456789")]  # fmt: skip

HB, CHAT = SECRETS["heartbeatUrl"], SECRETS["chatWebhookUrl"]
PD = ("pagerdutyRoutingKey", "pd-routing-0a1b2c3d4e5f")
BAD_ALERTING = [
    # (stack, secrets, overrides, key named, also named)
    ("prod", [("heartbeatUrl", HB)], [], "pagerdutyRoutingKey", "opsgenieApiKey"),
    ("prod", [PD], [], "heartbeatUrl", "heartbeatUrl"),
    ("staging", [], [], "chatWebhookUrl", "pagerdutyRoutingKey"),
    ("staging", [("chatWebhookUrl", "hooks.slack.com/x")], [], "chatWebhookUrl", "https://"),
    ("staging", [("chatWebhookUrl", "http://hooks.slack.com/x")], [], "chatWebhookUrl", "https://"),
    ("staging", [("chatWebhookUrl", CHAT), ("alertWebhookUrl", "https:// x")], [],
     "alertWebhookUrl", "https://"),
    ("prod", [PD, ("heartbeatUrl", "ftp://hb.example.com/x")], [], "heartbeatUrl", "https://"),
    ("prod", [PD, ("opsgenieApiKey", "og-0a1b2c3d-4e5f-6789-abcd"), ("heartbeatUrl", HB)], [],
     "opsgenieApiKey", "one pager"),
    ("staging", [("chatWebhookUrl", CHAT)], [("smtpSmarthost", "smtp.example.com:587")],
     "smtpFrom", "together"),
    ("prod", [PD, ("heartbeatUrl", HB)], [("monitoring", "false")], "monitoring", "person"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("stack", "secrets", "overrides", "key", "also"),
    BAD_ALERTING,
    ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(BAD_ALERTING)],
)
def test_bad_alerting_config_exits_2_with_one_line(
    stack: str,
    secrets: list[tuple[str, str]],
    overrides: list[tuple[str, str]],
    key: str,
    also: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    argv = ["--stack", stack, "--out", str(tmp_path), "--require-secrets"]
    for k, v in [*REQUIRED, *secrets]:
        argv += ["--secret", f"{k}={v}"]
    for k, v in overrides:
        argv += ["--config", f"{k}={v}"]
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"{stack} {secrets} was accepted"
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert f"luna:{key} " in lines[0] and also in lines[0], lines[0]
    for _, value in secrets:
        assert value not in lines[0] or len(value) < 4, f"the error shows a secret: {lines[0]}"


def test_a_receiver_key_in_plain_text_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    code = main(["--stack", "prod", "--out", str(tmp_path), "--config", "pagerdutyRoutingKey=pd"])
    assert code == 2
    assert "luna:pagerdutyRoutingKey" in capsys.readouterr().err


def test_teams_and_email_receivers() -> None:
    doc = yaml.safe_load(
        alertmanager_config(
            Receivers(
                opsgenie_api_key="og",
                chat_kind="teams",
                chat_webhook_url="https://example.webhook.office.com/x",
                email=Email(smarthost="smtp.example.com:587", sender="a@b.io", to="c@d.io"),
            )
        )
    )
    receivers = {r["name"]: r for r in doc["receivers"]}
    assert receivers["pager"]["opsgenie_configs"][0]["priority"] == "P1"
    assert receivers["chat"]["msteams_configs"][0]["webhook_url"].endswith("/x")
    assert receivers["chat"]["email_configs"] == [{"to": "c@d.io", "send_resolved": True}]
    assert doc["global"]["smtp_require_tls"] is True


def test_without_chat_warnings_reach_the_pager_at_low_urgency() -> None:
    doc = yaml.safe_load(alertmanager_config(Receivers(pagerduty_routing_key="pd")))
    receivers = {r["name"]: r for r in doc["receivers"]}
    assert receivers["pager"]["pagerduty_configs"][0]["severity"] == "critical"
    assert receivers["chat"]["pagerduty_configs"][0]["severity"] == "warning"


def test_no_receiver_at_all_is_refused_outside_dev() -> None:
    with pytest.raises(ValueError, match="no receiver"):
        alertmanager_config(Receivers())
    doc = yaml.safe_load(alertmanager_config(Receivers(allow_unrouted=True)))
    assert doc["route"]["receiver"] == "pager"


def test_alertmanager_yml_is_written_out_in_full() -> None:
    # A YAML alias (&id001/*id001) would hide a receiver's settings from its reader.
    text = alertmanager_yml(rendered("prod", "kubernetes"))
    assert "*id" not in text and "&id" not in text, text


def test_grafana_shows_the_crisis_error_budget() -> None:
    r = rendered("staging", "docker")
    dashboard = next(t for k, t in r.files().items() if k.endswith("luna-overview.json"))
    panels = {p["title"]: p["targets"][0]["expr"] for p in json.loads(dashboard)["panels"]}
    objective = float(
        yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]["luna:crisisSloObjective"][
            "default"
        ]
    )
    budget = f"{1 - objective / 100:.6g}"
    assert budget == "0.001", budget
    for sli, series in (("availability", "errors"), ("latency", "slow")):
        expr = panels[f"Crisis {sli} error budget left (30d)"]
        assert expr == f"1 - avg_over_time(luna:crisis_probe_{series}:bool[30d]) / {budget}", expr
    rules = rules_yml(r)
    records = {x["record"] for g in rules["groups"] for x in g["rules"] if "record" in x}
    assert {"luna:crisis_probe_errors:bool", "luna:crisis_probe_slow:bool"} <= records
    burn = next(a for a in _alerts(r) if a["alert"] == "LunaCrisisAvailabilityBudgetBurn")
    # 14.4x and 6x the budget: the SRE workbook's page thresholds for 30 days.
    assert "ratio_avg1h > 0.0144" in burn["expr"] and "ratio_avg6h > 0.006" in burn["expr"]


# Alertmanager 0.27.0 removed every api/v1 endpoint: they answer 410 and log a
# deprecation (prometheus/alertmanager CHANGELOG.md, "0.27.0 / 2024-02-28", #2970).
# Debian's 0.25, which tests/real/test_paging.py runs, still serves v1, so a Prometheus
# told to speak v1 pages fine there and never in production: only this check catches it.
V1_REMOVED_IN = (0, 27)


def _alertmanager_image(r: Any) -> str:
    """The image the render deploys: the Pod's, or the Docker RemoteImage's pulled name."""
    for item in workloads(r)["alertmanager"]:
        if "kind" in item:
            (container,) = item["spec"]["template"]["spec"]["containers"]
            return str(container["image"])
    pulled = [
        str(unwrap(rec.inputs["name"]))
        for rec in r.monitor.records.values()
        if rec.type == "docker:index/remoteImage:RemoteImage"
        and "alertmanager" in str(unwrap(rec.inputs["name"]))
    ]
    assert len(pulled) == 1, f"Alertmanager images pulled: {pulled}"
    return pulled[0]


@pytest.mark.parametrize(("stack", "platform"), MONITORED)
def test_prometheus_speaks_the_api_the_pinned_alertmanager_serves(
    stack: str, platform: str
) -> None:
    r = rendered(stack, platform)
    image = _alertmanager_image(r)
    match = re.search(r"alertmanager:v(\d+)\.(\d+)\.\d+", image)
    assert match, f"cannot read the Alertmanager version from {image!r}"
    version = (int(match[1]), int(match[2]))
    served = {"v2"} if version >= V1_REMOVED_IN else {"v1", "v2"}
    for manager in prometheus_yml(r)["alerting"]["alertmanagers"]:
        # Prometheus 2.x defaults to v2 (docs/configuration/configuration.md,
        # <alertmanager_config>).
        api = manager.get("api_version", "v2")
        assert api in served, f"{image} serves {sorted(served)}; Prometheus speaks {api}"


def test_the_incident_webhook_gets_each_alert_as_soon_as_its_channel_does() -> None:
    """A crisis reaches the generic webhook with the pager's timings, a warning with
    chat's: the rehearsal's alerts scenario waited minutes for a crisis that came back
    inside the root route's 5m group_interval."""
    doc = yaml.safe_load(
        alertmanager_config(
            Receivers(pagerduty_routing_key="pd", webhook_url="https://incidents.example.com/h")
        )
    )
    timing = ("group_wait", "group_interval", "repeat_interval")
    routes = doc["route"]["routes"]
    for severity, channel in (("critical", "pager"), ("warning", "chat")):
        matchers = [f'severity="{severity}"']
        (hook,) = [r for r in routes if r["receiver"] == "webhook" and r["matchers"] == matchers]
        (own,) = [r for r in routes if r["receiver"] == channel and "continue" not in r]
        assert hook["continue"] is True
        assert [hook[k] for k in timing] == [own[k] for k in timing], (severity, hook, own)

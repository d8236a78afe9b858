"""Configuration: defaults per stack, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from infra.mocks import LunaMocks, unwrap
from infra.render import load_stack_config, main, render
from infra.settings import ConfigError
from tests.support.tools import REPO

BAD_VALUES = [
    ("platform", "swarm"),
    ("dockerHost", "localhost"),
    ("appImage", "ghcr.io/luna-app/luna-web:latest"),
    ("appImage", "ghcr.io/luna-app/luna-web"),
    ("appUrl", "ftp://luna-app.com"),
    ("nodeEnv", "test"),
    ("appReplicas", "0"),
    ("appReplicas", "three"),
    ("appMemoryMb", "64"),
    ("appCpus", "lots"),
    ("healthPath", "api/health"),
    ("database", "mysql"),
    ("databaseVolumeGb", "-5"),
    ("backups", "yes"),
    ("backupIntervalHours", "5"),
    ("backupRetentionDays", "0"),
    ("backupEndpoint", "https://s3.example.com"),
    ("backupBucket", "Bad_Bucket"),
    ("backupBucket", ""),
    ("backupRegion", ""),
    ("postgresInstances", "1"),
    ("backups", "false"),
    ("redisEvictionPolicy", "lru"),
    ("redisMaxMemoryMb", "1"),
    ("httpsPort", "70000"),
    ("clientMaxBodyMb", "0"),
    ("crisisLatencyBudgetMs", "1"),
    ("logRetentionDays", "0"),
    ("auditRetentionDays", "365"),
    ("elasticsearchHeapMb", "64"),
    ("protectData", "maybe"),
    ("postgresImage", "postgres"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_bad_value_exits_2_with_one_line_naming_the_key(
    key: str, value: str, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    code = main(["--stack", "staging", "--out", str(tmp_path), "--config", f"{key}={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, f"{key}={value} exited {code}"
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line, got {err}"
    assert f"luna:{key}" in errors[0] and repr(value) in errors[0], errors[0]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("stack", "overrides", "key"),
    [
        ("dev", [("appReplicas", "2")], "appReplicas"),  # sqlite has one writer
        ("prod", [("database", "sqlite")], "database"),
        ("dev", [("database", "postgres"), ("appReplicas", "2")], "appReplicas"),
        ("dev", [("backups", "true")], "backups"),
        ("staging", [("apReplicas", "2")], "apReplicas"),  # a typo is not ignored
        # A cross-key error blames the key the operator set, not its partner.
        ("prod", [("appReplicas", "40"), ("appMaxReplicas", "30")], "appReplicas"),
        ("prod", [("platform", "docker"), ("httpsPort", "3001")], "httpsPort"),
        ("prod", [("platform", "docker"), ("grafanaPort", "443")], "grafanaPort"),
    ],
)
def test_inconsistent_settings_name_the_key(
    stack: str, overrides: list[tuple[str, str]], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        render(stack, overrides=overrides)
    assert info.value.key == key, str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("apReplicas", "appReplicas"), ("appurl", "appUrl"), ("grafanaport", "grafanaPort")],
)
def test_an_unknown_key_gets_did_you_mean(typo: str, meant: str) -> None:
    with pytest.raises(ConfigError, match=rf"did you mean {meant}\?"):
        render("staging", overrides=[(typo, "1")])


def test_an_unknown_key_far_from_any_gets_no_guess() -> None:
    with pytest.raises(ConfigError) as info:
        render("staging", overrides=[("zzzUnrelated", "1")])
    assert "did you mean" not in str(info.value), str(info.value)


def test_port_defaults_match_pulumi_yaml() -> None:
    import yaml

    from infra.settings_rules import PORT_DEFAULTS

    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    assert {k: declared[f"luna:{k}"]["default"] for k in PORT_DEFAULTS} == PORT_DEFAULTS


def test_a_secret_key_in_plain_text_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"luna:dbPassword .*--secret"):
        render("staging", overrides=[("dbPassword", "hunter2hunter2")])


def test_a_plain_key_set_as_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"luna:appReplicas"):
        render("staging", secrets=[("appReplicas", "2")])


def test_tls_cert_without_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"tlsCert and tlsKey"):
        render("staging", secrets=[("tlsCert", "PEM")])


def test_supplied_secrets_replace_generated_ones() -> None:
    r = render("staging", secrets=[("dbPassword", "Supplied-Wombat-Quasar-8271")])
    records = {rec.name: rec for rec in r.monitor.records.values()}
    # The generator stays (supplying a value later must not delete it), unused.
    assert "luna-database-password" in records and "luna-cache-password" in records
    generated = unwrap(records["luna-database-password"].outputs["result"])
    url = unwrap(r.outputs["database_url"])
    assert ":Supplied-Wombat-Quasar-8271@" in url and generated not in url, url


def test_unknown_stack_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--stack", "qa", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "--stack" in capsys.readouterr().err


def test_cli_prints_no_traceback_end_to_end(tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.render", "--stack", "prod", "--out", str(tmp_path),
         "--config", "appReplicas=-1"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("note:")]
    assert lines == ["error: config luna:appReplicas = '-1' is invalid: an integer from 1 to 50"]


FREE_FORM = {"kubeContext", "registryUsername", "smtpUsername"}  # any context / user name
EXPLICIT_BAD = {
    "restoreToTime": "yesterday 9:30",
    "registryServer": "https://ghcr.io/luna",
    "platform": "swarm",
    "dockerHost": "localhost",
    "appUrl": "ftp://luna-app.com",
    "nodeEnv": "test",
    "appCpus": "lots",
    "postgresCpus": "0.1",
    "database": "mysql",
    "redisEvictionPolicy": "lru",
    "storageClass": "Bad_Class",
    "backupBucket": "Bad_Bucket",
    "backupEndpoint": "https://s3.example.com/",
    "backupRegion": "eu central",
    "backupUriStyle": "virtual",
    "backupKmsKeyId": "alias/aws/s3",
    "cnpgOperator": "helm",
    "chatKind": "discord",
    "smtpSmarthost": "smtp.example.com",
    "smtpFrom": "not-an-address",
    "alertEmailTo": "oncall",
    "crisisSloObjective": "100",
    "runbookBaseUrl": "http://docs.example.com/runbooks",
}


def _bad_value(key: str, declaration: dict[str, object]) -> str:
    if key in EXPLICIT_BAD:
        return EXPLICIT_BAD[key]
    if declaration.get("type") == "integer":
        return "not-a-number"
    if declaration.get("type") == "boolean":
        return "maybe"
    if key.endswith("Image"):
        return "registry.example/luna:latest"
    if key.endswith("Path"):
        return "no-leading-slash"
    raise AssertionError(f"no bad value known for luna:{key}; add one to EXPLICIT_BAD")


def _declared_keys() -> list[tuple[str, dict[str, object]]]:
    import yaml

    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    return [
        (full.split(":", 1)[1], decl)
        for full, decl in project["config"].items()
        if full.split(":", 1)[1] not in FREE_FORM
    ]


@pytest.mark.parametrize(("key", "declaration"), _declared_keys(), ids=lambda v: str(v)[:40])
def test_every_declared_key_rejects_a_bad_value(
    key: str, declaration: dict[str, object], capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    value = _bad_value(key, declaration)
    code = main(["--stack", "prod", "--out", str(tmp_path), "--config", f"{key}={value}"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2, f"luna:{key}={value!r} was accepted"
    assert len(errors) == 1 and f"luna:{key} " in errors[0], errors


def test_runs_as_pulumi_runs_it_from_inside_infra(tmp_path: object) -> None:
    """`main: infra/`: Pulumi runs infra/__main__.py with infra/ as sys.path[0]."""
    script = (
        "import runpy, sys, pulumi\n"
        "from infra.mocks import LunaMocks, RecordingMonitor\n"
        "from infra.render import load_stack_config\n"
        "sys.path[0] = '.'\n"
        "stack, replicas = sys.argv[1], sys.argv[2]\n"
        "config, secret_keys = load_stack_config(stack, overrides=[('appReplicas', replicas)])\n"
        "monitor = RecordingMonitor(LunaMocks())\n"
        "pulumi.runtime.set_mocks(LunaMocks(), project='luna', stack=stack, monitor=monitor)\n"
        "pulumi.runtime.set_all_config(config, secret_keys)\n"
        "@pulumi.runtime.test\n"
        "def run():\n"
        "    runpy.run_path('.', run_name='__main__')\n"
        "try:\n"
        "    run()\n"
        "except pulumi.RunError as e:\n"
        "    print('RunError:', e); sys.exit(3)\n"
        "print(len(monitor.records), 'resources')\n"
    )  # fmt: skip
    ok = subprocess.run(
        [sys.executable, "-c", script, "dev", "1"],
        cwd=REPO / "infra", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert int(ok.stdout.split()[0]) > 5, ok.stdout
    bad = subprocess.run(
        [sys.executable, "-c", script, "dev", "0"],
        cwd=REPO / "infra", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert bad.stdout.strip() == (
        "RunError: config luna:appReplicas = '0' is invalid: an integer from 1 to 50"
    ), bad.stdout


def test_prod_requires_a_real_certificate() -> None:
    from infra.settings import load_settings

    config, secret_keys = load_stack_config("prod")
    for key in ("tlsCert", "tlsKey"):
        del config[f"luna:{key}"]  # the render fills required secrets with placeholders
        secret_keys.remove(f"luna:{key}")
    pulumi.runtime.set_mocks(LunaMocks(), project="luna", stack="prod")
    pulumi.runtime.set_all_config(config, secret_keys)
    with pytest.raises(ConfigError, match=r"luna:tlsCert .*required in prod"):
        load_settings("prod")


@pytest.mark.parametrize("paste", ["\n", "\r\n", " ", "\t"])
def test_a_backup_key_with_pasted_whitespace_is_refused(paste: str) -> None:
    """The drill reads the key from the same variable and passes; a restore with the key
    as kept in the vault (no newline) could not decrypt one backup."""
    key = "q8/Zr+Xc2VbN1mLk0PoIu9YtRe4WsQa="
    with pytest.raises(ConfigError) as info:
        render("staging", secrets=[("backupEncryptionKey", key + paste)])
    assert info.value.key == "backupEncryptionKey", str(info.value)
    assert key not in str(info.value), "the key is echoed"


def test_prod_on_kubernetes_survives_losing_a_standby() -> None:
    """Prod's Cluster requires a synchronous standby (``dataDurability: required``): with
    two instances, losing one stops every write, so prod needs three."""
    kubernetes = ("platform", "kubernetes")
    with pytest.raises(ConfigError) as info:
        render("prod", overrides=[kubernetes, ("postgresInstances", "2")])
    assert info.value.key == "postgresInstances", str(info.value)
    cluster = next(
        o for o in render("prod", overrides=[kubernetes]).manifests() if o["kind"] == "Cluster"
    )["spec"]
    synchronous = cluster["postgresql"]["synchronous"]
    assert synchronous["dataDurability"] == "required", synchronous
    # The primary, the standbys a commit waits for, and one more that may be lost.
    assert cluster["instances"] >= synchronous["number"] + 2, cluster["instances"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_require_secrets_names_every_missing_secret_in_one_line(
    stack: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from infra.settings import required_secret_groups, required_secrets

    code = main(["--stack", stack, "--out", str(tmp_path / "out"), "--require-secrets"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1, err
    from infra.render import load_stack_config

    platform = load_stack_config(stack)[0].get("luna:platform", "docker")
    wanted = [
        *required_secrets(stack, platform),
        *(k for g in required_secret_groups(stack) for k in g),
    ]
    missing = [k for k in wanted if f"luna:{k}" not in err[0]]
    assert not missing, f"{stack}: one run does not name {missing}: {err[0]}"

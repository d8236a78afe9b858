"""Kubernetes backups under the stack's KMS key, and egress to exactly the
configured ports (issues 21 and 23).

- ``luna:backupKmsKeyId`` turns the ObjectStore's server-side encryption into
  SSE-KMS under that key (components/platforms/kubernetes/barman.py), checked
  against the plugin's CRD; a malformed or AWS-managed key id, or one on Docker,
  is refused in one line with exit 2.
- The NetworkPolicies open the webhook receivers' ports and the object store's
  port as configured, non-default ones included, and no other internet port.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.render import main, render
from tests.kubernetes.cnpg_support import _ints, schema_errors

KEY = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
INTERNET = "0.0.0.0/0"


def _objects(
    stack: str, *config: tuple[str, str], secrets: tuple[tuple[str, str], ...] = ()
) -> list[dict[str, Any]]:
    out = render(stack, overrides=(("platform", "kubernetes"), *config), secrets=secrets)
    return [_ints(m) for m in out.manifests()]


def _store(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (store,) = [o for o in objects if o["kind"] == "ObjectStore"]
    return store


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_kms_key_id_encrypts_every_backup_object_under_that_key(stack: str) -> None:
    store = _store(_objects(stack, ("backupKmsKeyId", KEY)))
    conf = store["spec"]["configuration"]
    arg = [f"--sse-kms-key-id={KEY}"]
    assert conf["wal"]["encryption"] == "aws:kms", conf["wal"]
    assert conf["wal"]["archiveAdditionalCommandArgs"] == arg, conf["wal"]
    assert conf["data"]["encryption"] == "aws:kms", conf["data"]
    assert conf["data"]["additionalCommandArgs"] == arg, conf["data"]
    assert not schema_errors([store]), schema_errors([store])


def test_without_a_key_id_backups_use_the_stores_sse_s3() -> None:
    conf = _store(_objects("prod"))["spec"]["configuration"]
    for part in ("wal", "data"):
        assert conf[part]["encryption"] == "AES256", conf[part]
        extra = {k for k in conf[part] if k.endswith("AdditionalCommandArgs")
                 or k == "additionalCommandArgs"}  # fmt: skip
        assert not extra, f"{part}: {extra}"


@pytest.mark.parametrize(
    ("value", "platform"),
    [
        ("alias/aws/s3", "kubernetes"),  # AWS-managed: not a key the stack controls
        ("arn:aws:kms:eu-central-1:1234:key/1234abcd-12ab-34cd-56ef-1234567890ab", "kubernetes"),
        ("1234abcd-12ab-34cd-56ef-1234567890ab --no-check", "kubernetes"),
        ("--sse-kms-key-id=x", "kubernetes"),
        (KEY, "docker"),  # pgBackRest ciphers the repository itself
    ],
)
def test_a_bad_kms_key_id_is_refused_in_one_line(
    value: str, platform: str, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    argv = ["--stack", "prod", "--out", str(tmp_path), "--config", f"platform={platform}"]
    code = main([*argv, "--config", f"backupKmsKeyId={value}"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, f"{value!r} on {platform} accepted"
    assert len(errors) == 1 and "luna:backupKmsKeyId " in errors[0], errors
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "value", ["alias/luna-prod-backups", "mrk-1234abcd12ab34cd56ef1234567890ab",
              "arn:aws:kms:eu-central-1:111122223333:alias/luna-backups"],
)  # fmt: skip
def test_every_kms_key_id_form_renders(value: str) -> None:
    conf = _store(_objects("prod", ("backupKmsKeyId", value)))["spec"]["configuration"]
    assert conf["wal"]["archiveAdditionalCommandArgs"] == [f"--sse-kms-key-id={value}"]


def _internet_ports(objects: list[dict[str, Any]], name: str) -> set[int]:
    """TCP ports a policy opens towards the internet (an ipBlock of 0.0.0.0/0)."""
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy"
                  and o["metadata"]["name"] == name)  # fmt: skip
    return {
        int(p["port"])
        for rule in policy["spec"].get("egress", [])
        if any((peer.get("ipBlock") or {}).get("cidr") == INTERNET for peer in rule.get("to", []))
        for p in rule.get("ports", [])
    }


def _policy_ports(objects: list[dict[str, Any]], name: str) -> set[int]:
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy"
                  and o["metadata"]["name"] == name)  # fmt: skip
    return {int(p["port"]) for rule in policy["spec"]["egress"] if "to" not in rule
            for p in rule.get("ports", [])}  # fmt: skip


def test_egress_opens_the_configured_receiver_and_store_ports_and_nothing_else() -> None:
    secrets = (
        ("chatWebhookUrl", "https://hooks.example.com:8443/services/T0/B0/XXXX"),
        ("alertWebhookUrl", "https://incidents.example.com:9443/hook/abc"),
        ("heartbeatUrl", "https://beat.example.com:10443/ping/abc"),
    )
    config = (("backupEndpoint", "objects.example.com:9000"), ("backupUriStyle", "path"),
              ("smtpSmarthost", "smtp.example.com:2525"), ("smtpFrom", "luna@example.com"),
              ("alertEmailTo", "oncall@example.com"), ("smtpUsername", "luna"))  # fmt: skip
    objects = _objects(
        "prod", *config, secrets=(*secrets, ("smtpPassword", "Smtp0Pass0Word0123456789"))
    )
    # prod pages through PagerDuty's https:// API (443); the rest as configured.
    assert _internet_ports(objects, "alertmanager") == {443, 2525, 8443, 9443, 10443}
    assert _internet_ports(objects, "database") == {9000}
    # Elasticsearch's snapshots of the audit index go to the same store.
    assert _internet_ports(objects, "elasticsearch") == {9000}
    # The protected policy that keeps a retained cluster archiving: the API server and the store.
    assert _policy_ports(objects, "database-cnpg") == {443, 6443, 9000}


def test_without_pagers_no_https_port_is_opened_that_no_receiver_uses() -> None:
    secrets = (("chatWebhookUrl", "https://hooks.example.com:8443/services/T0/B0/XXXX"),)
    objects = _objects("staging", secrets=secrets)
    assert _internet_ports(objects, "alertmanager") == {8443}

"""Generated configuration: pure builders, and the real nginx/promtool on the render."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from components.configs import pgbackrest as br
from components.configs import postgres as pg
from components.configs.nginx import NginxSettings, nginx_conf
from components.configs.prometheus import AlertThresholds, alert_rules
from components.configs.redis import RedisTls, redis_acl_conf, redis_conf
from infra.render import write
from tests.conftest import PLATFORMS, rendered
from tests.support.tls import make_tls_pair
from tests.support.tools import need

EDGE_STACKS = [(s, p) for s in ("staging", "prod") for p in PLATFORMS]


def _one(files: dict[str, str], suffix: str) -> str:
    found = [text for path, text in files.items() if path.endswith(suffix)]
    assert len(found) == 1, f"expected one {suffix}, found {len(found)}"
    return found[0]


def test_nginx_allows_only_tls_12_and_13() -> None:
    conf = nginx_conf(NginxSettings(server_name="luna.test", upstream="a:1"))
    assert re.findall(r"ssl_protocols ([^;]+);", conf) == ["TLSv1.2 TLSv1.3"]
    assert "Strict-Transport-Security" in conf and "return 301 https://" in conf


def test_nginx_resolves_replicas_per_request_with_a_resolver() -> None:
    conf = nginx_conf(NginxSettings(server_name="x", upstream="app:3000", resolver="127.0.0.11"))
    assert "resolver 127.0.0.11 valid=2s ipv6=off;" in conf, conf
    assert 'set $luna_app "app:3000";' in conf and "proxy_pass http://$luna_app;" in conf
    assert "upstream luna_app" not in conf, "a static upstream resolves only at start"
    static = nginx_conf(NginxSettings(server_name="x", upstream="app:3000"))
    assert re.findall(r"server (app:3000)", static) == ["app:3000"]
    assert "resolver " not in static


def test_nginx_redirect_keeps_a_non_default_https_port() -> None:
    conf = nginx_conf(NginxSettings(server_name="x", upstream="a:1", public_https_port=8443))
    assert "return 301 https://x:8443$request_uri;" in conf


def test_nginx_error_log_keeps_no_request_scoped_line_and_hides_internal_paths() -> None:
    conf = nginx_conf(
        NginxSettings(server_name="x", upstream="a:1", internal_paths=("/api/metrics",))
    )
    # error, warn and below carry `client:` and `request:` (tests/real/test_nginx.py).
    assert re.findall(r"^error_log (\S+) (\w+);", conf, re.M) == [("/dev/stderr", "crit")]
    assert "$remote_addr" not in conf.split("log_format", 1)[1].split(";", 1)[0]
    assert len(re.findall(r"^\s*access_log /dev/stdout", conf, re.M)) == 1
    assert "location = /api/metrics {\n            return 404;" in conf
    assert "location ^~ /api/metrics/ {\n            return 404;" in conf
    assert 'location ~* "^/api/metrics(/|$)" {\n            return 404;' in conf
    assert "404" not in nginx_conf(NginxSettings(server_name="x", upstream="a:1"))


def test_nginx_needs_an_upstream() -> None:
    with pytest.raises(ValueError, match="upstream"):
        nginx_conf(NginxSettings(server_name="x", upstream=""))


def test_redis_rejects_unknown_policy_and_empty_or_shared_passwords() -> None:
    tls = RedisTls("/c", "/k", "/ca")
    with pytest.raises(ValueError, match="eviction policy"):
        redis_conf(max_memory_mb=64, eviction_policy="lru", acl_include="/x", tls=tls)
    with pytest.raises(ValueError, match="empty"):
        redis_acl_conf(app_password="", exporter_password="e" * 32)
    with pytest.raises(ValueError, match="share"):
        redis_acl_conf(app_password="a" * 32, exporter_password="a" * 32)


def test_redis_acl_holds_password_hashes_only() -> None:
    # A quote or a redis.conf escape cannot break the file: only its SHA-256 is written.
    password = 'x" \\x41 #@'
    acl = redis_acl_conf(app_password=password, exporter_password="e" * 32)
    assert password not in acl and "\\x41" not in acl
    assert "#" + hashlib.sha256(password.encode()).hexdigest() in acl
    assert re.search(r"^user default off resetpass .*-@all$", acl, re.M), acl


def test_archive_timeout_bounds_the_recovery_point() -> None:
    flags = " ".join(pg.server_flags(tls_dir=None, hba_file=None, archive=True))
    assert "archive_timeout=60s" in flags and "archive_mode=on" in flags, flags
    with pytest.raises(ValueError, match="archive_timeout"):
        pg.server_flags(tls_dir=None, hba_file=None, archive=True, archive_timeout_s=300)


def test_roles_script_carries_no_password_and_grants_no_privilege() -> None:
    sql = pg.roles_sql()
    assert "PASSWORD :'app_password'" in sql, "passwords come from psql variables"
    assert "SET log_statement = 'none'" in sql.splitlines()[2], "passwords would be logged"
    for word in (" SUPERUSER", " CREATEDB", " CREATEROLE", " REPLICATION", "pg_execute_server"):
        assert not any(
            word in line and "NO" + word.strip() not in line for line in sql.splitlines()
        ), word


def test_roles_sql_gives_the_password_to_the_login_role_and_keeps_one_previous() -> None:
    """The text the role job runs (its semantics, on a real server, are
    tests/real/test_postgres_rotation.py's): the app's password goes to its login
    role only, the group never gets LOGIN, and a DROP spares the current and the
    previous login."""
    lines = pg.roles_sql().splitlines()
    with_password = [ln for ln in lines if "PASSWORD :'app_password'" in ln]
    assert len(with_password) == 1 and with_password[0].startswith('ALTER ROLE :"app_login"')
    assert " INHERIT " in with_password[0], "the login role would not use the group's rights"
    assert not any(ln.startswith("ALTER ROLE luna_app WITH LOGIN") for ln in lines), lines
    (drop,) = [ln for ln in lines if "DROP ROLE" in ln]
    assert "rolname <> :'app_login'" in drop and "rolname <> :'app_previous'" in drop, drop
    assert "'^luna_app_[0-9a-f]{8}$'" in drop, f"the DROP may reach another role: {drop}"
    (previous,) = [ln for ln in lines if ln.endswith("AS app_previous \\gset")]
    assert "ORDER BY kind DESC, at DESC LIMIT 1" in previous, previous
    hba = [ln.split() for ln in pg.pg_hba().splitlines() if "scram-sha-256" in ln]
    assert hba == [["hostssl", "luna", "luna_owner,+luna_app,luna_monitor", "all", "scram-sha-256"]]


def test_app_login_role_is_keyed_and_follows_the_password() -> None:
    """Role names are visible to every database user: the name must not be a plain
    hash of the password (an offline guessing oracle), only the key's HMAC of it."""
    name = pg.app_login_role("key-1", "Pa55word-a")
    assert pg.APP_LOGIN_RE.match(name), name
    assert name == pg.app_login_role("key-1", "Pa55word-a"), "the same password, a new name"
    assert name != pg.app_login_role("key-1", "Pa55word-b"), "a rotation kept the name"
    assert name != pg.app_login_role("key-2", "Pa55word-a"), "the key plays no part"
    plain = hashlib.sha256(b"Pa55word-a").hexdigest()[:8]
    assert not name.endswith(plain), "the name is a plain hash of the password"


def test_prisma_url_verifies_and_encodes_the_password() -> None:
    url = pg.prisma_url(user="luna_app", password="p@ss:w/rd#?&", host="database", ca_file="/c.crt")
    assert url.startswith("postgresql://luna_app:p%40ss%3Aw%2Frd%23%3F%26@database:5432/luna?")
    assert "sslmode=require&sslaccept=strict&sslcert=/c.crt" in url


def test_drill_refuses_table_names_it_would_have_to_quote() -> None:
    with pytest.raises(ValueError, match="plain table name"):
        br.drill_script(key_tables=('x"; DROP',), push_url=None, scratch="/s",
                        secrets_file="/f", include_dir="/i")  # fmt: skip


def test_memory_sets_shared_buffers_and_effective_cache_size() -> None:
    flags = " ".join(pg.server_flags(tls_dir=None, hba_file=None, archive=False, memory_mb=2048))
    assert "shared_buffers=512MB" in flags and "effective_cache_size=1536MB" in flags, flags


def test_pgbackrest_fails_fast_and_bounds_pg_wal() -> None:
    store = br.ObjectStore(bucket="b", endpoint="s3.example.com:9000", region="r", path="/p",
                           retention_days=30)  # fmt: skip
    text = br.pgbackrest_conf(store, pgdata="/d", queue_max_mb=2560)
    conf = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    push = text.split("[global:archive-push]\n", 1)[1].split("\n\n", 1)[0]
    # A dead store must fail each archive-push within a minute (8 min with the defaults;
    # one push makes about eight io-timeout waits).
    assert "io-timeout=5" in push.splitlines(), push
    assert "archive-push-queue-max=2560MiB" in push.splitlines(), push
    assert int(conf["io-timeout"]) <= 15, conf
    assert int(conf["protocol-timeout"]) > int(conf["db-timeout"]), "pgBackRest refuses this"
    assert conf["repo1-retention-full-type"] == "time" and conf["repo1-retention-full"] == "30"
    # Secrets are never in the main file: they travel in the include file.
    assert not {"repo1-cipher-pass", "repo1-s3-key", "repo1-s3-key-secret"} & conf.keys()


def test_pgbackrest_secrets_file_refuses_a_line_break() -> None:
    text = br.secrets_conf(access_key_id="AKIA", secret_access_key="s", cipher_pass="c")
    assert "repo1-cipher-pass=c\n" in text and text.startswith("# Generated")
    with pytest.raises(ValueError, match="repo1-cipher-pass"):
        br.secrets_conf(access_key_id="AKIA", secret_access_key="s", cipher_pass="c\nrepo1-x=y")


def test_backup_loop_takes_weekly_fulls_and_pushes_from_a_file() -> None:
    script = br.backup_script(
        secrets_file="/s", include_dir="/i", socket_dir="/r", interval_s=86400,
        push_url="http://pg:9091/metrics/job/b",
    )  # fmt: skip
    assert "--post-file=/dev/stdin" not in script, "GNU wget refuses a pipe"
    assert '--post-file="$metrics"' in script
    assert "-ge 604800 ]; then type=full" in script and "type=diff" in script
    assert "set -e" not in script, "one failed backup would end the loop"
    assert "exec " not in script


def test_alert_rules_only_cover_deployed_services() -> None:
    doc = yaml.safe_load(alert_rules(AlertThresholds(jobs=("app",))))
    names = {r["alert"] for r in doc["groups"][0]["rules"]}
    assert names == {"LunaAppDown", "LunaHighErrorRate", "LunaHighLatencyP95"}, names


@pytest.mark.parametrize(("stack", "platform"), EDGE_STACKS)
def test_rendered_nginx_conf_passes_nginx_t(stack: str, platform: str, tmp_path: Path) -> None:
    nginx, unshare = need("nginx"), need("unshare")
    conf = _one(rendered(stack, platform).files(), "/etc/nginx/luna/nginx.conf")
    make_tls_pair(tmp_path, common_name="luna.test", alt_names="DNS:luna.test")
    assert "/etc/nginx/luna/tls/" in conf, "certificate paths moved; update this test"
    # Kubernetes: the stack CA the app's certificate is verified with (any CA loads).
    (tmp_path / "internal-ca.crt").write_text((tmp_path / "tls.crt").read_text())
    local = conf.replace("/etc/nginx/luna/tls/", f"{tmp_path}/")
    (tmp_path / "nginx.conf").write_text(local)
    # nginx resolves static upstream names at load time: give them a private
    # /etc/hosts. A name behind `resolver` is looked up per request instead.
    hosts = sorted(set(re.findall(r"^\s*server ([a-z0-9-]+):\d+", conf, re.M)))
    dynamic = re.findall(r'^\s*set \$luna_app "[a-z0-9-]+:\d+";', conf, re.M)
    assert hosts or dynamic, "no upstream in nginx.conf"
    (tmp_path / "hosts").write_text("".join(f"127.0.0.1 {h}\n" for h in hosts))
    script = f"mount --bind {tmp_path}/hosts /etc/hosts && {nginx} -t -c {tmp_path}/nginx.conf"
    proc = subprocess.run(
        [unshare, "-m", "sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, f"{stack}/{platform}: nginx -t failed:\n{proc.stderr}"
    assert "syntax is ok" in proc.stderr


@pytest.mark.parametrize(("stack", "platform"), EDGE_STACKS)
def test_rendered_prometheus_config_and_rules_pass_promtool(
    stack: str, platform: str, tmp_path: Path
) -> None:
    promtool = need("promtool")
    write(rendered(stack, platform), tmp_path)
    configs = sorted(tmp_path.glob("files/**/prometheus.yml"))
    assert len(configs) == 1, f"{stack}: {configs}"
    rules = sorted(tmp_path.glob("files/**/luna-alerts.yml"))
    assert len(rules) == 1, f"{stack}: {rules}"
    for args in (["check", "config", str(configs[0])], ["check", "rules", str(rules[0])]):
        proc = subprocess.run(
            [promtool, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, (
            f"{stack}: promtool {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        )
    n_rules = sum(len(g["rules"]) for g in yaml.safe_load(rules[0].read_text())["groups"])
    assert n_rules > 10 and f"SUCCESS: {n_rules} rules found" in proc.stdout, proc.stdout


def test_nginx_forwarded_for_is_the_peer_unless_a_trusted_balancer_is_configured() -> None:
    direct = nginx_conf(NginxSettings(server_name="x", upstream="a:1"))
    assert "$proxy_add_x_forwarded_for" not in direct, "the client's X-Forwarded-For is appended"
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in direct
    assert "real_ip_header" not in direct, "X-Forwarded-For trusted without a balancer"
    behind = nginx_conf(
        NginxSettings(server_name="x", upstream="a:1", trusted_proxies=("10.0.0.0/8",))
    )
    assert "set_real_ip_from 10.0.0.0/8;" in behind and "real_ip_recursive on;" in behind
    assert "$proxy_add_x_forwarded_for" not in behind


def test_audit_settings_and_auditor_role_reach_the_docker_server() -> None:
    flags = pg.server_flags(tls_dir=None, hba_file=None, archive=False, audit=True)
    pairs = dict(f.split("=", 1) for f in flags[1::2])
    for key, value in (*pg.LOG_SETTINGS.items(), *pg.AUDIT_SETTINGS.items()):
        assert pairs.get(key) == value, f"server flag {key}={pairs.get(key)!r}, want {value!r}"
    sql = pg.roles_sql(audit=True)
    assert f"TO {pg.AUDITOR_ROLE};" in sql and "CREATE EXTENSION IF NOT EXISTS pgaudit;" in sql
    assert "CREATE EXTENSION" not in pg.roles_sql(audit=False), "pgaudit needs its library loaded"


def test_blackbox_config_loads_in_the_real_exporter_without_deprecated_keys(
    tmp_path: Path,
) -> None:
    """blackbox_exporter accepts the shipped modules and warns of nothing (it warned
    that ``no_follow_redirects`` "will be removed in the next release")."""
    from components.configs.blackbox import blackbox_config

    exporter = need("prometheus-blackbox-exporter")
    config = tmp_path / "blackbox.yml"
    config.write_text(blackbox_config())
    proc = subprocess.run([exporter, "--config.check", f"--config.file={config}"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Config file is ok" in out, out
    assert "level=warn" not in out and "deprecated" not in out, out

"""The bug catalogue: plausible one-line bugs that the named tests must kill.

Each entry is a mistake a developer could make in review-passing code, and the
harm it would do in production. tests/mutants/test_catalogue.py applies each one
to a scratch copy of the repository and runs only its ``tests`` there: every entry
must make at least one of them fail. An entry whose ``old`` text no longer occurs
exactly once in ``file`` fails the fast suite (the code moved: update the entry).

How to add one (docs/testing.md, "The bug catalogue"): copy the smallest exact
text the bug changes into ``old``, the buggy text into ``new``, say the harm in one
line, and name the cheapest test that must fail: a fast unit test first, a
real-program test only where nothing cheaper catches the bug.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "Mutant"]


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    old: str
    """Exact text, found exactly once in ``file``."""
    new: str
    harm: str
    tests: tuple[str, ...]
    """pytest node ids, relative to the repository; at least one must fail."""


def _m(id_: str, file: str, old: str, new: str, harm: str, *tests: str) -> Mutant:
    return Mutant(id_, file, old, new, harm, tests)


SECRETS = "infra/secret_checks.py"
RULES = "infra/settings_rules.py"
SETTINGS = "infra/settings.py"
NGINX = "components/configs/nginx.py"
REDIS = "components/configs/redis.py"
PG = "components/configs/postgres.py"
PGBACKREST = "components/configs/pgbackrest.py"
LOGSTASH = "components/configs/logstash.py"
REDACTION = "components/configs/redaction.py"
PROM = "components/configs/prometheus.py"
ALERT_RULES = "components/configs/rules.py"
AM = "components/configs/alertmanager.py"
DOCKER = "components/platforms/docker/__init__.py"
K8S_NET = "components/platforms/kubernetes/network.py"
K8S_PODS = "components/platforms/kubernetes/pods.py"
K8S_WORK = "components/platforms/kubernetes/workloads.py"
CNPG = "components/platforms/kubernetes/postgres.py"
POLICY = "policy/resource_policies.py"

T_SECRETS = "tests/test_secret_checks.py"
T_SETTINGS = "tests/test_settings.py"
T_BAD = "tests/test_settings.py::test_bad_value_exits_2_with_one_line_naming_the_key"
T_CONFIGS = "tests/test_configs.py"
T_ALERTING = "tests/test_alerting.py"
T_PROGRAM = "tests/test_program.py"
T_K8S = "tests/kubernetes/test_objects.py"
T_CNPG = "tests/kubernetes/test_cnpg.py"
T_POLICY = "tests/policy/test_policies.py"
R_NGINX = "tests/real/test_nginx.py"
R_REDIS = "tests/real/test_redis.py"
R_PG = "tests/real/test_postgres_tls.py"
R_ROT = "tests/real/test_postgres_rotation.py"
R_AUDIT = "tests/real/test_postgres_audit.py"
R_BACKREST = "tests/real/test_pgbackrest.py"
R_PROM = "tests/real/test_prometheus.py"
R_AM = "tests/real/test_alertmanager.py"
R_REDACT = "tests/real/test_redaction.py"

CATALOGUE: tuple[Mutant, ...] = (
    # --- settings and secret checks -------------------------------------------------
    _m(
        "secret-min-password-8",
        SECRETS,
        "MIN_PASSWORD: Final = 16",
        "MIN_PASSWORD: Final = 8",
        "an 8-character database password is accepted (minutes to brute-force offline)",
        f"{T_SECRETS}::test_weak_or_pasted_secrets_are_refused",
    ),
    _m(
        "secret-password-prefix-match",
        SECRETS,
        "MAX_PASSWORD or not _PRINTABLE_ASCII.fullmatch(value):",
        "MAX_PASSWORD or not _PRINTABLE_ASCII.match(value):",
        "a password with spaces or a pasted newline is accepted and breaks .env consumers",
        f"{T_SECRETS}::test_weak_or_pasted_secrets_are_refused",
    ),
    _m(
        "secret-jwt-one-character",
        SECRETS,
        "len(set(value)) < MIN_JWT_DISTINCT",
        "len(set(value)) < 1",
        "a JWT secret of one repeated character signs every session token",
        f"{T_SECRETS}::test_weak_or_pasted_secrets_are_refused",
    ),
    _m(
        "secret-backup-key-newline",
        SECRETS,
        "if len(value) < MIN_PASSWORD or not _PRINTABLE_ASCII.fullmatch(value):",
        "if len(value) < MIN_PASSWORD:",
        "a pasted newline becomes part of the cipher pass: no restore with the vault's key",
        f"{T_SETTINGS}::test_a_backup_key_with_pasted_whitespace_is_refused",
    ),
    _m(
        "secret-object-store-newline",
        SECRETS,
        'if not _PRINTABLE_ASCII.fullmatch(value):\n            return "an object-store key',
        'if _CONTROL.search(value):\n            return "an object-store key',
        "an object-store key with a trailing newline: every WAL upload is refused",
        f"{T_SECRETS}::test_weak_or_pasted_secrets_are_refused",
    ),
    _m(
        "secret-controls-only-low",
        SECRETS,
        r'_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")',
        r'_CONTROL = re.compile(r"[\x00-\x08]")',
        "an escape sequence in a kubeconfig or certificate reaches files and terminals",
        f"{T_SECRETS}::test_weak_or_pasted_secrets_are_refused",
    ),
    _m(
        "url-prod-http",
        SECRETS,
        'if stack == "prod" and scheme != "https":',
        'if stack == "prod" and scheme not in ("http", "https"):',
        "prod serves an http:// app URL: redirects and cookies travel in clear text",
        "tests/test_hostile_inputs.py::test_app_url_accepts_dns_names_and_idns_and_refuses_the_rest",
    ),
    _m(
        "url-label-hyphens",
        SECRETS,
        '_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")',
        '_LABEL = re.compile(r"[a-z0-9-]{1,63}")',
        "a host name no certificate authority issues for becomes nginx's server_name",
        f"{T_SECRETS}::test_app_url_labels_follow_rfc_1123",
    ),
    _m(
        "rules-prod-self-signed",
        RULES,
        'return ("openaiApiKey", "tlsCert", "tlsKey", *backup_secrets(platform))',
        'return ("openaiApiKey", *backup_secrets(platform))',
        "prod deploys a self-signed certificate behind two years of HSTS: users locked out",
        f"{T_SETTINGS}::test_prod_requires_a_real_certificate",
    ),
    _m(
        "rules-prod-two-instances",
        RULES,
        'floor = {"prod": 3, "staging": 2}',
        'floor = {"prod": 2, "staging": 2}',
        "prod with dataDurability: required and 2 instances: losing the standby stops writes",
        f"{T_SETTINGS}::test_prod_on_kubernetes_survives_losing_a_standby",
    ),
    _m(
        "rules-staging-without-backups",
        RULES,
        'if s.stack != "dev" and not s.backups:',
        'if s.stack == "prod" and not s.backups:',
        "staging keeps its only copy of the data on the host it runs on",
        f"{T_BAD}[backups=false]",
    ),
    _m(
        "rules-backup-without-bucket",
        RULES,
        '            ("backupBucket", s.backup_target.bucket),\n',
        "",
        "backups configured without a bucket: every archive-push fails, silently at first",
        f"{T_BAD}[backupBucket=]",
    ),
    _m(
        "rules-grafana-port-unchecked",
        RULES,
        '            ports["grafanaPort"] = s.grafana_port\n',
        "            pass\n",
        "Grafana published on the edge's port: the deploy fails on the Docker host",
        f"{T_SECRETS}::test_docker_host_ports_may_not_collide",
    ),
    _m(
        "settings-zero-replicas",
        SETTINGS,
        'r.integer("appReplicas", 1, 50)',
        'r.integer("appReplicas", 0, 50)',
        "appReplicas: 0 deploys no app at all: a full outage of the crisis path",
        f"{T_BAD}[appReplicas=0]",
    ),
    _m(
        "settings-irregular-backups",
        SETTINGS,
        ", options=BACKUP_INTERVALS)",
        ")",
        "a 5-hour backup interval does not divide the day: the cron schedule drifts",
        f"{T_BAD}[backupIntervalHours=5]",
    ),
    _m(
        "settings-zero-retention",
        SETTINGS,
        'r.integer("backupRetentionDays", 1, 3650)',
        'r.integer("backupRetentionDays", 0, 3650)',
        "backup retention 0: pgBackRest expires every backup it takes",
        f"{T_BAD}[backupRetentionDays=0]",
    ),
    _m(
        "settings-audit-one-year",
        SETTINGS,
        'r.integer("auditRetentionDays", AUDIT_RETENTION_MIN_DAYS, 36500)',
        'r.integer("auditRetentionDays", 1, 36500)',
        "the audit trail is kept one year; HIPAA wants six",
        f"{T_BAD}[auditRetentionDays=365]",
    ),
    # --- nginx -----------------------------------------------------------------------
    _m(
        "nginx-tls-1.0",
        NGINX,
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;",
        "the edge negotiates TLS 1.0/1.1 (no forward secrecy guarantees, HIPAA guidance)",
        f"{T_CONFIGS}::test_nginx_allows_only_tls_12_and_13",
    ),
    _m(
        "nginx-forwarded-for-appended",
        NGINX,
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "a client spoofs its address to the app: rate limits and audit lines lie",
        f"{T_CONFIGS}::test_nginx_forwarded_for_is_the_peer_unless_a_trusted_balancer_is_configured",
    ),
    _m(
        "nginx-query-string-logged",
        NGINX,
        "'$luna_client_net \"$request_method $luna_route $server_protocol\" $status '",
        "'$luna_client_net \"$request_method $request_uri $server_protocol\" $status '",
        "paths and query strings (e-mails, IDs, reset tokens) land in the access log",
        f"{R_NGINX}::test_access_log_keeps_no_query_string_header_or_full_client_address",
    ),
    _m(
        "nginx-full-client-address",
        NGINX,
        '[.][0-9]+$" $net.0;',
        '[.][0-9]+$" $remote_addr;',
        "the operational log keeps every client's full IP address (personal data)",
        f"{R_NGINX}::test_access_log_keeps_no_query_string_header_or_full_client_address",
    ),
    # $host in place of $http_host is equivalent here: nginx cuts $host at ':' and
    # lowercases it, and any other name reaches the default server, which answers 444.
    _m(
        "nginx-redirect-to-host-header",
        NGINX,
        "return 301 https://{s.server_name}{redirect_port}$request_uri;",
        "return 301 https://$http_host{redirect_port}$request_uri;",
        "an open redirect: Host `luna-app.com:@evil.example` sends users to evil.example",
        f"{R_NGINX}::test_http_redirects_to_https[staging-docker]",
    ),
    _m(
        "nginx-crisis-rate-limited",
        NGINX,
        "        # Never rate-limited.\n        location ^~ {path} {{\n",
        "        # Never rate-limited.\n        location ^~ {path} {{\n"
        "            limit_req zone=luna_auth burst={s.auth_burst} nodelay;\n",
        "a person in crisis who retries gets 429 from the crisis endpoint",
        f"{R_NGINX}::test_auth_is_rate_limited_while_the_crisis_path_never_is",
    ),
    _m(
        "nginx-auth-unlimited",
        NGINX,
        "            limit_req zone=luna_auth burst={s.auth_burst} nodelay;\n{proxy}",
        "{proxy}",
        "password guessing on sign-in is never throttled",
        f"{R_NGINX}::test_auth_is_rate_limited_while_the_crisis_path_never_is",
    ),
    _m(
        "nginx-unlimited-body",
        NGINX,
        "client_max_body_size {s.client_max_body_mb}m;",
        "client_max_body_size 0;",
        "uploads of any size reach the app: memory exhaustion by one client",
        f"{R_NGINX}::test_body_over_limit_gets_413_and_at_limit_reaches_the_app",
    ),
    _m(
        "nginx-hsts-not-always",
        NGINX,
        'includeSubDomains" always;',
        'includeSubDomains";',
        "error responses carry no HSTS: a first visit that errors stays downgradable",
        f"{R_NGINX}::test_security_headers_on_proxied_and_error_responses",
    ),
    # --- Redis -----------------------------------------------------------------------
    _m(
        "redis-plaintext-port",
        REDIS,
        "\nport 0\n",
        "\nport 6379\n",
        "a plaintext listener: cached sessions readable on the network",
        f"{R_REDIS}::test_only_the_tls_port_listens_and_clients_verify_the_ca",
    ),
    _m(
        "redis-default-user-open",
        REDIS,
        '"user default off resetpass resetkeys resetchannels -@all\\n"',
        '"user default on nopass ~* &* +@all\\n"',
        "any client that reaches the cache reads and wipes it without a password",
        f"{R_REDIS}::test_default_user_is_refused",
    ),
    _m(
        "redis-app-dangerous",
        REDIS,
        "+@all -@dangerous -@admin -config",
        "+@all -@admin -config",
        "the app's credentials can run INFO, SORT and RESTORE-ASKING (the @dangerous rest)",
        f"{R_REDIS}::test_app_user_is_refused_every_command_the_server_classes_dangerous"
        "[staging-docker]",
    ),
    _m(
        "redis-exporter-config-set",
        REDIS,
        "+dbsize +config|get",
        "+dbsize +config",
        "the exporter's password can reconfigure the cache (CONFIG SET)",
        f"{R_REDIS}::test_exporter_user_reads_info_and_nothing_else",
    ),
    _m(
        "redis-acl-plain-password",
        REDIS,
        'return "#" + hashlib.sha256(password.encode()).hexdigest()',
        'return ">" + password',
        "the cache passwords sit in clear text in the ACL file",
        f"{T_CONFIGS}::test_redis_acl_holds_password_hashes_only",
    ),
    _m(
        "redis-shared-password",
        REDIS,
        "if app_password == exporter_password:",
        "if not app_password:",
        "the exporter's leaked password opens the app's data",
        f"{T_CONFIGS}::test_redis_rejects_unknown_policy_and_empty_or_shared_passwords",
    ),
    # --- PostgreSQL --------------------------------------------------------------------
    _m(
        "pg-tls-1.0",
        PG,
        '"ssl_min_protocol_version": "TLSv1.2",',
        '"ssl_min_protocol_version": "TLSv1",',
        "the database accepts TLS 1.0 handshakes",
        f"{R_PG}::test_a_client_below_tls_12_is_refused",
    ),
    _m(
        "pg-hba-every-role",
        PG,
        "hostssl   {DATABASE}      {roles}  all  scram-sha-256",
        "hostssl   {DATABASE}      all  all  scram-sha-256",
        "luna_backup (and any new role) logs in over the network",
        f"{R_PG}::test_backup_role_never_logs_in_over_the_network",
    ),
    _m(
        "pg-hba-plaintext",
        PG,
        "hostnossl all       all       all      reject",
        "hostnossl all       all       all      scram-sha-256",
        "clients connect without TLS: health data on the wire in clear text",
        f"{R_PG}::test_plaintext_is_refused",
    ),
    _m(
        "pg-md5-passwords",
        PG,
        '"password_encryption": "scram-sha-256",\n        "max_connections"',
        '"password_encryption": "md5",\n        "max_connections"',
        "role passwords stored as MD5 (pass-the-hash; SCRAM logins fail)",
        f"{R_PG}::test_verified_client_connects_over_tls",
    ),
    _m(
        "pg-statements-logged",
        PG,
        '"log_min_duration_statement": "-1",',
        '"log_min_duration_statement": "0",',
        "every statement, with its literals (a patient's e-mail), lands in the server log",
        f"{R_AUDIT}::test_slow_query_with_a_phi_literal_leaves_no_trace_and_is_normalised",
    ),
    _m(
        "pg-app-creates-tables",
        PG,
        'f"GRANT USAGE ON SCHEMA public TO {APP_ROLE};",',
        'f"GRANT USAGE, CREATE ON SCHEMA public TO {APP_ROLE};",',
        "the app's credentials create objects in the schema (persistence for an attacker)",
        f"{R_PG}::test_app_role_is_refused",
    ),
    _m(
        "pg-roles-replicate",
        PG,
        "f\"NOREPLICATION NOBYPASSRLS PASSWORD :'{ROLE_PASSWORD_VARS[role]}';\"",
        "f\"REPLICATION NOBYPASSRLS PASSWORD :'{ROLE_PASSWORD_VARS[role]}';\"",
        "every application role may stream the whole database as a replica",
        f"{T_CONFIGS}::test_roles_script_carries_no_password_and_grants_no_privilege",
    ),
    _m(
        "pg-app-login-replicates",
        PG,
        "NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'{ROLE_PASSWORD_VARS[APP_ROLE]}'",
        "NOCREATEROLE REPLICATION NOBYPASSRLS PASSWORD :'{ROLE_PASSWORD_VARS[APP_ROLE]}'",
        "the app's login role may stream the whole database as a replica",
        f"{T_CONFIGS}::test_roles_script_carries_no_password_and_grants_no_privilege",
    ),
    _m(
        "pg-app-login-previous-dropped",
        PG,
        "\"AND rolname <> :'app_previous' ORDER BY rolname",
        '"AND true ORDER BY rolname',
        "a rotation drops the previous login role: old replicas' new connections are refused",
        f"{R_ROT}::test_two_rotations_keep_the_previous_login_and_drop_the_older",
    ),
    _m(
        "pg-app-login-group-logs-in-forever",
        PG,
        "WHERE :'app_previous' <> '{APP_ROLE}' \\\\gexec",
        "WHERE false \\\\gexec",
        "the legacy luna_app login and its password stay valid after every rotation",
        f"{R_ROT}::test_upgrade_from_the_login_group_keeps_the_old_replicas_in",
    ),
    _m(
        "pg-prisma-accepts-any-cert",
        PG,
        "&sslaccept=strict&",
        "&sslaccept=accept_invalid_certs&",
        "the app talks to whoever answers as the database (no certificate check)",
        f"{T_CONFIGS}::test_prisma_url_verifies_and_encodes_the_password",
    ),
    _m(
        "pg-prisma-raw-password",
        PG,
        'f"postgresql://{userinfo(user, password)}@',
        'f"postgresql://{user}:{password}@',
        "a password with @ or / breaks the URL: the app connects elsewhere or not at all",
        f"{T_CONFIGS}::test_prisma_url_verifies_and_encodes_the_password",
    ),
    _m(
        "pg-archive-timeout-hour",
        PG,
        "if archive and not 1 <= archive_timeout_s <= 60:",
        "if archive and not 1 <= archive_timeout_s <= 3600:",
        "an hour of committed writes may be lost with the host",
        f"{T_CONFIGS}::test_archive_timeout_bounds_the_recovery_point",
    ),
    _m(
        "pg-archiving-off",
        PG,
        '"archive_mode": "on",',
        '"archive_mode": "off",',
        "no WAL is archived: the recovery point is the last base backup, a day old",
        f"{R_PG}::test_exporter_gives_the_wal_alert_its_metric_as_the_monitoring_role",
    ),
    # --- the rehearsal's generated scripts: backups and the restore drill ----------------
    _m(
        "backup-cipher-none",
        PGBACKREST,
        '"repo1-cipher-type=aes-256-cbc",',
        '"repo1-cipher-type=none",',
        "the object store holds the database in clear text",
        f"{R_BACKREST}::test_no_bucket_object_holds_plaintext",
    ),
    _m(
        "drill-failure-reports-success",
        PGBACKREST,
        'fail() {{ echo "drill: FAILED: $*" >&2; stop; report 0;',
        'fail() {{ echo "drill: FAILED: $*" >&2; stop; report 1;',
        "a drill that cannot restore reports success: LunaRestoreDrillFailed never fires",
        f"{R_BACKREST}::test_drill_fails_on_a_wrong_cipher_pass",
    ),
    _m(
        "drill-end-point-unchecked",
        PGBACKREST,
        '|| fail "recovery stopped before $last, the newest archived WAL segment"',
        '|| echo "recovery stopped before $last" >&2',
        "a broken WAL chain promotes early onto a new timeline and the drill passes",
        f"{R_BACKREST}::test_drill_fails_on_a_corrupted_wal_segment",
    ),
    # --- Logstash and the redaction ------------------------------------------------------
    _m(
        "logstash-no-escapes",
        LOGSTASH,
        "\nconfig.support_escapes: true\n",
        "\nconfig.support_escapes: false\n",
        "every redaction pattern silently matches nothing: PHI reaches Elasticsearch",
        f"{R_REDACT}::test_phi_corpus_leaves_no_identifier",
    ),
    _m(
        "logstash-prune-inverted",
        LOGSTASH,
        "whitelist_names => [{_kept()}]",
        "blacklist_names => [{_kept()}]",
        "every field nobody listed (a request body) is indexed unredacted",
        f"{R_REDACT}::test_every_free_text_field_is_redacted_and_unlisted_fields_are_dropped",
    ),
    _m(
        "logstash-audit-by-text",
        LOGSTASH,
        '    audit = f"{audit_from} and [message] =~ /{AUDIT_LINE}/"',
        '    audit = f"[message] =~ /{AUDIT_LINE}/"',
        "any container that prints pgaudit's line writes into the six-year audit index",
        f"{R_REDACT}::test_only_the_databases_audit_stream_enters_the_audit_index",
    ),
    _m(
        "redaction-full-message",
        REDACTION,
        'FREE_TEXT_FIELDS: Final = ("message", "full_message", "command")',
        'FREE_TEXT_FIELDS: Final = ("message", "command")',
        "GELF's full_message (the stack trace) never reaches the index: errors lose their detail",
        f"{R_REDACT}::test_every_free_text_field_is_redacted_and_unlisted_fields_are_dropped"
        "[staging-docker]",
    ),
    _m(
        "redaction-start-guard",
        REDACTION,
        '_START = r"(?<![\\w+.:/-])"',
        '_START = r"(?<![\\w])"',
        "digit runs after . - / : (floats, query ids, paths) are redacted: operators lose them",
        f"{R_REDACT}::test_clean_corpus_loses_nothing[staging-docker]",
    ),
    _m(
        "redaction-encoded-email",
        REDACTION,
        r"(?i)[a-z0-9._%+'-]+(?:@|%40)",
        r"(?i)[a-z0-9._%+'-]+@",
        "URL-encoded e-mail addresses (jane%40example.com in a logged URL) are kept",
        f"{R_REDACT}::test_phi_corpus_leaves_no_identifier",
    ),
    _m(
        "redaction-ssn-shape",
        REDACTION,
        r'("ssn", _START + r"\d{3}-\d{2}-\d{4}" + _END',
        r'("ssn", _START + r"\d{3}-\d{2}-\d{5}" + _END',
        "US social security numbers are kept in the logs",
        f"{R_REDACT}::test_phi_corpus_leaves_no_identifier",
    ),
    # --- Prometheus rules and Alertmanager routes -------------------------------------
    _m(
        "prometheus-alertmanager-api-v1",
        PROM,
        '{"api_version": "v2", **_discovery',
        '{"api_version": "v1", **_discovery',
        "Alertmanager 0.27 answers v1 with 410: no alert ever arrives",
        f"{T_ALERTING}::test_prometheus_speaks_the_api_the_pinned_alertmanager_serves",
    ),
    _m(
        "inhibit-equal-loses-cause",
        AM,
        '"equal": ["stack", "cause"],',
        '"equal": ["stack"],',
        "one long-running critical silences every warning, certificate expiry included",
        f"{R_AM}::test_a_critical_inhibits_warnings_of_its_own_cause_only",
    ),
    _m(
        "alertmanager-root-swallows",
        AM,
        '"receiver": "pager",\n            "group_by"',
        '"receiver": "watchdog-unmonitored",\n            "group_by"',
        "an alert no route matches reaches nobody",
        f"{T_ALERTING}::test_nothing_routes_to_nowhere",
    ),
    _m(
        "alertmanager-warnings-wake",
        AM,
        '"severity": "critical" if urgent else "warning",',
        '"severity": "critical",',
        "every warning pages the on-call person at high urgency, at night",
        f"{T_ALERTING}::test_without_chat_warnings_reach_the_pager_at_low_urgency",
    ),
    _m(
        "alertmanager-warning-typo",
        AM,
        '{"receiver": "chat", "matchers": [\'severity="warning"\']',
        '{"receiver": "chat", "matchers": [\'severity="warnings"\']',
        "warnings match no route and page like criticals",
        f"{R_AM}::test_rendered_config_passes_amtool_and_routes_as_intended",
    ),
    _m(
        "rule-app-down-none-left",
        ALERT_RULES,
        "f'(count(up{{job=\"app\"}} == 1) or vector(0)) < {n}'",
        "f'count(up{{job=\"app\"}} == 1) < {n}'",
        "with every replica gone no series is left and LunaAppDown never fires",
        f"{R_PROM}::test_every_alert_fires_on_bad_series_and_stays_quiet_on_healthy",
    ),
    _m(
        "rule-crisis-down-warning",
        ALERT_RULES,
        '"1m",\n            "critical",\n            "crisis-availability",\n'
        '            "The crisis-intervention endpoint does not answer",',
        '"1m",\n            "warning",\n            "crisis-availability",\n'
        '            "The crisis-intervention endpoint does not answer",',
        "a crisis-endpoint outage goes to chat instead of paging",
        f"{R_AM}::test_outages_that_must_wake_someone_reach_the_pager[staging-docker]",
    ),
    _m(
        "rule-backup-age-tenfold",
        ALERT_RULES,
        'too_old=f"time() - {backup} > {t.backup_max_age_h * 3600}",',
        'too_old=f"time() - {backup} > {t.backup_max_age_h * 36000}",',
        "backups may stop for ten days before anyone is told",
        f"{R_PROM}::test_a_stale_backup_pages_at_the_documented_age[prod-docker]",
    ),
    _m(
        "rule-wal-rate",
        ALERT_RULES,
        'f"increase({failed_count}[10m]) > 0",',
        'f"rate({failed_count}[10m]) > 1",',
        "WAL archiving fails for hours without an alert (one failure a minute is < 1/s)",
        f"{R_PROM}::test_every_alert_fires_on_bad_series_and_stays_quiet_on_healthy",
    ),
    _m(
        "rule-drill-never-fires",
        ALERT_RULES,
        '"luna_restore_drill_success == 0",',
        '"luna_restore_drill_success < 0",',
        "a failed restore drill never alerts",
        f"{R_PROM}::test_every_alert_fires_on_bad_series_and_stays_quiet_on_healthy",
    ),
    _m(
        "rule-fast-burn-factor",
        ALERT_RULES,
        '("BudgetBurn", "critical", 14.4, "1h", "5m", "1m"),',
        '("BudgetBurn", "critical", 144.0, "1h", "5m", "1m"),',
        "a fast crisis error-budget burn pages only when the whole budget is gone",
        f"{R_PROM}::test_burn_rate_cases_can_fail",
        f"{R_PROM}::test_every_alert_fires_on_bad_series_and_stays_quiet_on_healthy",
    ),
    # --- the Docker platform -----------------------------------------------------------
    _m(
        "docker-new-privileges",
        DOCKER,
        '"security_opts": ["no-new-privileges:true"],',
        '"security_opts": [],',
        "a setuid binary in any image regains root inside the container",
        f"{T_PROGRAM}::test_docker_containers_are_hardened",
    ),
    _m(
        "docker-capabilities-kept",
        DOCKER,
        '"capabilities": {"drops": ["ALL"], "adds": list(spec.capabilities)},',
        '"capabilities": {"drops": [], "adds": list(spec.capabilities)},',
        "containers keep Docker's default capabilities (NET_RAW, CHOWN, SETUID ...)",
        f"{T_PROGRAM}::test_docker_containers_are_hardened",
    ),
    _m(
        "docker-networks-routed",
        DOCKER,
        "self, key: str, *, internal: bool = True, masquerade: bool = True",
        "self, key: str, *, internal: bool = False, masquerade: bool = True",
        "the database and the cache get a route off the host: exfiltration is one connect away",
        f"{T_PROGRAM}::test_only_edge_services_have_a_route_off_the_docker_host",
    ),
    _m(
        "docker-memory-without-swap",
        DOCKER,
        '            "memory_swap": memory,\n',
        "",
        "raising memory above twice the old value is refused by the daemon on the next up",
        "tests/test_day2.py::test_5_memory_times_four_is_applied_in_place",
    ),
    # --- the Kubernetes platform -------------------------------------------------------
    _m(
        "k8s-egress-reaches-metadata",
        K8S_NET,
        '"192.168.0.0/16", "169.254.0.0/16", ',
        '"192.168.0.0/16", ',
        "a pod with internet egress reads the cloud metadata service (node credentials)",
        f"{T_K8S}::test_internet_egress_never_reaches_private_or_link_local_addresses",
    ),
    _m(
        "k8s-egress-reaches-cluster",
        K8S_NET,
        'PRIVATE_V4 = ("10.0.0.0/8", ',
        "PRIVATE_V4 = (",
        "internet egress also reaches every pod and service of the cluster",
        f"{T_K8S}::test_internet_egress_never_reaches_private_or_link_local_addresses",
    ),
    _m(
        "k8s-default-allow-egress",
        K8S_NET,
        '"default-deny", {}, ingress=[], egress=[],',
        '"default-deny", {}, ingress=[], egress=None,',
        "every pod may connect anywhere unless a policy of its own says otherwise",
        f"{T_K8S}::test_network_is_default_deny_then_exactly_the_needed_flows",
    ),
    _m(
        "k8s-escalation-allowed",
        K8S_PODS,
        '"allowPrivilegeEscalation": False,',
        '"allowPrivilegeEscalation": True,',
        "a setuid binary in any image regains root inside the pod",
        f"{T_K8S}::test_every_pod_is_hardened",
    ),
    _m(
        "k8s-rollout-drops-capacity",
        K8S_WORK,
        '"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}',
        '"rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}',
        "every rollout takes a replica away before its successor is ready",
        f"{T_K8S}::test_app_rolls_without_losing_capacity_scales_and_drains",
    ),
    _m(
        "cnpg-superuser-access",
        CNPG,
        '"enableSuperuserAccess": False,',
        '"enableSuperuserAccess": True,',
        "the operator publishes a superuser password Secret: one leak owns the database",
        f"{T_CNPG}::test_cluster_is_redundant_private_and_backed_up_by_the_plugin",
    ),
    _m(
        "cnpg-instances-share-a-node",
        CNPG,
        '"podAntiAffinityType": "required",',
        '"podAntiAffinityType": "preferred",',
        "primary and standby may land on one node: losing it loses both",
        f"{T_CNPG}::test_cluster_is_redundant_private_and_backed_up_by_the_plugin",
    ),
    _m(
        "cnpg-plaintext-allowed",
        CNPG,
        '"hostnossl all all all reject",\n',
        "",
        "the operator's appended host rule lets clients in without TLS",
        f"{T_CNPG}::test_pg_hba_ends_with_a_reject_and_only_used_roles_log_in",
    ),
    _m(
        "cnpg-durability-preferred",
        CNPG,
        '"dataDurability": "required",',
        '"dataDurability": "preferred",',
        "a failover may lose committed transactions (the standby is not waited for)",
        f"{T_SETTINGS}::test_prod_on_kubernetes_survives_losing_a_standby",
    ),
    # --- the policy pack ---------------------------------------------------------------
    _m(
        "policy-escalation-unset-passes",
        POLICY,
        'if get(sc, "allowPrivilegeEscalation") is not False:',
        'if get(sc, "allowPrivilegeEscalation") is True:',
        "a container that does not set allowPrivilegeEscalation (default true) passes",
        f"{T_POLICY}::test_privilege_escalation_must_be_switched_off_explicitly",
    ),
    _m(
        "policy-privileged-string",
        POLICY,
        'if get(props, "privileged") is True:\n            report(f"{who} is privileged", None)\n'
        '        if get(props, "networkMode")',
        'if get(props, "privileged") == "true":\n            report(f"{who} is privileged", None)\n'
        '        if get(props, "networkMode")',
        "a privileged Docker container passes the pack",
        f"{T_POLICY}::test_policy_reports_its_violation[container-hardening]",
    ),
    _m(
        "policy-baseline-enough",
        POLICY,
        'if enforce != "restricted":',
        'if enforce not in ("restricted", "baseline"):',
        "a namespace at Pod Security baseline (root, any volume type) passes",
        f"{T_POLICY}::test_policy_reports_its_violation[pod-security-restricted]",
    ),
    _m(
        "policy-tls-1.0-allowed",
        POLICY,
        'weak = set(line.split()) - {"TLSv1.2", "TLSv1.3"}',
        'weak = set(line.split()) - {"TLSv1", "TLSv1.2", "TLSv1.3"}',
        "an edge that still offers TLS 1.0 passes the pack",
        "tests/policy/test_edge_tls.py::test_a_protocol_below_tls_1_2_fails_the_pack[TLSv1]",
    ),
    _m(
        "policy-prod-digest-unchecked",
        POLICY,
        'if stack_of(args.urn) != "prod":\n        return\n    for ref in image_refs('
        "args.resource_type, args.props):\n        if not _DIGEST",
        'if stack_of(args.urn) != "production":\n        return\n    for ref in image_refs('
        "args.resource_type, args.props):\n        if not _DIGEST",
        "prod images pinned by a re-pushable tag pass the pack",
        f"{T_POLICY}::test_policy_reports_its_violation[image-digest-prod]",
    ),
)

"""The recipes of the stand-in images: one Debian bookworm program each, laid out
as the official image lays out its own.

A recipe is data: the shell run as root in a copy of the minbase tree (users
with the official ids first, then ``apt-get install``), the files written
after it (our entrypoints), a second shell step, and the image config. Its
``repr`` is its cache key. ``{version}`` in the config is the Debian
version of the recipe's program. Each cites the upstream file it follows (read
at the pinned tag where the repository has one):

=================================================  ===========================================
stand-in for (tag pattern)                         upstream contract followed
=================================================  ===========================================
postgres:15.*-bookworm                             docker-library/postgres 15/bookworm/Dockerfile
                                                   and docker-entrypoint.sh
redis:7.*-alpine                                   docker-library/redis 7.2/alpine/Dockerfile,
                                                   docker-entrypoint.sh (7.4 shares the template)
nginxinc/nginx-unprivileged:1.*-alpine             nginxinc/docker-nginx-unprivileged@e6a1255
                                                   (1.27.2) mainline/alpine-slim/Dockerfile,
                                                   docker-entrypoint.sh, 15-, 20- scripts
prom/prometheus:v2.*                               prometheus/prometheus v2.54.1 Dockerfile
prom/alertmanager:v0.*                             prometheus/alertmanager v0.27.0 Dockerfile
prom/pushgateway:v1.*                              prometheus/pushgateway v1.9.0 Dockerfile
prom/blackbox-exporter:v0.*                        prometheus/blackbox_exporter v0.25.0 Dockerfile
quay.io/prometheuscommunity/postgres-exporter:v0.*  prometheus-community/postgres_exporter v0.15.0
                                                   Dockerfile
oliver006/redis_exporter:v1.*-alpine               oliver006/redis_exporter v1.62.0
                                                   docker/Dockerfile (alpine stage)
nginx/nginx-prometheus-exporter:1.*                nginxinc/nginx-prometheus-exporter v1.3.0
                                                   build/Dockerfile
=================================================  ===========================================

Where a stand-in differs from its image on purpose, the recipe says so: the
programs are Debian's versions (for example PostgreSQL 15 from bookworm, not
the PGDG build; Redis 7.0 with Debian's protected-mode default), the
Alpine, busybox and scratch bases are Debian with busybox's ``wget`` applet as
``wget`` where the official image has one, and nothing here fetches from
GitHub or a registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.rehearsal import entrypoints as ep

__all__ = ["LEFT_OUT", "STAND_INS", "StandIn", "stand_in_for"]

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_APT = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
# Alpine and the Prometheus busybox base ship busybox's wget, which the rendered
# health checks call (`wget -q -O /dev/null URL`): the same applet here.
_BUSYBOX_WGET = "ln -s /bin/busybox /usr/bin/wget\n"
# Alpine (ca-certificates-bundle), prometheus/busybox glibc/Dockerfile, redis_exporter's
# and nginx-prometheus-exporter's Dockerfiles all ship /etc/ssl/certs/ca-certificates.crt;
# docker-library/postgres does not (its gosu step purges ca-certificates again).
_CA = "ca-certificates"

# The official images with no Debian program: never faked (docs/rehearsal.md).
LEFT_OUT = re.compile(
    r"^(grafana/grafana|docker\.elastic\.co/(elasticsearch/elasticsearch|kibana/kibana"
    r"|logstash/logstash)):"
)


@dataclass(frozen=True)
class StandIn:
    name: str
    pattern: str
    """A regular expression the whole pinned tag matches."""
    program: str
    """The Debian package whose version the report shows."""
    upstream: str
    install: str
    config: Mapping[str, Any]
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    """Path -> (text, mode), written after ``install``."""
    finish: str = ""

    def image_config(self, version: str) -> dict[str, Any]:
        def fill(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace("{version}", version)
            if isinstance(value, list):
                return [fill(v) for v in value]
            if isinstance(value, dict):
                return {k: fill(v) for k, v in value.items()}
            return value

        config: dict[str, Any] = fill(dict(self.config))
        config.setdefault("Env", [f"PATH={PATH}"])
        return config


def _ports(*ports: int) -> dict[str, dict[str, str]]:
    return {f"{port}/tcp": {} for port in ports}


# -- PostgreSQL -------------------------------------------------------------------------
_POSTGRES = StandIn(
    name="postgres",
    pattern=r"postgres:15\.\d+-bookworm",
    program="postgresql-15",
    upstream="docker-library/postgres 15/bookworm/Dockerfile, docker-entrypoint.sh",
    install=f"""
groupadd -r postgres --gid=999
useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres
install -d -o postgres -g postgres -m 1777 /var/lib/postgresql
# The official image keeps locales out of the slim excludes, for en_US.UTF-8.
sed -i '\\|/usr/share/locale|d' /etc/dpkg/dpkg.cfg.d/docker
{_APT} less locales gosu libnss-wrapper xz-utils zstd
echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
locale-gen >/dev/null
{_APT} postgresql-common
sed -ri 's/#(create_main_cluster) .*$/\\1 = false/' /etc/postgresql-common/createcluster.conf
{_APT} postgresql-15
dpkg-divert --add --rename --divert /usr/share/postgresql/postgresql.conf.sample.dpkg \
  /usr/share/postgresql/15/postgresql.conf.sample
cp /usr/share/postgresql/postgresql.conf.sample.dpkg /usr/share/postgresql/postgresql.conf.sample
ln -s ../postgresql.conf.sample /usr/share/postgresql/15/
sed -ri "s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!" \
  /usr/share/postgresql/postgresql.conf.sample
install -d -o postgres -g postgres -m 3777 /var/run/postgresql
install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data
mkdir /docker-entrypoint-initdb.d
""",
    files={"/usr/local/bin/docker-entrypoint.sh": (ep.POSTGRES_ENTRYPOINT, 0o755)},
    config={
        "Env": [
            f"PATH={PATH}:/usr/lib/postgresql/15/bin",
            "PG_MAJOR=15",
            "PG_VERSION={version}",
            "LANG=en_US.utf8",
            "PGDATA=/var/lib/postgresql/data",
        ],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["postgres"],
        "StopSignal": "SIGINT",
        "ExposedPorts": _ports(5432),
        "Volumes": {"/var/lib/postgresql/data": {}},
    },
)

# -- Redis (alpine: uid 999, gid 1000) --------------------------------------------------
# Debian's redis-server keeps Redis's protected-mode default (yes); the official build
# patches it to no (its Dockerfile's sed on config.c). Luna's redis.conf sets it.
_REDIS = StandIn(
    name="redis",
    pattern=r"redis:7\.\d+\.\d+-alpine",
    program="redis-server",
    upstream="docker-library/redis 7.2/alpine/Dockerfile, docker-entrypoint.sh",
    install=f"""
groupadd -r -g 1000 redis
useradd -r -g redis -u 999 -M -d /home/redis -s /sbin/nologin redis
{_APT} redis-server gosu tzdata busybox {_CA}
""",
    files={"/usr/local/bin/docker-entrypoint.sh": (ep.REDIS_ENTRYPOINT, 0o755)},
    finish=_BUSYBOX_WGET
    + """
for tool in redis-server redis-cli redis-benchmark redis-check-aof redis-check-rdb; do
  ln -s /usr/bin/$tool /usr/local/bin/$tool
done
mkdir /data && chown redis:redis /data
""",
    config={
        "Env": [f"PATH={PATH}", "REDIS_VERSION={version}"],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["redis-server"],
        "WorkingDir": "/data",
        "Volumes": {"/data": {}},
        "ExposedPorts": _ports(6379),
    },
)

# -- nginx, unprivileged (uid 101, port 8080) -------------------------------------------
# The official nginx.conf as docker-nginx-unprivileged rewrites it: no `user`, the pid
# and the temp paths in /tmp; conf.d/default.conf listens on 8080.
_NGINX_CONF = """worker_processes  auto;
error_log  /var/log/nginx/error.log notice;
pid        /tmp/nginx.pid;
events {
    worker_connections  1024;
}
http {
    proxy_temp_path /tmp/proxy_temp;
    client_body_temp_path /tmp/client_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;
    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';
    access_log  /var/log/nginx/access.log  main;
    sendfile        on;
    keepalive_timeout  65;
    include /etc/nginx/conf.d/*.conf;
}
"""
_NGINX_DEFAULT = """server {
    listen       8080;
    server_name  localhost;
    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
"""
_NGINX = StandIn(
    name="nginx-unprivileged",
    pattern=r"nginxinc/nginx-unprivileged:1\.\d+\.\d+-alpine",
    program="nginx-light",
    upstream="nginxinc/docker-nginx-unprivileged mainline/alpine-slim/Dockerfile (1.27.2)",
    install=f"""
groupadd -r -g 101 nginx
useradd -r -u 101 -g nginx -M -d /var/cache/nginx -s /sbin/nologin nginx
{_APT} nginx-light gettext-base tzdata busybox {_CA}
rm -f /etc/nginx/sites-enabled/default
""",
    files={
        "/etc/nginx/nginx.conf": (_NGINX_CONF, 0o644),
        "/etc/nginx/conf.d/default.conf": (_NGINX_DEFAULT, 0o644),
        "/usr/share/nginx/html/index.html": ("<h1>Welcome to nginx!</h1>\n", 0o644),
        "/usr/share/nginx/html/50x.html": ("<h1>An error occurred.</h1>\n", 0o644),
        "/docker-entrypoint.sh": (ep.NGINX_ENTRYPOINT, 0o755),
        "/docker-entrypoint.d/15-local-resolvers.envsh": (ep.NGINX_LOCAL_RESOLVERS, 0o755),
        "/docker-entrypoint.d/20-envsubst-on-templates.sh": (ep.NGINX_ENVSUBST, 0o755),
    },
    # Debian's nginx keeps its temp files in /var/lib/nginx where the official build
    # uses /var/cache/nginx: both are the nginx user's, as the Dockerfile's chown does.
    finish=_BUSYBOX_WGET
    + """
ln -sf /dev/stdout /var/log/nginx/access.log
ln -sf /dev/stderr /var/log/nginx/error.log
mkdir -p /var/cache/nginx
chown -R 101:0 /var/cache/nginx /var/lib/nginx /etc/nginx
chmod -R g+w /var/cache/nginx /var/lib/nginx /etc/nginx
""",
    config={
        "Env": [f"PATH={PATH}", "NGINX_VERSION={version}"],
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "User": "101",
        "ExposedPorts": _ports(8080),
        "StopSignal": "SIGQUIT",
    },
)


# -- The Prometheus family (busybox base, user nobody) ----------------------------------
def _prom(name: str, pattern: str, program: str, upstream: str, *, link: str,
          finish: str = "", busybox: bool = True, **config: Any) -> StandIn:  # fmt: skip
    """A Go program from Debian, linked where the official image has its binary."""
    return StandIn(
        name=name,
        pattern=pattern,
        program=program,
        upstream=upstream,
        install=f"{_APT} {program} {_CA}{' busybox' if busybox else ''}\n",
        finish=(_BUSYBOX_WGET if busybox else "")
        + (f"ln -s /usr/bin/{program} {link}\n" if link else "")
        + finish,
        config={"Env": [f"PATH={PATH}"], **config},
    )


_PROMETHEUS = _prom(
    "prometheus", r"prom/prometheus:v2\.\d+\.\d+", "prometheus",
    # /bin is /usr/bin in bookworm: Debian's /usr/bin/prometheus is /bin/prometheus.
    "prometheus/prometheus v2.54.1 Dockerfile", link="",
    # Debian keeps the consoles in /etc/prometheus, the image in /usr/share/prometheus.
    finish="""cd /usr/share/prometheus
ln -s /etc/prometheus/console_libraries /etc/prometheus/consoles .
mkdir -p /prometheus
chown -R nobody:nogroup /etc/prometheus /prometheus
""",
    User="nobody", ExposedPorts=_ports(9090), Volumes={"/prometheus": {}},
    WorkingDir="/prometheus", Entrypoint=["/bin/prometheus"],
    Cmd=["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
         "--web.console.libraries=/usr/share/prometheus/console_libraries",
         "--web.console.templates=/usr/share/prometheus/consoles"],
)  # fmt: skip
_ALERTMANAGER = _prom(
    "alertmanager", r"prom/alertmanager:v0\.\d+\.\d+", "prometheus-alertmanager",
    "prometheus/alertmanager v0.27.0 Dockerfile", link="/usr/bin/alertmanager",
    finish="""mkdir -p /etc/alertmanager /alertmanager
cp /etc/prometheus/alertmanager.yml /etc/alertmanager/alertmanager.yml
chown -R nobody:nogroup /etc/alertmanager /alertmanager
""",
    User="nobody", ExposedPorts=_ports(9093), Volumes={"/alertmanager": {}},
    WorkingDir="/alertmanager", Entrypoint=["/bin/alertmanager"],
    Cmd=["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"],
)  # fmt: skip
_PUSHGATEWAY = _prom(
    "pushgateway", r"prom/pushgateway:v1\.\d+\.\d+", "prometheus-pushgateway",
    "prometheus/pushgateway v1.9.0 Dockerfile", link="/usr/bin/pushgateway",
    finish="mkdir -p /pushgateway && chown nobody:nogroup /pushgateway\n",
    User="65534", ExposedPorts=_ports(9091), WorkingDir="/pushgateway",
    Entrypoint=["/bin/pushgateway"],
)  # fmt: skip
_BLACKBOX = _prom(
    "blackbox-exporter", r"prom/blackbox-exporter:v0\.\d+\.\d+", "prometheus-blackbox-exporter",
    "prometheus/blackbox_exporter v0.25.0 Dockerfile", link="/usr/bin/blackbox_exporter",
    finish="""mkdir -p /etc/blackbox_exporter
cp /etc/prometheus/blackbox.yml /etc/blackbox_exporter/config.yml
""",
    ExposedPorts=_ports(9115), Entrypoint=["/bin/blackbox_exporter"],
    Cmd=["--config.file=/etc/blackbox_exporter/config.yml"],
)  # fmt: skip
# Debian's postgres_exporter is 0.11; --collector.stat_statements, which the render
# passes, arrived in v0.13.0 (prometheus-community/postgres_exporter CHANGELOG.md), so
# 0.11 refuses to start with it. The wrapper drops that one flag, saying so on stderr:
# the stand-in runs without the statements collector, the pinned v0.15 with it.
_PG_EXPORTER_WRAPPER = r"""cat > /usr/bin/postgres_exporter <<'EOF'
#!/bin/sh
for a in "$@"; do
  shift
  case "$a" in
    --collector.stat_statements) echo "stand-in: $a dropped (Debian's 0.11 lacks it)" >&2 ;;
    *) set -- "$@" "$a" ;;
  esac
done
exec /usr/bin/prometheus-postgres-exporter "$@"
EOF
chmod 755 /usr/bin/postgres_exporter
"""
_POSTGRES_EXPORTER = _prom(
    "postgres-exporter", r"quay\.io/prometheuscommunity/postgres-exporter:v0\.\d+\.\d+",
    "prometheus-postgres-exporter", "prometheus-community/postgres_exporter v0.15.0 Dockerfile",
    link="", finish=_PG_EXPORTER_WRAPPER,
    User="nobody", ExposedPorts=_ports(9187), Entrypoint=["/bin/postgres_exporter"],
)  # fmt: skip
_REDIS_EXPORTER = _prom(
    "redis-exporter", r"oliver006/redis_exporter:v1\.\d+\.\d+-alpine",
    "prometheus-redis-exporter", "oliver006/redis_exporter v1.62.0 docker/Dockerfile (alpine)",
    link="/redis_exporter",
    User="59000:59000", ExposedPorts=_ports(9121), Entrypoint=["/redis_exporter"],
)  # fmt: skip
# A scratch image: no shell and no wget upstream, so no busybox here.
_NGINX_EXPORTER = _prom(
    "nginx-exporter", r"nginx/nginx-prometheus-exporter:1\.\d+\.\d+",
    "prometheus-nginx-exporter", "nginxinc/nginx-prometheus-exporter v1.3.0 build/Dockerfile",
    link="/usr/bin/nginx-prometheus-exporter", busybox=False,
    User="1001:1001", ExposedPorts=_ports(9113),
    Entrypoint=["/usr/bin/nginx-prometheus-exporter"],
)  # fmt: skip

STAND_INS: tuple[StandIn, ...] = (
    _POSTGRES, _REDIS, _NGINX, _PROMETHEUS, _ALERTMANAGER, _PUSHGATEWAY, _BLACKBOX,
    _POSTGRES_EXPORTER, _REDIS_EXPORTER, _NGINX_EXPORTER,
)  # fmt: skip


def stand_in_for(tag: str) -> StandIn | None:
    """The recipe whose pattern matches the whole tag, if any."""
    return next((s for s in STAND_INS if re.fullmatch(s.pattern, tag)), None)

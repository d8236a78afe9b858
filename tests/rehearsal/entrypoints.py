"""The stand-ins' entrypoint scripts: ours, written after the official images' own.

Each keeps the behaviour a user of the official image relies on (the
environment it reads, the folders it runs, when it steps down from root, what
it finally execs) and cites the script it follows. Nothing here is copied.
"""

# ruff: noqa: E501  (shell scripts keep their upstream line shapes)
from __future__ import annotations

__all__ = ["NGINX_ENTRYPOINT", "NGINX_ENVSUBST", "NGINX_LOCAL_RESOLVERS", "POSTGRES_ENTRYPOINT",
           "REDIS_ENTRYPOINT"]  # fmt: skip

# docker-library/postgres 15/bookworm/docker-entrypoint.sh: with `postgres` (or an
# option) as first argument, read POSTGRES_{PASSWORD,USER,DB,INITDB_ARGS} (and their
# *_FILE forms), step down from root with gosu, initdb an empty PGDATA with the
# password, allow "host all all all <password_encryption>", run
# /docker-entrypoint-initdb.d on a socket-only server, then exec the command.
POSTGRES_ENTRYPOINT = r"""#!/usr/bin/env bash
# Stand-in for docker-library/postgres docker-entrypoint.sh (15/bookworm).
set -Eeo pipefail

from_env_or_file() {  # NAME [DEFAULT]: $NAME, else the contents of $NAME_FILE
	local name="$1" file_name="${1}_FILE" value="${2:-}"
	if [ "${!name:-}" ] && [ "${!file_name:-}" ]; then
		echo >&2 "error: both $name and $file_name are set (but are exclusive)"; exit 1
	fi
	if [ "${!name:-}" ]; then value="${!name}"; elif [ "${!file_name:-}" ]; then value="$(< "${!file_name}")"; fi
	export "$name"="$value"; unset "$file_name"
}

wants_help() {
	local arg
	for arg; do case "$arg" in -'?'|--help|--describe-config|-V|--version) return 0 ;; esac; done
	return 1
}

run_sql() {
	local args=( psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc )
	[ -z "$POSTGRES_DB" ] || args+=( --dbname "$POSTGRES_DB" )
	PGHOST= PGHOSTADDR= "${args[@]}" "$@"
}

initialise() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
		echo >&2 'Error: Database is uninitialized and superuser password is not specified.'
		echo >&2 '       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser.'
		exit 1
	fi
	ls /docker-entrypoint-initdb.d/ > /dev/null
	if ! getent passwd "$(id -u)" > /dev/null; then  # initdb needs a passwd entry
		local wrapper
		for wrapper in {/usr,}/lib{/*,}/libnss_wrapper.so; do
			[ -s "$wrapper" ] || continue
			NSS_WRAPPER_PASSWD="$(mktemp)"; NSS_WRAPPER_GROUP="$(mktemp)"
			export LD_PRELOAD="$wrapper" NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
			printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" > "$NSS_WRAPPER_PASSWD"
			printf 'postgres:x:%s:\n' "$(id -g)" > "$NSS_WRAPPER_GROUP"
			break
		done
	fi
	local waldir=()
	[ -z "${POSTGRES_INITDB_WALDIR:-}" ] || waldir=( --waldir "$POSTGRES_INITDB_WALDIR" )
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "${waldir[@]}"'
	if [[ "${LD_PRELOAD:-}" == */libnss_wrapper.so ]]; then
		rm -f "$NSS_WRAPPER_PASSWD" "$NSS_WRAPPER_GROUP"; unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
	fi
	local server=( "$@" ); [ "${server[0]}" != postgres ] || server=( "${server[@]:1}" )
	: "${POSTGRES_HOST_AUTH_METHOD:=$(postgres -C password_encryption "${server[@]}")}"
	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"
	export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
	PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -w start \
		-o "$(printf '%q ' "${server[@]}" -c listen_addresses='' -p "${PGPORT:-5432}")"
	if [ -z "$(POSTGRES_DB= run_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
			<<< "SELECT 1 FROM pg_database WHERE datname = :'db';")" ]; then
		POSTGRES_DB= run_sql --dbname postgres --set db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db";'
	fi
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh) if [ -x "$f" ]; then echo "$0: running $f"; "$f"; else echo "$0: sourcing $f"; . "$f"; fi ;;
			*.sql) echo "$0: running $f"; run_sql -f "$f" ;;
			*.sql.gz) echo "$0: running $f"; gunzip -c "$f" | run_sql ;;
			*.sql.xz) echo "$0: running $f"; xzcat "$f" | run_sql ;;
			*.sql.zst) echo "$0: running $f"; zstd -dc "$f" | run_sql ;;
			*) [ ! -e "$f" ] || echo "$0: ignoring $f" ;;
		esac
	done
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
	unset PGPASSWORD
	printf '\nPostgreSQL init process complete; ready for start up.\n\n'
}

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && ! wants_help "$@"; then
	from_env_or_file POSTGRES_PASSWORD
	from_env_or_file POSTGRES_USER postgres
	from_env_or_file POSTGRES_DB "$POSTGRES_USER"
	from_env_or_file POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	mkdir -p "$PGDATA"; chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :; chmod 03775 /var/run/postgresql || :
	if [ "$(id -u)" = 0 ]; then
		find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
		exec gosu postgres "$BASH_SOURCE" "$@"
	fi
	if [ -s "$PGDATA/PG_VERSION" ]; then
		printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
	else
		initialise "$@"
	fi
fi
exec "$@"
"""

# docker-library/redis 7.2/alpine/docker-entrypoint.sh (the 7.4 template is the same):
# an option or a *.conf first argument means redis-server; as root, chown the
# working folder and step down to redis with gosu; umask 0077 unless set.
REDIS_ENTRYPOINT = r"""#!/bin/sh
# Stand-in for docker-library/redis docker-entrypoint.sh (alpine).
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec gosu redis "$0" "$@"
fi
if [ "$(umask)" = 0022 ]; then umask 0077; fi
exec "$@"
"""

# nginxinc/docker-nginx-unprivileged mainline/alpine-slim/docker-entrypoint.sh (1.27.2):
# for `nginx` or `nginx-debug`, source the executable *.envsh and run the executable
# *.sh of /docker-entrypoint.d in version order, then exec the command.
NGINX_ENTRYPOINT = r"""#!/bin/sh
# Stand-in for nginxinc/docker-nginx-unprivileged /docker-entrypoint.sh.
set -e
say() { [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$@"; }
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
	if find /docker-entrypoint.d/ -mindepth 1 -maxdepth 1 -type f -print -quit 2>/dev/null | read -r _; then
		say "$0: /docker-entrypoint.d/ is not empty, will attempt to perform configuration"
		for f in $(find /docker-entrypoint.d/ -follow -type f -print | sort -V); do
			case "$f" in
				*.envsh) if [ -x "$f" ]; then say "$0: Sourcing $f"; . "$f"; else say "$0: Ignoring $f, not executable"; fi ;;
				*.sh) if [ -x "$f" ]; then say "$0: Launching $f"; "$f"; else say "$0: Ignoring $f, not executable"; fi ;;
				*) say "$0: Ignoring $f" ;;
			esac
		done
		say "$0: Configuration complete; ready for start up"
	else
		say "$0: No files found in /docker-entrypoint.d/, skipping configuration"
	fi
fi
exec "$@"
"""

# The same repository's 20-envsubst-on-templates.sh: each *.template below
# /etc/nginx/templates becomes a file in /etc/nginx/conf.d with the environment
# substituted (stream templates are left out here).
NGINX_ENVSUBST = r"""#!/bin/sh
# Stand-in for 20-envsubst-on-templates.sh (http templates only).
set -e
templates="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
out="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
[ -d "$templates" ] || exit 0
if [ ! -w "$out" ]; then echo "$0: ERROR: $templates exists, but $out is not writable"; exit 0; fi
names=$(printf '${%s} ' $(awk "END { for (n in ENVIRON) { print (n ~ /${NGINX_ENVSUBST_FILTER:-}/) ? n : \"\" } }" < /dev/null))
find "$templates" -follow -type f -name "*$suffix" -print | while read -r template; do
	relative="${template#"$templates/"}"
	mkdir -p "$out/$(dirname "$relative")"
	envsubst "$names" < "$template" > "$out/${relative%"$suffix"}"
done
"""

# The same repository's 15-local-resolvers.envsh: with NGINX_ENTRYPOINT_LOCAL_RESOLVERS
# set, export NGINX_LOCAL_RESOLVERS from /etc/resolv.conf's nameservers.
NGINX_LOCAL_RESOLVERS = r"""#!/bin/sh
# Stand-in for 15-local-resolvers.envsh.
[ "${NGINX_ENTRYPOINT_LOCAL_RESOLVERS:-}" ] || return 0
NGINX_LOCAL_RESOLVERS=$(awk 'BEGIN{ORS=" "} $1=="nameserver" {if ($2 ~ ":") {print "["$2"]"} else {print $2}}' /etc/resolv.conf)
NGINX_LOCAL_RESOLVERS="${NGINX_LOCAL_RESOLVERS% }"
export NGINX_LOCAL_RESOLVERS
"""

#!/usr/bin/env bash
# SSH credentials for an `ssh://` Docker host (luna:dockerHost), shared by the
# preview, deploy and drift jobs (docs/pipeline.md, "Docker hosts over SSH").
#
# The Docker provider (pulumi-docker bridges kreuzwerker/terraform-provider-docker,
# internal/provider/config.go) reaches an ssh:// host through docker/cli's
# connhelper (cli/connhelper/connhelper.go), which runs the runner's own client:
#   ssh [-l USER] [-p PORT] -o ConnectTimeout=30 -T -- HOST docker system dial-stdio
# so the key and the pinned host key reach it through ~/.ssh/config.
#
# Usage: ssh-setup.sh           reads DOCKER_HOST_SSH_KEY, DOCKER_HOST_KNOWN_HOSTS
#        ssh-setup.sh --remove  deletes the key and the ~/.ssh/config block (the
#                               job's always() step)
# Neither secret set: nothing to do (a Kubernetes stack, or a local socket).
set -euo pipefail

: "${RUNNER_TEMP:?RUNNER_TEMP is not set}" "${HOME:?HOME is not set}"
dir="$RUNNER_TEMP/docker-host-ssh"
config="$HOME/.ssh/config"
begin="# >>> docker-host-ssh (.github/scripts/ssh-setup.sh)"
end="# <<< docker-host-ssh"

# Every file written here is readable by this user only.
umask 077

# Drop this script's block from ~/.ssh/config, keeping anything else in it.
strip_block() {
  [ -f "$config" ] || return 0
  awk -v b="$begin" -v e="$end" '$0 == b { skip = 1 } !skip { print } $0 == e { skip = 0 }' \
    "$config" > "$config.tmp"
  mv "$config.tmp" "$config"
}

if [ "${1:-}" = --remove ]; then
  rm -rf "$dir"
  strip_block
  exit 0
fi
[ $# -eq 0 ] || { echo "usage: $0 [--remove]" >&2; exit 2; }

key=${DOCKER_HOST_SSH_KEY:-}
known=${DOCKER_HOST_KNOWN_HOSTS:-}
unset DOCKER_HOST_SSH_KEY DOCKER_HOST_KNOWN_HOSTS
if [ -z "$key" ] && [ -z "$known" ]; then
  echo "No DOCKER_HOST_SSH_KEY in this environment: no ssh:// Docker host to reach."
  exit 0
fi
if [ -z "$key" ] || [ -z "$known" ]; then
  echo "::error::set both DOCKER_HOST_SSH_KEY and DOCKER_HOST_KNOWN_HOSTS (docs/pipeline.md): a key without a pinned host key would trust whoever answers" >&2
  exit 1
fi

# The job's always() step deletes $dir.
mkdir -p "$dir" "$HOME/.ssh"
printf '%s\n' "$key" > "$dir/key"
printf '%s\n' "$known" > "$dir/known_hosts"
unset key known

# Fail here, with one line, rather than half-way through pulumi: the key must
# be an unencrypted private key (nobody can type a passphrase in a job)...
if ! ssh-keygen -y -P '' -f "$dir/key" > /dev/null 2>&1; then
  echo "::error::DOCKER_HOST_SSH_KEY is not an OpenSSH private key without a passphrase" >&2
  exit 1
fi
# ...and the known_hosts must pin at least one host key. Fingerprints are public.
if ! fingerprints=$(ssh-keygen -l -f "$dir/known_hosts" 2> /dev/null) || [ -z "$fingerprints" ]; then
  echo "::error::DOCKER_HOST_KNOWN_HOSTS holds no known_hosts line (ssh-keyscan HOST output)" >&2
  exit 1
fi
echo "Pinned Docker host keys:"
printf '  %s\n' "$fingerprints"

# First in the file, so that no earlier `Host *` can loosen it (ssh takes the
# first value it finds). StrictHostKeyChecking yes: a host key that is not
# pinned, or has changed, ends the connection; nothing is ever added
# (never accept-new). Only the pinned file counts, not the system-wide one.
strip_block
{
  echo "$begin"
  echo "Host *"
  echo "  IdentityFile \"$dir/key\""
  echo "  IdentitiesOnly yes"
  echo "  UserKnownHostsFile \"$dir/known_hosts\""
  echo "  GlobalKnownHostsFile /dev/null"
  echo "  StrictHostKeyChecking yes"
  echo "  UpdateHostKeys no"
  echo "  BatchMode yes"
  echo "$end"
  [ ! -f "$config" ] || cat "$config"
} > "$config.tmp"
mv "$config.tmp" "$config"

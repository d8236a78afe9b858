#!/usr/bin/env bash
# `pulumi up` for one stack: every up the pipeline runs goes through here
# (deploy-staging, deploy-production and both rollbacks; docs/pipeline.md). Needs
# the Pulumi CLI and the program's venv on PATH, and the job's OIDC role in the
# environment (secret store, state).
#
# Reads:  STACK; IMAGE (empty: the luna:appImage committed in Pulumi.$STACK.yaml);
#         PULUMI_BACKEND_URL, and whichever credentials the environment holds:
#         PULUMI_ACCESS_TOKEN | AWS_* (state, secret store), PULUMI_CONFIG_PASSPHRASE
#         (secrets provider), KUBECONFIG_DATA (target). An ssh:// Docker host is
#         reached through ssh-setup.sh, the step before.
# Order:  login; the stack's secrets from the store (scripts/stack_secrets.py);
#         image check; preflight (python -m infra.preflight); up.
# Writes: step outputs attempted (set just before up), image, app_url;
#         $RUNNER_TEMP/stack-outputs.json (secrets stay "[secret]").
set -euo pipefail

: "${STACK:?STACK is not set}" "${RUNNER_TEMP:?}" "${GITHUB_OUTPUT:?}"
: "${PULUMI_BACKEND_URL:?set the secret PULUMI_BACKEND_URL (docs/pipeline.md)}"
# How long to wait for another update of the same stack (the backend's lock) to end.
lock_wait_s=${LOCK_WAIT_S:-1800} lock_poll_s=${LOCK_POLL_S:-30}

# Credential files are readable by this user only and removed by the job's last step.
umask 077
if [ -n "${KUBECONFIG_DATA:-}" ]; then
  printf '%s\n' "$KUBECONFIG_DATA" > "$RUNNER_TEMP/kubeconfig"
  export KUBECONFIG="$RUNNER_TEMP/kubeconfig"
fi
unset KUBECONFIG_DATA

pulumi login --non-interactive "$PULUMI_BACKEND_URL"

# Every secret the code requires of this stack, from the store, encrypted by the
# stack's secrets provider into this runner's copy of Pulumi.$STACK.yaml only.
python scripts/stack_secrets.py apply --stack "$STACK"

image=${IMAGE:-$(python scripts/record_image.py --stack "$STACK" --current)}
python scripts/smoke_check.py image "$image"
case "$image" in
  *@sha256:0000000000000000000000000000000000000000000000000000000000000000)
    echo "::error::no image recorded for $STACK yet: dispatch the app's published digest (docs/pipeline.md)"
    exit 1 ;;
esac
echo "image=$image" >> "$GITHUB_OUTPUT"

# The policy pack (policy/, docs/compliance.md) runs inside the update; its venv
# is the one PulumiPolicy.yaml names, installed from its lock with hashes.
if [ ! -x policy/venv/bin/python ]; then
  python -m venv policy/venv
  policy/venv/bin/pip install -q --require-hashes --no-deps -r policy/requirements.lock
fi

# The preflight (infra/preflight.py) checks what the stack needs outside the
# code: secrets, TLS pair, object store, platform. It runs before every up, unguarded.
values=$(mktemp "$RUNNER_TEMP/values.XXXXXX")
pulumi config --json --show-secrets --stack "$STACK" > "$values"
rc=0
python -m infra.preflight --stack "$STACK" --values "$values" || rc=$?
rm -f "$values"
[ "$rc" -eq 0 ] || { echo "::error::preflight failed for $STACK (exit $rc)"; exit "$rc"; }

echo "attempted=true" >> "$GITHUB_OUTPUT"
# Two runs (develop and main) may reach the same stack: each has its own
# concurrency group, so neither cancels the other, and the backend's update lock
# serializes them. A locked stack is waited for, never forced (no `pulumi cancel`).
deadline=$(( $(date +%s) + lock_wait_s ))
while :; do
  log="$RUNNER_TEMP/up.log"
  rc=0
  pulumi up --stack "$STACK" --yes --non-interactive --diff --policy-pack policy \
    --config "luna:appImage=$image" \
    --message "${GITHUB_SHA:-local} run ${GITHUB_RUN_ID:-0}: $image" 2>&1 | tee "$log" || rc=$?
  [ "$rc" -eq 0 ] && break
  if grep -q -E "Another update is currently in progress|the stack is currently locked" "$log" \
     && [ "$(date +%s)" -lt "$deadline" ]; then
    echo "::notice::$STACK is being updated by another run; waiting for its lock"
    sleep "$lock_poll_s"
    continue
  fi
  exit "$rc"
done

# Without --show-secrets, secret outputs print as "[secret]"; the smoke check
# fails the deploy if any output holds a secret in plaintext.
pulumi stack output --stack "$STACK" --json > "$RUNNER_TEMP/stack-outputs.json"
app_url=$(pulumi stack output --stack "$STACK" app_url)
echo "app_url=$app_url" >> "$GITHUB_OUTPUT"
{
  echo "### Deployed \`$STACK\`"
  echo
  echo "- image: \`$image\`"
  echo "- commit: \`${GITHUB_SHA:-local}\`"
  echo "- URL: $app_url"
} >> "${GITHUB_STEP_SUMMARY:-/dev/null}"

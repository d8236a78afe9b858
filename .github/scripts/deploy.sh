#!/usr/bin/env bash
# `pulumi up` for one stack, shared by the pipeline's deploy-staging and
# deploy-production jobs (docs/pipeline.md). Needs the Pulumi CLI and the
# program's venv on PATH.
#
# Reads:  STACK, IMAGE (empty: the luna:appImage committed in Pulumi.$STACK.yaml),
#         PULUMI_BACKEND_URL, and whichever credentials the environment holds:
#         PULUMI_ACCESS_TOKEN | AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (state),
#         PULUMI_CONFIG_PASSPHRASE (secrets provider), KUBECONFIG_DATA (target),
#         OPENAI_API_KEY. An ssh:// Docker host is reached through the key and
#         pinned host key that ssh-setup.sh, the step before, configured.
# Writes: step output app_url; $RUNNER_TEMP/stack-outputs.json, the outputs as
#         `pulumi stack output --json` shows them (secrets stay "[secret]").
set -euo pipefail

: "${STACK:?STACK is not set}" "${RUNNER_TEMP:?}" "${GITHUB_OUTPUT:?}"
: "${PULUMI_BACKEND_URL:?set the secret PULUMI_BACKEND_URL (docs/pipeline.md)}"
openai_key_name=${OPENAI_CONFIG_KEY:-luna:openaiApiKey}

# Credential files are readable by this user only and removed by the job's last step.
umask 077
if [ -n "${KUBECONFIG_DATA:-}" ]; then
  printf '%s\n' "$KUBECONFIG_DATA" > "$RUNNER_TEMP/kubeconfig"
  export KUBECONFIG="$RUNNER_TEMP/kubeconfig"
fi
unset KUBECONFIG_DATA

pulumi login --non-interactive "$PULUMI_BACKEND_URL"

image=${IMAGE:-$(pulumi config get luna:appImage --stack "$STACK")}
python scripts/smoke_check.py image "$image"

if [ -n "${OPENAI_API_KEY:-}" ]; then
  # From stdin, so the key never appears in a process list; Pulumi encrypts it
  # with the stack's secrets provider.
  printf '%s' "$OPENAI_API_KEY" | pulumi config set --secret "$openai_key_name" --stack "$STACK"
fi
unset OPENAI_API_KEY

# The policy pack (policy/, docs/compliance.md) runs inside the update; a mandatory
# violation stops it before anything changes. Its venv is the one PulumiPolicy.yaml names.
if [ ! -x policy/venv/bin/python ]; then
  python -m venv policy/venv
  policy/venv/bin/pip install -q -r policy/requirements.txt
fi
pulumi up --stack "$STACK" --yes --non-interactive --diff --policy-pack policy \
  --config "luna:appImage=$image" \
  --message "${GITHUB_SHA:-local} run ${GITHUB_RUN_ID:-0}: $image"

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

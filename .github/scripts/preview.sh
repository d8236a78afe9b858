#!/usr/bin/env bash
# `pulumi preview --refresh` for one stack, with the read-only preview role
# (docs/pipeline.md, "Preview and drift credentials"): it reads the live
# resources and the stack's secrets, and writes nothing. Shared by the pull
# request preview (staging) and the production preview shown to the reviewers.
#
# Reads:  STACK, PULUMI_BACKEND_URL and the environment's credentials, as deploy.sh.
# Writes: $PREVIEW_OUT (default $RUNNER_TEMP/preview-$STACK.txt), and the job summary.
set -euo pipefail

: "${STACK:?STACK is not set}" "${RUNNER_TEMP:?}"
: "${PULUMI_BACKEND_URL:?set the secret PULUMI_BACKEND_URL (docs/pipeline.md)}"
out=${PREVIEW_OUT:-$RUNNER_TEMP/preview-$STACK.txt}

umask 077
if [ -n "${KUBECONFIG_DATA:-}" ]; then
  printf '%s\n' "$KUBECONFIG_DATA" > "$RUNNER_TEMP/kubeconfig"
  export KUBECONFIG="$RUNNER_TEMP/kubeconfig"
fi
unset KUBECONFIG_DATA

pulumi login --non-interactive "$PULUMI_BACKEND_URL"
python scripts/stack_secrets.py apply --stack "$STACK"
if [ ! -x policy/venv/bin/python ]; then
  python -m venv policy/venv
  policy/venv/bin/pip install -q --require-hashes --no-deps -r policy/requirements.lock
fi

rc=0
# --refresh: the diff is against what runs, not only against the state.
pulumi preview --stack "$STACK" --refresh --diff --non-interactive --suppress-outputs \
  --policy-pack policy > "$out" 2>&1 || rc=$?
{
  echo "### Preview of \`$STACK\` (exit $rc), commit \`${GITHUB_SHA:-local}\`"
  echo
  echo '```diff'
  # The job summary holds at most 1 MiB; the whole text is in the artifact.
  head -c 900000 "$out"
  echo '```'
} >> "${GITHUB_STEP_SUMMARY:-/dev/null}"
exit "$rc"

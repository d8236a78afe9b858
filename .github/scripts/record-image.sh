#!/usr/bin/env bash
# The bot's commit of the deployed app image into Pulumi.<stack>.yaml
# (scripts/record_image.py), pushed to the branch that deployed it, so that a
# later push deploys this image and never an older one (docs/pipeline.md).
#
# Reads: STAGING_IMAGE, PROD_IMAGE (empty: nothing to record for that stack),
#        TOKEN (the bot App's installation token), GITHUB_REPOSITORY, GITHUB_REF.
set -euo pipefail
: "${TOKEN:?}" "${GITHUB_REPOSITORY:?}" "${GITHUB_REF:?}"
server=${GITHUB_SERVER_URL:-https://github.com}
# The token travels in a header for this command only, never in a URL or on disk.
auth="AUTHORIZATION: basic $(printf 'x-access-token:%s' "$TOKEN" | base64 -w0)"
echo "::add-mask::$auth"
git_bot() {
  git -c user.name="luna-deploy-bot[bot]" -c user.email="luna-deploy-bot@users.noreply.github.com" \
    -c http.extraHeader="$auth" "$@"
}

changed=()
for stack in staging prod; do
  var="$(echo "$stack" | tr '[:lower:]' '[:upper:]')_IMAGE"
  image=${!var:-}
  [ -n "$image" ] || continue
  current=$(python3 scripts/record_image.py --stack "$stack" --current)
  if [ "$image" = "$current" ]; then
    echo "Pulumi.$stack.yaml already names $image"
    continue
  fi
  python3 scripts/record_image.py --stack "$stack" --image "$image"
  changed+=("Pulumi.$stack.yaml")
done
[ ${#changed[@]} -gt 0 ] || exit 0

# [skip ci]: the commit records what this run deployed; re-running it would deploy the same.
git_bot commit -m "Record the deployed app image (run $GITHUB_RUN_ID) [skip ci]" -- "${changed[@]}"
for attempt in 1 2 3; do
  if git_bot push "$server/$GITHUB_REPOSITORY" "HEAD:$GITHUB_REF"; then
    echo "Recorded in ${changed[*]}" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"
    exit 0
  fi
  # The branch moved on (a merge landed meanwhile): replay the one-line change on it.
  git_bot pull --rebase "$server/$GITHUB_REPOSITORY" "$GITHUB_REF"
  echo "push attempt $attempt failed; retrying on the new tip"
done
echo "::error::could not push the recorded image; commit it by hand (docs/runbooks/break-glass.md)"
exit 1

#!/usr/bin/env bash
# The node image: loaded from the cached file when the cache had it, otherwise built and saved for the cache
# (actions/cache stores the file at the end of the job).
set -euo pipefail
: "${IMAGE_FILE:?}"
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo env PATH=$PATH")
if [ "${CACHE_HIT:-}" = "true" ] && [ -f "$IMAGE_FILE" ]; then
  $SUDO testbed images load "$IMAGE_FILE"
else
  $SUDO testbed images build
  $SUDO testbed images save "$IMAGE_FILE"
  $SUDO chown "$(id -u):$(id -g)" "$IMAGE_FILE"
fi

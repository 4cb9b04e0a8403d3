#!/usr/bin/env bash
# `testbed up` of the user's topology. Bad input fails here with file:line:field errors and leaves nothing up.
set -euo pipefail
: "${TOPOLOGY:?the topology input is required in mode up}" "${RUNNER_TEMP:?}" "${GITHUB_OUTPUT:?}"
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo env PATH=$PATH")
if [ ! -f "$TOPOLOGY" ]; then
  echo "::error file=$TOPOLOGY::no such topology file: $TOPOLOGY"
  exit 2
fi
args=("$TOPOLOGY" --quiet)
[ -n "${LAB_NAME:-}" ] && args+=(--name "$LAB_NAME")
$SUDO testbed up "${args[@]}"
py="$(dirname "$(command -v testbed)")/python"  # testbed's virtualenv, which has PyYAML
name=${LAB_NAME:-$("$py" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["name"])' "$TOPOLOGY")}
status="$RUNNER_TEMP/testbed-status-$name.json"
for _ in $(seq 1 60); do  # up returns with the lab ready; this confirms what status observes
  $SUDO testbed status --lab "$name" --json > "$status"
  phase=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["phase"])' "$status")
  [ "$phase" = ready ] || [ "${WAIT:-true}" != true ] && break
  sleep 1
done
echo "lab $name: $phase"
[ "${WAIT:-true}" != true ] || [ "$phase" = ready ] || { echo "::error::lab $name is $phase"; exit 1; }
echo "lab-name=$name" >> "$GITHUB_OUTPUT"
echo "status-json=$status" >> "$GITHUB_OUTPUT"

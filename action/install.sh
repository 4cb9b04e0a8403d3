#!/usr/bin/env bash
# The action's first step: the host's packages and Docker engine (scripts/host-setup.sh), then testbed in a
# virtualenv whose bin/ joins PATH for the job's later steps.
set -euo pipefail
: "${ACTION_PATH:?}" "${RUNNER_TEMP:?}" "${GITHUB_PATH:?}" "${GITHUB_OUTPUT:?}"
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
$SUDO bash "$ACTION_PATH/scripts/host-setup.sh"
venv="$RUNNER_TEMP/testbed-venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "${PACKAGE:-$ACTION_PATH}"
echo "$venv/bin" >> "$GITHUB_PATH"
echo "venv=$venv" >> "$GITHUB_OUTPUT"
"$venv/bin/testbed" version

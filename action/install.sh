#!/usr/bin/env bash
# The action's first step: the host's packages and Docker engine (scripts/host-setup.sh), then testbed in a
# virtualenv whose bin/ joins PATH for the job's later steps.
set -euo pipefail
: "${ACTION_PATH:?}" "${RUNNER_TEMP:?}" "${GITHUB_PATH:?}" "${GITHUB_OUTPUT:?}"
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
$SUDO bash "$ACTION_PATH/scripts/host-setup.sh"
venv="$RUNNER_TEMP/testbed-venv"
package="${PACKAGE:-$ACTION_PATH}"
# A second use of the action in the same job (another lab, another topology) finds the virtualenv that the
# first one made. It installs again only when asked for something else: about 25 s saved a use.
wanted="$package"
[ -f "$package" ] && wanted="$package $(sha256sum "$package" | cut -d' ' -f1)"
if [ -x "$venv/bin/testbed" ] && [ "$(cat "$venv/.testbed-package" 2>/dev/null)" = "$wanted" ]; then
  echo "testbed is already installed in $venv (an earlier use of the action in this job)"
else
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "$package"
  echo "$wanted" > "$venv/.testbed-package"
fi
echo "$venv/bin" >> "$GITHUB_PATH"
echo "venv=$venv" >> "$GITHUB_OUTPUT"
"$venv/bin/testbed" version

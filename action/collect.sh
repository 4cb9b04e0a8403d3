#!/usr/bin/env bash
# After a failed job: every lab's observed status, routes and services, each machine's agent, daemon and pod
# logs, and its container log, into one folder for upload.
set -uo pipefail
: "${OUT:?}"
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo env PATH=$PATH")
mkdir -p "$OUT"
$SUDO testbed list --json > "$OUT/labs.json" || true
py="$(dirname "$(command -v testbed)")/python"
labs=${LAB_NAME:-$("$py" -c 'import json, sys; print(" ".join(l["name"] for l in json.load(open(sys.argv[1]))))' \
                   "$OUT/labs.json")}
for lab in $labs; do
  dir="$OUT/$lab"
  mkdir -p "$dir"
  for verb in status routes services; do
    $SUDO testbed "$verb" --lab "$lab" --json > "$dir/$verb.json" 2> "$dir/$verb.err" || true
  done
  for run in /run/testbed/"$lab"/*/; do
    machine=$(basename "$run")
    mkdir -p "$dir/$machine"
    $SUDO cp -r "$run/logs" "$dir/$machine/" 2>/dev/null || true
    $SUDO docker logs "$lab-$machine" > "$dir/$machine/container.log" 2>&1 || true
  done
done
$SUDO chown -R "$(id -u):$(id -g)" "$OUT"
echo "collected into $OUT"

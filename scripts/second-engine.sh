#!/usr/bin/env bash
# A second Docker engine on this machine, isolated the way a second host is, for multi-host tests and by hand.
#
#   scripts/second-engine.sh up [NAME [LAN]]     # prints its endpoint: tcp://198.18.0.2:2375
#   scripts/second-engine.sh down [NAME [LAN]]   # stops it; removes its namespace, LAN, data and run folders
#   DOCKER_HOST=tcp://198.18.0.2:2375 docker ps
#
# It has its own network namespace (reached only over a private veth "LAN", a /30 of the benchmark range,
# default 198.18.0.0/30: this machine is .1, the engine .2; give each engine its own), its own mount and PID
# namespaces, data root and run folder.
# It listens on TCP only, on the LAN: no unix socket of it is seen from here. Plain TCP (--tls=false, said
# outright, or dockerd sleeps 15 s to warn): the LAN is private to this machine. Nothing of the host's firewall is
# touched (the engine runs with --iptables=false, as testbed's own). `ip netns exec` cannot start it: it
# remounts /sys, which hides the cgroup v1 mounts dockerd needs; nsenter into the namespace does not.
set -euo pipefail

cmd=${1:-up}
name=${2:-tbhost2}
ns="$name"
host_if="${name}-lan"
peer_if="lan0"
lan=${3:-198.18.0.0/30}
base=${lan%/*}
prefix=${base%.*}
last=${base##*.}
host_ip="$prefix.$((last + 1))"
engine_ip="$prefix.$((last + 2))"
port=2375
data="/var/lib/testbed-engines/$name"  # root/ its data root, etc/ its /etc/docker (its engine ID)
run="/run/testbed-engines/$name"
endpoint="tcp://$engine_ip:$port"

# its own engine, not another one on the same address
mine() { ip netns list | grep -qx "$ns\( .*\)\?"; }
answers() { mine && timeout 5 docker -H "$endpoint" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

up() {
  if answers; then echo "$endpoint"; return; fi
  if ip -4 addr show | grep -q "inet $host_ip/"; then
    if ! ip -4 addr show dev "$host_if" 2>/dev/null | grep -q "inet $host_ip/"; then
      echo "$host_ip is already used on this machine: give this engine another LAN (third argument)" >&2
      exit 2
    fi
  fi
  mkdir -p "$data/root" "$data/etc" "$run"
  mine || ip netns add "$ns"
  if ! ip link show "$host_if" >/dev/null 2>&1; then
    ip link add "$host_if" type veth peer name "$peer_if" netns "$ns"
    ip addr add "$host_ip/30" dev "$host_if"
    ip link set "$host_if" up
    ip -n "$ns" addr add "$engine_ip/30" dev "$peer_if"
    ip -n "$ns" link set "$peer_if" up
    ip -n "$ns" link set lo up
  fi
  # its own /run (pid files, containerd's sockets) and /var/lib/docker, seen by it alone; the runc shim's launcher
  # first on its PATH, as on the engine scripts/host-setup.sh starts (a lab's machines share a few shims)
  nohup nsenter --net="/run/netns/$ns" unshare --mount --pid --fork --mount-proc --propagation private \
    sh -c "mount -t tmpfs tmpfs /run && mount --bind '$data/root' /var/lib/docker && \
           mkdir -p /etc/docker && mount --bind '$data/etc' /etc/docker && \
           export PATH=/usr/local/lib/testbed/engine:\$PATH && \
           exec dockerd -H $endpoint --tls=false --iptables=false --ip-masq=false --bridge=none \
           --exec-root /run/docker --pidfile /run/docker.pid" >"$run/dockerd.log" 2>&1 &
  echo $! >"$run/pid"
  for _ in $(seq 60); do
    answers && { echo "$endpoint"; return; }
    sleep 0.5
  done
  echo "the second engine did not answer on $endpoint; see $run/dockerd.log" >&2
  exit 4
}

down() {
  if answers; then  # its containers first, through its own API, as on a real host
    ids=$(docker -H "$endpoint" ps -aq)
    [ -z "$ids" ] || docker -H "$endpoint" rm -f $ids >/dev/null
  fi
  if [ -f "$run/pid" ]; then
    # the unshare process's child is dockerd (PID 1 of its namespace): ending unshare's namespace ends it
    pid=$(cat "$run/pid")
    pkill -TERM -P "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  ip link del "$host_if" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$run"
  # the data root holds overlay mounts only inside its own mount namespace, gone with it
  rm -rf "$data"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [NAME]" >&2; exit 2 ;;
esac

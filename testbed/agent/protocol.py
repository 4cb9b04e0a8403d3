"""The agent's protocol: one dataclass per operation, shared by the host (which checks a request before it sends
it) and the agent (which builds the same dataclass from what it receives, so a missing or unknown field is a
clear error, not a KeyError deep in a handler). JSON lines over a unix socket: {"op": name, ...fields}."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ping:
    pass


@dataclass
class Reexec:
    """Re-execute with the code now on disk; pods and daemons' files stay, sockets are reopened on next sync."""


@dataclass
class Status:
    brief: bool = False  # the node's pods alone, without its links, routes and daemons (dumped at each call)


@dataclass
class SyncPods:
    net: dict[str, Any]
    pods: list[dict[str, Any]]
    verify: bool = False  # `up`: a pod whose network is not as made (CNI CHECK fails, an address is gone) is rebuilt
    release: bool = False  # only let the pods that go go, at once (PodManager.release); the sync follows


@dataclass
class Daemons:
    """The full list of daemons the machine should run: {name, argv, files: {path: text}, reload: argv}."""

    procs: list[dict[str, Any]]
    group: str = "daemons"  # an installer's own daemons (the node cache) are a group of their own


@dataclass
class Rules:
    """Replace one testbed-owned nftables table (text is its `table ... { }` block), or delete it (None). Or,
    with `patch`, change it by those nft commands, only if what the table holds is what `base` names (the
    `token` of an earlier sync); else the answer is `stale` and nothing changes."""

    family: str
    table: str
    text: str | None = None
    patch: str | None = None
    base: str | None = None
    token: str | None = None  # names what the table holds after this sync
    verify: bool = False  # read the kernel: a table changed behind the agent's back is loaded again


@dataclass
class Iptables:
    """Replace the tables an owner renders (kube-proxy: nat and filter; policy: mangle) of each family with
    iptables-restore input (None: leave that family)."""

    v4: str | None = None
    v6: str | None = None
    owner: str = "kube-proxy"
    base: str | None = None  # given: v4 and v6 are `--noflush` changes to the tables that `base` names
    token: str | None = None
    verify: bool = False


@dataclass
class Ipsets:
    """Fill the ipsets given ({name: {type, family, members}}): each changed set is filled as a new set and
    swapped in (atomic), in one `ipset restore`. With keep (after the rules that used them are gone), the
    prefix's sets not named there are destroyed."""

    prefix: str
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    keep: list[str] | None = None
    verify: bool = False


@dataclass
class Compare:
    """What the kernel holds against what is meant, in the kernel's own words (see agent/kernel.py): an nft
    table (family, table, text; None: meant to be absent), an owner's iptables tables (v4, v6) or a prefix's
    ipsets (sets)."""

    kind: str  # nft | iptables | ipsets
    family: str = ""
    table: str = ""
    text: str | None = None
    v4: str | None = None
    v6: str | None = None
    prefix: str = ""
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Inspect:
    """The machine's own network state, for checks: links (with VXLAN settings), addresses, the main routing
    table, permanent and proxy neighbours, and the VXLAN forwarding entries; with pods, each pod's too."""

    pods: bool = False


@dataclass
class TraceStart:
    """Mark one flow's first packet for nftables tracing (protocol, source port) and listen to the traces."""

    protocol: str
    sport: int


@dataclass
class TraceStop:
    """Stop tracing; answer the trace lines, the flow's conntrack entries and the routes of these addresses."""

    protocol: str = ""
    sport: int = 0
    addresses: list[str] = field(default_factory=list)
    seen: bool = False  # the packet began here: wait for its lines as long as a busy machine may take


@dataclass
class Restart:
    """Kill a supervised process (even a stopped or hung one); its supervisor starts it again."""

    name: str


@dataclass
class Conntrack:
    """Forget UDP flows to endpoints that are gone, as kube-proxy does: (service IP, port, endpoint IP)."""

    flows: list[list[Any]] = field(default_factory=list)


@dataclass
class KillPod:
    """A pod's containers killed (`testbed fault kill`): its processes (their supervisor starts them again), or
    a netexec pod's sockets, closed and opened again after RESTART_DELAY, as a container restart."""

    netns: str


@dataclass
class Probe:
    """Probe these pods' containers now rather than at their next period: `up` asks it of pods whose servers it
    has seen answer, instead of waiting up to a period for their first passing probe."""

    pods: list[str]


@dataclass
class Run:
    """A command in a pod's netns (or the machine's own), as the kubelet's runtime runs an exec: what the host
    would otherwise do through the engine's exec, a tenth of a second dearer (a DNS server's updates)."""

    argv: list[str]
    netns: str | None = None
    seconds: float = 10.0
    input: str = ""  # its standard input (an nft ruleset, say)


@dataclass
class Netops:
    """A machine-level network operation in the machine's own namespace (agent/netops.py names them)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Wire:
    """On the lab's fabric machine: each port's veth between a segment bridge (in the fabric's own netns) and a
    machine's netns, found by the machine's PID on this host. Each port: {machine, pid, ifname, segment_if,
    addresses: [[address, prefix]], mac}."""

    bridge: str
    mtu: int
    ports: list[dict[str, Any]]
    # the bridge joined to the other hosts' fabrics: {name, vni, port, local, peers: [addresses]}
    stitch: dict[str, Any] | None = None


@dataclass
class Agents:
    """On the lab's fabric machine: an agent for each node (forked by agent/zygote.py unless one it forked serves
    the node already). Each machine: {name, pid}, the node's init on this host. Answers {agents, errors}."""

    machines: list[dict[str, Any]]


@dataclass
class Delay:
    """Delay what leaves the node's underlay link (ms 0: stop; None: only say how the delayer fares)."""

    ms: float | None = None
    jitter: float = 0.0


@dataclass
class CniCheck:
    """CNI CHECK of every pod the node's plugins wired (with the cached results), as the kubelet's runtime
    would run it: each pod's error, or None."""


@dataclass
class Files:
    """Files the machine's processes read (a DNS server's configuration and zones, a proxy's certificates),
    written when they differ, readable by root only; in each folder of prune, files not given are removed."""

    files: dict[str, str] = field(default_factory=dict)
    prune: list[str] = field(default_factory=list)


@dataclass
class Serve:
    """netexec-style answers on ports of the machine's own netns (an external host's web server)."""

    name: str
    ports: list[dict[str, Any]] = field(default_factory=list)
    dual: bool = False


OPS: dict[str, type] = {"ping": Ping, "reexec": Reexec, "status": Status, "sync_pods": SyncPods,
                        "daemons": Daemons, "rules": Rules, "serve": Serve, "iptables": Iptables,
                        "ipsets": Ipsets, "conntrack": Conntrack, "files": Files,
                        "cni_check": CniCheck, "kill_pod": KillPod, "delay": Delay, "probe": Probe, "run": Run,
                        "compare": Compare, "wire": Wire, "netops": Netops, "agents": Agents,
                        "inspect": Inspect, "restart": Restart, "trace_start": TraceStart,
                        "trace_stop": TraceStop}


def parse(req: dict[str, Any]) -> tuple[str, Any]:
    op = req.get("op")
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    try:
        return op, OPS[op](**{k: v for k, v in req.items() if k != "op"})
    except TypeError as err:
        raise ValueError(f"{op}: {err}") from None

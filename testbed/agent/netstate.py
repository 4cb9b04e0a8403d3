"""A machine's own network state, read from the kernel for checks (`diagnose`, `status`): links with their
VXLAN settings and addresses, the main routing table of both families, the neighbour entries testbed makes
(permanent ones and proxy entries) and the VXLAN forwarding entries. Plain dicts, JSON-ready."""

from __future__ import annotations

import socket
from typing import Any

from testbed.agent.nlmsg import NTF_PROXY, NUD_PERMANENT

IFF_UP = 1


def _links(ipr: Any) -> tuple[list[dict[str, Any]], dict[int, str]]:
    out, names = [], {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        names[link["index"]] = name
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        entry: dict[str, Any] = {"name": name, "index": link["index"], "kind": kind, "up": bool(link["flags"] & IFF_UP),
                                 "mtu": link.get_attr("IFLA_MTU"), "mac": link.get_attr("IFLA_ADDRESS"),
                                 "master": link.get_attr("IFLA_MASTER")}
        if kind == "vxlan":
            data = info.get_attr("IFLA_INFO_DATA")
            entry["vxlan"] = {"id": data.get_attr("IFLA_VXLAN_ID"), "port": data.get_attr("IFLA_VXLAN_PORT"),
                              "local": data.get_attr("IFLA_VXLAN_LOCAL")}
        out.append(entry)
    return out, names


def routes(ipr: Any, names: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """The main routing table, both families (no link-local), with the protocol that installed each route."""
    if names is None:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    out = []
    for family, any_dst in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for r in ipr.get_routes(family=family, table=254):
            dst = r.get_attr("RTA_DST") or any_dst
            if family == socket.AF_INET6 and dst.startswith("fe80:"):
                continue
            out.append({"dst": f"{dst}/{r['dst_len']}", "gateway": r.get_attr("RTA_GATEWAY"),
                        "dev": names.get(r.get_attr("RTA_OIF")), "proto": r["proto"], "type": r["type"]})
    return out


def addresses(ipr: Any, names: dict[int, str]) -> list[dict[str, Any]]:
    return [{"dev": names.get(a["index"]), "address": a.get_attr("IFA_ADDRESS"), "prefix": a["prefixlen"]}
            for a in ipr.get_addr()]


def pod(netns_path: str, veth: str, node_ipr: Any) -> dict[str, Any]:
    """A pod as the kernel has it: its addresses and routes inside, its veth on the node."""
    from testbed.agent import nsutil
    from testbed.agent.iproute import IPRoute

    with nsutil.entered(netns_path):
        inside = IPRoute()
    try:
        _, names = _links(inside)
        out: dict[str, Any] = {"addresses": addresses(inside, names), "routes": routes(inside, names)}
    finally:
        inside.close()
    found = node_ipr.link_lookup(ifname=veth)
    link = node_ipr.get_links(found[0])[0] if found else None
    out["veth"] = None if link is None else {"name": veth, "up": bool(link["flags"] & IFF_UP),
                                             "master": link.get_attr("IFLA_MASTER")}
    return out


def inspect(ipr: Any) -> dict[str, Any]:
    links, names = _links(ipr)
    neighbours = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for n in ipr.get_neighbours(family=family):
            if n["state"] & NUD_PERMANENT or n["flags"] & NTF_PROXY:
                neighbours.append({"dev": names.get(n["ifindex"]), "dst": n.get_attr("NDA_DST"),
                                   "mac": n.get_attr("NDA_LLADDR"), "proxy": bool(n["flags"] & NTF_PROXY)})
    fdb = []
    for link in links:
        if link["kind"] == "vxlan":
            for f in ipr.fdb("dump", ifindex=link["index"]):
                if f.get_attr("NDA_DST"):
                    fdb.append({"dev": link["name"], "mac": f.get_attr("NDA_LLADDR"), "dst": f.get_attr("NDA_DST")})
    return {"links": links, "addresses": addresses(ipr, names), "routes": routes(ipr, names),
            "neighbours": neighbours, "fdb": fdb}

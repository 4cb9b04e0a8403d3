"""One connection, tried from inside a pod or a machine, with what it met: connected, refused or timed out; the
pod that answered and the source address it saw (from netexec's answer); and how long it took.

The try runs in the source's own network namespace (python3 of the node image, under `ip netns exec` for a
pod), so Service NAT, routes and policy apply exactly as they would to the pod's own traffic."""

from __future__ import annotations

import json
from typing import Any

from testbed import lab, podexec
from testbed.errors import InvalidInput, NotFound, Problem

SCRIPT = r"""
import json, socket, sys, time
host, port, proto, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
out = {"target": host, "port": port, "protocol": proto}
start = time.monotonic()
try:
    family, kind, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM if proto == "udp"
                                                  else socket.SOCK_STREAM)[0]
    out["address"] = addr[0]
    s = socket.socket(family, kind, socket.IPPROTO_SCTP if proto == "sctp" else 0)
    s.settimeout(timeout)
    if proto == "udp":
        s.connect(addr)
        got = {}
        for ask in ("hostname", "clientip"):
            s.send(ask.encode())
            got[ask] = s.recv(65536).decode(errors="replace").strip()
        out.update(result="connected", pod=got["hostname"], client=got["clientip"])
    else:
        s.connect(addr)
        out["result"] = "connected"
        if proto == "tcp":
            s.sendall(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            body = data.split(b"\r\n\r\n", 1)[-1]
            try:
                doc = json.loads(body)
                out.update(pod=doc.get("pod"), client=doc.get("client"))
            except ValueError:
                pass
except ConnectionRefusedError:
    out["result"] = "refused"
except (socket.timeout, TimeoutError):
    out["result"] = "timeout"
except OSError as err:
    out["result"] = "error"
    out["error"] = err.strerror or str(err)
out["ms"] = round((time.monotonic() - start) * 1000, 1)
print(json.dumps(out))
"""


def _target(name: str, target: str) -> tuple[str, int]:
    """'IP:PORT', '[IPv6]:PORT', 'svc/NS/NAME:PORT' (its first cluster IP) or 'NAME:PORT' (resolved in the
    source, as the pod would)."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidInput([Problem("testbed probe", "TARGET", f"{target!r} is not HOST:PORT")])
    host = host.strip("[]")
    if host.startswith("svc/"):
        ns, _, svc_name = host[4:].rpartition("/")
        _, plan = lab.current_plan(name)
        svc = next((s for s in plan.services if s.namespace == (ns or "default") and s.name == svc_name), None)
        if svc is None:
            raise NotFound(f"no Service {ns or 'default'}/{svc_name} in lab {name}")
        if not svc.cluster_ips:
            raise InvalidInput([Problem("testbed probe", "TARGET", f"Service {svc.key} has no cluster IP "
                                                                   "(headless or ExternalName): probe a name")])
        host = svc.cluster_ips[0]
    return host, int(port)


def probe(name: str, source: str, target: str, protocol: str = "tcp", timeout: float = 2.0) -> dict[str, Any]:
    host, port = _target(name, target)
    container, pod = podexec.resolve(name, source)
    command = podexec.wrap(pod, ["python3", "-c", SCRIPT, host, str(port), protocol.lower(), str(timeout)])
    result = podexec.running(container, pod).exec(command)
    if result.exit_code != 0:
        return {"from": source, "target": host, "port": port, "protocol": protocol, "result": "error",
                "error": result.stderr.strip()[-500:]}
    return {"from": source, **json.loads(result.stdout)}

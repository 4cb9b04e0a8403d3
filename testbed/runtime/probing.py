"""One connection, tried from inside a pod or a machine, with what it met: connected, refused or timed out (or an
error: the try could not be made); the pod that answered and the source address it saw (from netexec's
answer); and how long it took. The try runs in the source's own network namespace (python3 of the node image,
under `ip netns exec` for a pod), so Service NAT, routes and policy apply exactly as they would to the pod's own
traffic. `probe` and the modules' checks use it."""

from __future__ import annotations

import json
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_attempt

from testbed.plan.cluster import Plan, PodPlan
from testbed.runtime import podexec

SCRIPT = r"""
import json, socket, sys, time
host, port, proto, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
sport = int(sys.argv[5]) if len(sys.argv) > 5 else 0
out = {"target": host, "port": port, "protocol": proto}
start = time.monotonic()
try:
    family, kind, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM if proto == "udp"
                                                  else socket.SOCK_STREAM)[0]
    out["address"] = addr[0]
    s = socket.socket(family, kind, socket.IPPROTO_SCTP if proto == "sctp" else 0)
    s.settimeout(timeout)
    if sport:  # a traced flow: the port the tracing rules know it by (an earlier trace's TIME_WAIT does not hold it)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
    if proto == "udp":
        s.connect(addr)
        got = {}
        for ask in ("hostname", "clientip")[:1 if sport else 2]:
            s.send(ask.encode())
            got[ask] = s.recv(65536).decode(errors="replace").strip()
        out.update(result="connected", pod=got["hostname"], client=got.get("clientip"))
    else:
        s.connect(addr)
        out.update(result="connected", ms=round((time.monotonic() - start) * 1000, 1))
        if proto == "tcp":  # who answered, if it speaks netexec's HTTP; a server that does not (DNS) is still
            data = b""      # connected: the handshake is the answer
            try:
                s.sendall(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")
                s.settimeout(min(timeout, 1.0))
                while chunk := s.recv(65536):
                    data += chunk
            except OSError:
                pass
            try:
                doc = json.loads(data.split(b"\r\n\r\n", 1)[-1])
                out.update(pod=doc.get("pod"), client=doc.get("client"))
            except (ValueError, AttributeError):
                pass
except ConnectionRefusedError:
    out["result"] = "refused"
except (socket.timeout, TimeoutError):
    out["result"] = "timeout"
except OSError as err:
    out["result"] = "error"
    out["error"] = err.strerror or str(err)
out.setdefault("ms", round((time.monotonic() - start) * 1000, 1))
print(json.dumps(out))
"""


def connect(plan: Plan, source: str, host: str, port: int, protocol: str = "tcp", timeout: float = 2.0,
            sport: int = 0) -> dict[str, Any]:
    """From source (NS/POD or a machine) to host:port (from source port sport, when given)."""
    container, pod = podexec.resolve(plan, source)
    command = podexec.wrap(pod, ["python3", "-c", SCRIPT, host, str(port), protocol.lower(), str(timeout),
                                 str(sport)])
    result = podexec.running(container, pod).exec(command)
    if result.exit_code != 0:
        return {"from": source, "target": host, "port": port, "protocol": protocol, "result": "error",
                "error": result.stderr.strip()[-500:]}
    return {"from": source, **json.loads(result.stdout)}


MANY = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets, tries, timeout, base = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])

names = {}

def resolve(host):
    if host not in names:  # one lookup a name for all its probes (threads may race: then two, no harm)
        try:
            names[host] = socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0]
        except OSError:
            names[host] = None
    return names[host]

def once(host, port, proto, source):
    addr = resolve(host)
    if addr is None:
        return "no-name"
    addr = (addr, port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM,
                      socket.IPPROTO_SCTP if proto == "sctp" else 0)
    s.settimeout(timeout)
    try:
        if proto == "udp":
            try:
                s.bind(("0.0.0.0", source))
            except OSError:
                pass
        s.connect(addr)
        if proto == "udp":
            s.send(b"hostname")
            s.recv(4096)
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as err:
        return "error: " + (err.strerror or str(err))
    finally:
        s.close()

def probe(j):
    for i in range(tries):  # a blocked try has already waited its timeout: the next goes at once
        got = once(*targets[j], 32768 + (base + j * tries + i) % 28000)
        if got == "connected":
            break
    return got

with ThreadPoolExecutor(64) as pool:
    print(json.dumps(list(pool.map(probe, range(len(targets))))))
"""


def connect_many(plan: Plan, pod: PodPlan, targets: list[tuple[str, int, str]], tries: int = 1,
                 timeout: float = 1.0, udp_base: int = 0) -> list[str]:
    """From one pod to many (host, port, protocol) at once, in one exec: each result connected, refused,
    timeout, no-name or error. A try that is not connected is made again, up to tries times."""
    if not targets:
        return []
    # a blocked DNS server costs one short timeout, not glibc's 5 s times its attempts
    command = podexec.wrap(pod, ["env", "RES_OPTIONS=timeout:1 attempts:2", "python3", "-c", MANY,
                                 json.dumps([list(t) for t in targets]), str(tries), str(timeout), str(udp_base)])
    return _many(plan.node(pod.node).container, pod, command, len(targets))


@retry(retry=retry_if_exception_type(ValueError), stop=stop_after_attempt(2), reraise=True)
def _many(container: str, pod: PodPlan, command: list[str], count: int) -> list[str]:
    """The probes' answers; an exec whose output was lost on the way (empty, though it ran) is made again."""
    result = podexec.running(container, pod).exec(command)
    if result.exit_code != 0:
        return ["error"] * count
    answers = json.loads(result.stdout)
    if len(answers) != count:
        raise ValueError(f"{len(answers)} answers for {count} probes")
    return answers

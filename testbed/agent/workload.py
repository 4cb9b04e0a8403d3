"""The pod workload, shaped like agnhost netexec: HTTP on TCP ports, echo on UDP ports.

HTTP paths: /hostname (pod name), /clientip (caller's ip:port as the pod sees it), /echo?msg=X, /healthz; any
other path, and /, answer a JSON document: the pod, namespace, IPs, node, the port it answered on and the client
address, and the request echoed (path, query, method, host, protocol and headers). Connections are kept alive.
UDP: "hostname", "clientip", "echo X", anything else is echoed back. All pods of a node share one event loop,
so an idle pod costs its sockets and nothing more.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from dataclasses import dataclass

MAX_HEAD = 16384


@dataclass(frozen=True)
class Identity:
    name: str
    namespace: str
    node: str
    ips: tuple[str, ...]
    hostname: str = ""  # what /hostname answers: the pod name cut to 63 characters, as the kubelet sets it

    def document(self, client: str, port: int) -> dict[str, object]:
        return {"pod": self.name, "namespace": self.namespace, "node": self.node, "ips": list(self.ips),
                "port": port, "client": client}


def _client(peer: tuple) -> tuple[str, int]:
    host, port = peer[0], peer[1]
    if host.startswith("::ffff:"):  # a v4 client on a dual-stack socket
        host = host[7:]
    return host, port


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def answer(ident: Identity, path: str, client: tuple[str, int], port: int,
           request: dict[str, object] | None = None) -> tuple[int, str, str]:
    """Status, content type and body for one HTTP request path. request: the method, host, protocol and
    headers, echoed back (with the pod, its namespace and the port it answered on) for `/` and any path the
    workload does not define, as a conformance suite's backend echoes."""
    url = urllib.parse.urlsplit(path)
    if url.path == "/hostname":
        return 200, "text/plain", ident.hostname or ident.name
    if url.path == "/clientip":
        return 200, "text/plain", _fmt(*client)
    if url.path == "/healthz":
        return 200, "text/plain", "ok"
    if url.path == "/echo":
        return 200, "text/plain", urllib.parse.parse_qs(url.query).get("msg", [""])[0]
    doc = ident.document(_fmt(*client), port)
    doc |= {"path": url.path, "query": url.query, **(request or {})}
    return 200, "application/json", json.dumps(doc)


def udp_answer(ident: Identity, data: bytes, client: tuple[str, int]) -> bytes:
    text = data.decode(errors="replace").strip()
    if text == "hostname":
        return (ident.hostname or ident.name).encode()
    if text == "clientip":
        return _fmt(*client).encode()
    if text.startswith("echo "):
        return text[5:].encode()
    return data


class Http(asyncio.Protocol):
    """Just enough HTTP/1.1: requests in turn on one connection, kept alive unless the client says otherwise
    (HTTP/1.0 without keep-alive, `Connection: close`) or sends a body whose end it cannot tell (chunked)."""

    def __init__(self, ident: Identity, port: int, live: set[Http] | None = None) -> None:
        self.ident, self.port, self.buf = ident, port, b""
        self.live = live if live is not None else set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)

    def drop(self) -> None:
        """As a process that dies: its connection goes with it (the socket is released on the loop's next
        turn, and until then it holds the pod's netns alive)."""
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.transport.is_closing():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.transport.close()
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            headers: dict[str, list[str]] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
            length = int((headers.get("content-length") or ["0"])[0] or 0)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self._respond(head[0].split(), headers)

    def _respond(self, line: list[str], headers: dict[str, list[str]]) -> None:
        client = _client(self.transport.get_extra_info("peername"))
        version = line[2] if len(line) > 2 else "HTTP/1.0"
        if len(line) < 2:
            status, ctype, body = 400, "text/plain", "bad request"
        else:
            request = {"method": line[0], "host": (headers.get("host") or [""])[0], "proto": version,
                       "headers": {k.title(): v for k, v in headers.items()}}
            status, ctype, body = answer(self.ident, line[1], client, self.port, request)
        wants = ",".join(headers.get("connection", [])).lower()
        close = "close" in wants or (version == "HTTP/1.0" and "keep-alive" not in wants) or \
            "chunked" in ",".join(headers.get("transfer-encoding", [])).lower()
        raw = b"" if line[:1] == ["HEAD"] else body.encode()
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body.encode())}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n")
        self.transport.write(head.encode() + raw)
        if close:
            self.transport.close()


class Udp(asyncio.DatagramProtocol):
    def __init__(self, ident: Identity) -> None:
        self.ident = ident

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.transport.sendto(udp_answer(self.ident, data, _client(addr)), addr)


def open_socket(protocol: str, port: int, dual: bool) -> socket.socket:
    """A listening socket in the calling thread's netns; with dual, one v6 socket also takes v4."""
    family = socket.AF_INET6 if dual else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "UDP" else socket.SOCK_STREAM
    # SCTP one-to-one sockets serve like TCP; on kernels without SCTP this raises, and the pod reports it
    sock = socket.socket(family, kind, socket.IPPROTO_SCTP if protocol == "SCTP" else 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if dual:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::" if dual else "0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(128)
    sock.setblocking(False)
    return sock


class Datagram:
    """A UDP endpoint whose close() releases the socket at once: a datagram transport closes its socket only
    on a later turn of the event loop, and until then the socket keeps its pod's netns (and veth) alive."""

    def __init__(self, transport: asyncio.BaseTransport, sock: socket.socket) -> None:
        self.transport, self.sock = transport, sock

    def close(self) -> None:
        self.transport.close()
        self.sock.close()


class Stream:
    """A listening socket whose close() also drops the connections it accepted (asyncio's Server.close
    leaves them open before Python 3.13), as the pod's process dying would."""

    def __init__(self, server: asyncio.AbstractServer, live: set[Http]) -> None:
        self.server, self.live = server, live

    def close(self) -> None:
        self.server.close()
        for conn in list(self.live):
            conn.drop()


async def serve(loop: asyncio.AbstractEventLoop, sock: socket.socket, ident: Identity,
                port: int) -> Datagram | Stream:
    if sock.type == socket.SOCK_STREAM:
        live: set[Http] = set()
        server = await loop.create_server(lambda: Http(ident, port, live), sock=sock, start_serving=True)
        return Stream(server, live)
    transport, _ = await loop.create_datagram_endpoint(lambda: Udp(ident), sock=sock)
    return Datagram(transport, sock)

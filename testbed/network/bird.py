"""A client for BIRD's control socket, from the host: every machine's socket sits in its run folder, which the
host bind-mounts into it, so status and routes read sessions without a process in the container. A machine on
another host is asked through its agent (`birdc` in the machine), as its run folder is there."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from testbed.runtime.machines import elsewhere

CTL = "bird.ctl"


def _relayed(path: Path, command: str, timeout: float) -> list[str]:
    from testbed.runtime import agent

    try:
        got = agent.call(path.parent, "run", argv=["birdc", "-s", f"/run/testbed/{CTL}", *command.split()],
                         seconds=timeout, timeout=timeout + 5)
    except agent.AgentError as err:
        raise OSError(str(err)) from None
    if got["code"] is None or "ready." not in got["stdout"]:  # no answer in time, or no BIRD to answer
        raise OSError(f"birdc: {got['stderr'].strip() or got['stdout'].strip()}"[:300])
    return [line for line in got["stdout"].splitlines() if not line.startswith("BIRD ")]


def query(path: Path, command: str, timeout: float = 3.0) -> list[str]:
    """The reply's lines, without BIRD's reply codes."""
    if elsewhere(path.parent) is not None:
        return _relayed(path, command, timeout)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        buf = b""
        while b"\n" not in buf:  # the greeting, "0001 BIRD ... ready."
            chunk = s.recv(65536)
            if not chunk:
                return []
            buf += chunk
        s.sendall(command.encode() + b"\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            lines = buf.decode(errors="replace").split("\n")
            if any(len(ln) >= 5 and ln[:4].isdigit() and ln[4] == " " and ln[0] in "089" for ln in lines):
                break  # a final line: 0xxx ok, 8xxx/9xxx error
    out = []
    for line in buf.decode(errors="replace").splitlines():
        out.append(line[5:] if len(line) >= 5 and line[:4].isdigit() else line[1:] if line.startswith(" ")
                   else line)
    return out


def exported(path: Path, protocols: list[str], timeout: float = 3.0) -> list[str] | None:
    """The prefixes BIRD really exports to these sessions (`show route export`), or None when it does not
    answer."""
    out: list[str] = []
    try:
        for proto in protocols:
            out += [line.split()[0] for line in query(path, f"show route export {proto}", timeout)
                    if line and "/" in line.split()[0]]
    except OSError:
        return None
    return sorted(set(out))


def sessions(path: Path, timeout: float = 3.0) -> list[dict[str, Any]]:
    """BGP sessions as `show protocols` lists them: name, state (up/start/...), info (Established, Active...)."""
    return answered(path, timeout) or []


def answered(path: Path, timeout: float = 3.0) -> list[dict[str, Any]] | None:
    """The sessions, or None when this BIRD does not answer (stopped, hung, or not there)."""
    out = []
    try:
        lines = query(path, "show protocols", timeout)
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 5 and parts[1] == "BGP":
            out.append({"name": parts[0], "state": parts[3], "info": " ".join(parts[5:]) or parts[3]})
    return out

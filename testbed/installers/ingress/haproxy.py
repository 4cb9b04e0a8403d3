"""The edge plan as HAProxy 2.6 configuration (pure). One frontend per proxy port: forwarded headers, then the
routes in the API's order as `use_backend` lines; redirects, rewrites, header changes and fixed answers live in
the backends, whose rules run once a route has chosen them, so the routes' order holds for all of them.

Each backend has more server slots than it has endpoints: an endpoint change sets a slot's address, weight and
state through the runtime API, with no reload (as HAProxy Ingress does). `structure()` is the configuration
with the server lines blanked, so a change that leaves it alike needs no reload."""

from __future__ import annotations

import re
from typing import Any

from testbed.plan.routing import ERROR_PORT, EdgePlan, Frontend, Host, Match, Pool, Target

DIR = "/run/testbed/ingress"
CONFIG = f"{DIR}/haproxy.cfg"
STATS = f"{DIR}/admin.sock"
MASTER = f"{DIR}/master.sock"
HEALTH_PORT = 10254
MIN_SLOTS = 4
SERVER = re.compile(r"^(  server s\d+) .*$", re.M)


def q(text: str) -> str:
    """One HAProxy argument, quoted: single quotes take anything but a single quote, literally."""
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def cert_file(key: str) -> str:
    return f"{DIR}/certs/{key.replace('/', '_')}.pem"


def crt_list(frontend: Frontend) -> str:
    return f"{DIR}/{frontend.name}.crtlist"


def slots(n: int) -> int:
    size = MIN_SLOTS
    while size < n:
        size *= 2
    return size


def _host(hosts: list[Host]) -> list[str]:
    """One condition per host form (ORed by the caller); none when any host will do."""
    out = []
    exact = [h.name for h in hosts if h.kind == "exact"]
    if exact:
        out.append("{ var(txn.host) -m str " + " ".join(q(h) for h in exact) + " }")
    for h in hosts:
        if h.kind == "label":
            out.append("{ var(txn.host) -m reg " + q("^[^.]+" + re.escape("." + h.name) + "$") + " }")
        elif h.kind == "suffix":
            out.append("{ var(txn.host) -m end " + q("." + h.name) + " }")
    return out


def _path(m: Match) -> list[str]:
    if m.path_type == "Exact":
        return ["{ path -m str " + q(m.path) + " }"]
    if m.path == "/":
        return [""]
    if m.path_type == "Begins":
        return ["{ path -m beg " + q(m.path) + " }"]
    return ["{ path -m str " + q(m.path) + " }", "{ path -m beg " + q(m.path + "/") + " }"]


def condition(m: Match) -> str:
    """The match as an HAProxy condition: AND within a group, `||` between groups (hosts x path forms)."""
    rest = [f"{{ req.hdr({name}) -m str {q(value)} }}" for name, value in m.headers]
    rest += [f"{{ urlp({name}) -m str {q(value)} }}" for name, value in m.query]
    if m.method:
        rest.append(f"{{ method {m.method} }}")
    groups = []
    for host in _host(m.hosts) or [""]:
        for path in _path(m):
            groups.append(" ".join(x for x in (host, path, *rest) if x))
    if all(not g for g in groups):
        return ""
    return " || ".join(g or "TRUE" for g in groups)


def _binds(port: int, dual: bool, extra: str = "") -> list[str]:
    """IPv4, and IPv6 in a dual-stack lab (a single-stack pod has no IPv6 to bind)."""
    return [f"  bind :{port}{extra}"] + ([f"  bind :::{port} v6only{extra}"] if dual else [])


def _frontend(f: Frontend, dual: bool) -> list[str]:
    tls = f" ssl crt-list {crt_list(f)} alpn http/1.1" if f.tls else ""
    out = [f"frontend {f.name}", *_binds(f.port, dual, tls),
           "  http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
           f"  http-request set-header X-Forwarded-Proto {f.scheme}",
           "  http-request set-header X-Forwarded-Host %[req.hdr(host)]"]
    if f.https_redirect:
        out.append("  http-request redirect scheme https code 308 if " + " || ".join(_host(f.https_redirect)))
    for r in f.routes:
        cond = condition(r.match)
        out.append(f"  use_backend {r.pool}" + (f" if {cond}" if cond else ""))
    out.append("  default_backend not_found")
    return out


def _headers(direction: str, mods: dict[str, list[Any]]) -> list[str]:
    out = [f"  http-{direction} del-header {q(name)}" for name in mods.get("remove", [])]
    out += [f"  http-{direction} set-header {q(n)} {q(v)}" for n, v in mods.get("set", [])]
    out += [f"  http-{direction} add-header {q(n)} {q(v)}" for n, v in mods.get("add", [])]
    return out


def _rewrite_path(pool: Pool) -> list[str]:
    if pool.rewrite_path is None:
        return []
    how, value = pool.rewrite_path
    if how == "full":
        return [f"  http-request set-path {q(value)}"]
    prefix, value = re.escape(pool.match_prefix or "/"), value.rstrip("/")
    if pool.match_prefix in (None, "/"):
        return [f"  http-request replace-path {q('^(/.*)$')} {q(value + chr(92) + '1')}"] if value else []
    if not value:  # the prefix replaced by '/': /p → /, /p/x → /x
        return [f"  http-request replace-path {q('^' + prefix + '$')} '/'",
                f"  http-request replace-path {q('^' + prefix + '(/.*)$')} {q(chr(92) + '1')}"]
    return [f"  http-request replace-path {q('^' + prefix + '(/.*)?$')} {q(value + chr(92) + '1')}"]


def _redirect(r: dict[str, Any]) -> str:
    scheme = r["scheme"] or r["default_scheme"]
    port = r["port"] or ({"http": 80, "https": 443}[r["scheme"]] if r["scheme"] else r["listener_port"])
    show_port = "" if (scheme, port) in (("http", 80), ("https", 443)) else f":{port}"
    host = r["hostname"] or "%[var(txn.host)]"
    location = f"{scheme}://{host}{show_port}%[path]%[url,regsub(^[^?]*,)]"
    return f"  http-request redirect location {q(location)} code {r['code']}"


def server(i: int, t: Target | None) -> str:
    if t is None:
        return f"  server s{i} 127.0.0.1:1 disabled"
    address = f"[{t.ip}]" if ":" in t.ip else t.ip
    return f"  server s{i} {address}:{t.port} weight {t.weight}" + (" disabled" if t.weight == 0 else "")


def _backend(pool: Pool, keep: set[str] | None) -> list[str]:
    out = [f"backend {pool.name}", "  balance roundrobin"]
    if pool.status is not None:
        reason = "no valid backend" if pool.status == 500 else "the backend Service does not exist"
        return [*out, f"  http-request return status {pool.status} content-type text/plain string {q(reason)}"]
    out += _headers("request", pool.request_headers)
    out += _rewrite_path(pool)
    if pool.redirect is not None:
        return [*out, _redirect(pool.redirect)]
    if pool.rewrite_host:
        out.append(f"  http-request set-header Host {q(pool.rewrite_host)}")
    out += _headers("response", pool.response_headers)
    size = slots(len(pool.targets))
    targets = [t for t in pool.targets if keep is None or t.pod is None or t.pod in keep]
    out += [server(i + 1, targets[i] if i < len(targets) else None) for i in range(size)]
    return out


def render(edge: EdgePlan, dual: bool, keep: set[str] | None = None) -> str:
    """keep: only servers of these pods (and the proxy's own), in the same slots: what a sync sets before it
    deletes pods, so no request goes to one that is going."""
    lines = ["global", "  master-worker", "  log stderr format raw local0 notice",
             f"  stats socket {STATS} mode 600 level admin expose-fd listeners", "  maxconn 4096",
             "  hard-stop-after 30s", "",
             # a reload answers an idle kept-alive client's next request with `Connection: close` rather than
             # closing under it; a request that cannot reach a server is tried again on another
             "defaults", "  mode http", "  log global", "  option dontlognull", "  option forwardfor",
             "  option idle-close-on-response", "  timeout connect 2s", "  timeout client 60s",
             "  timeout server 60s", "  timeout http-request 10s", "  timeout http-keep-alive 30s", "  retries 3",
             "  option redispatch 1", "  retry-on conn-failure empty-response response-timeout", "",
             "frontend health", *_binds(HEALTH_PORT, dual), "  monitor-uri /healthz", "",
             "frontend errors", f"  bind 127.0.0.1:{ERROR_PORT}",
             "  http-request return status 500 content-type text/plain string 'no valid backend'", "",
             "backend not_found", "  http-request return status 404 content-type text/plain string 'not found'", ""]
    for f in edge.frontends:
        lines += [*_frontend(f, dual), ""]
    for pool in sorted(edge.pools.values(), key=lambda p: p.name):
        lines += [*_backend(pool, keep), ""]
    return "\n".join(lines)


def files(edge: EdgePlan, dual: bool) -> dict[str, str]:
    """Every file the proxy reads: its configuration, each certificate (chain and key), each crt-list."""
    out = {CONFIG: render(edge, dual)}
    for key, (cert, private) in edge.certificates.items():
        out[cert_file(key)] = cert.decode() + ("" if cert.endswith(b"\n") else "\n") + private.decode()
    for f in edge.frontends:
        if f.tls:
            out[crt_list(f)] = "".join(f"{cert_file(k)}\n" for k in f.certificates)
    return out


def structure(config: str) -> str:
    return SERVER.sub(r"\1", config)


def servers(config: str) -> dict[str, list[str]]:
    """backend → its server lines (the runtime API's part of the configuration)."""
    out: dict[str, list[str]] = {}
    backend = None
    for line in config.splitlines():
        if line.startswith("backend "):
            backend = line.split()[1]
        elif line.startswith("  server s") and backend:
            out.setdefault(backend, []).append(line)
    return out


def runtime_commands(old: str, new: str) -> list[str]:
    """The runtime API commands that take a running proxy from old's servers to new's (same structure)."""
    before, after = servers(old), servers(new)
    out = []
    for backend, lines in after.items():
        if before.get(backend) == lines:
            continue
        for line in lines:
            parts = line.split()
            name, address = parts[1], parts[2]
            ip, _, port = address.rpartition(":")
            target = f"{backend}/{name}"
            if "disabled" in parts and address == "127.0.0.1:1":
                out.append(f"set server {target} state maint")
                continue
            weight = parts[parts.index("weight") + 1] if "weight" in parts else "1"
            out += [f"set server {target} addr {ip.strip('[]')} port {port}", f"set server {target} weight {weight}",
                    f"set server {target} state {'maint' if 'disabled' in parts else 'ready'}"]
    return out

"""Cluster DNS's later syncs, pure: the RFC 2136 updates a sync sends, applied to the records a server held,
give the records of the new plan; a zone changed mostly, or new, is replaced whole; every server has a folder
of its own."""

from ipaddress import IPv4Network

from test_services_plan import TOPO, WEB, _plan, _svc

from testbed import lab
from testbed.installers import dns as installer
from testbed.model import loader
from testbed.plan import dns


def _apply(held: dict[str, list[str]], script: str) -> dict[str, set[str]]:
    """Each update as BIND takes it: names absolute, a delete of a record held, an add with the zone's TTL."""
    out = {z: set(rows) for z, rows in held.items()}
    zone = None
    lines = script.splitlines()
    assert lines[0] == "server 127.0.0.1" and lines[1].startswith("key hmac-sha256:testbed ")
    for line in lines[2:]:
        if line.startswith("zone "):
            zone = line.split()[1].rstrip(".")
        elif line == "send":
            zone = None
        else:
            verb, name, rest = line.removeprefix("update ").split(" ", 2)
            assert zone and name.endswith(f".{zone}."), line
            short = name.removesuffix(f".{zone}.")
            if verb == "delete":
                assert f"{short} {rest}" in out[zone], line
                out[zone].discard(f"{short} {rest}")
            else:
                ttl, record = rest.split(" ", 1)
                assert int(ttl) == dns.TTL
                out[zone].add(f"{short} {record}")
    return out


def test_updates_take_a_server_from_the_old_records_to_the_new():
    before = _plan(WEB, _svc("a"), _svc("b", type="LoadBalancer"))
    after = _plan({**WEB, "spec": {**WEB["spec"], "replicas": 4}}, _svc("a"),
                  {**_svc("c"), "spec": {**_svc("c")["spec"], "clusterIP": "None"}}, previous=before.allocations())
    old, new = installer.zones(before), installer.zones(after)
    script, whole = installer.updates(old, new)
    assert whole == [] and "update delete b.default.svc.cluster.local. A " in script
    assert _apply(old, script) == {z: set(rows) for z, rows in new.items()}
    assert installer.updates(new, new) == ("", [])


def test_a_zone_changed_mostly_or_new_is_replaced_whole():
    small = _plan({**WEB, "spec": {**WEB["spec"], "replicas": 1}}, _svc("a"))
    big = _plan({**WEB, "spec": {**WEB["spec"], "replicas": 30}}, _svc("a"), previous=small.allocations())
    old, new = installer.zones(small), installer.zones(big)
    _, whole = installer.updates(old, new)
    assert "cluster.local" not in whole  # 29 pods' records: a few dozen updates, under the threshold
    _, whole = installer.updates({z: r for z, r in old.items() if z != "cluster.local"}, new)
    assert whole == ["cluster.local"]


def test_large_changes_go_in_messages_of_bounded_size():
    base = {"cluster.local": [f"p{i}.default.pod A 10.0.{i // 250}.{i % 250}" for i in range(3000)]}
    grown = {"cluster.local": base["cluster.local"] + [f"q{i}.default.pod A 10.1.{i // 250}.{i % 250}"
                                                       for i in range(1200)]}
    script, whole = installer.updates(base, grown)
    assert whole == [] and script.count("send") == 3 and script.count("zone cluster.local.") == 3
    assert _apply(base, script) == {z: set(r) for z, r in grown.items()}


def test_each_server_has_its_own_folder_and_dynamic_zones():
    docs = [loader.Doc(d, "x.yaml") for d in (WEB, _svc("a"))]
    plan = lab.build_plan(TOPO, loader.load_manifests(docs), IPv4Network("100.64.1.0/24"))
    servers = installer._servers(plan)
    assert len(servers) == 2
    out = installer.files(plan)
    for pod in servers:
        conf = out[f"{installer.folder(pod)}/named.conf"]
        assert f'directory "{installer.folder(pod)}"' in conf
        assert 'file "cluster.local.dyn"; allow-update { key "testbed"; }' in conf
        assert f"{installer.folder(pod)}/cluster.local.zone" in out
    assert len({installer.folder(p) for p in servers}) == len(servers)

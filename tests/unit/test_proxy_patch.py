"""kube-proxy's later syncs, pure: the changes `patch` sends, applied to a model of the tables rendered before,
give the tables rendered after, in both modes, for each kind of change; and the shape of a small change."""

import re

import pytest
from test_services_plan import WEB, _plan, _svc

from testbed.agent import iptdiff, nftdiff
from testbed.installers.kube_proxy import ipt, nft
from testbed.installers.kube_proxy.view import changes, node_view


def _nft_model(text: str) -> tuple[dict, dict]:
    parsed = nftdiff.parse(text)
    assert parsed is not None
    objects, chains = {}, {}
    for (kind, name), line in parsed[1].items():
        body = nftdiff.body(line)
        if kind == "chain":
            chains[name] = [r.rstrip(";").strip() for r in nftdiff._rules(body)]
        else:
            decl, elements = nftdiff._elements(body)
            objects[name] = (decl, set(elements))
    return objects, chains


def _key(element: str) -> str:
    return element.split(" : ", 1)[0]


def _apply_nft(text: str, script: str) -> tuple[dict, dict]:
    """Each command as the kernel takes it: an element deleted must be there, one added must not."""
    objects, chains = _nft_model(text)
    for line in script.splitlines():
        verb, what, _family, _table, name, *tail = [*line.split(" ", 5), ""]
        rest = tail[0].strip()
        inner = rest[2:-2] if rest.startswith("{ ") else rest
        if (verb, what) == ("add", "set"):
            objects[name] = (inner, set())
        elif (verb, what) == ("add", "chain"):
            chains.setdefault(name, [])
        elif (verb, what) == ("flush", "chain"):
            chains[name] = []
        elif (verb, what) == ("add", "rule"):
            chains[name].append(rest)
        elif (verb, what) in (("delete", "chain"), ("delete", "set")):
            del (chains if what == "chain" else objects)[name]
        elif what == "element":
            elements = objects[name][1]
            for item in nftdiff._split_top(inner, ", "):
                held = {_key(e): e for e in elements}
                if verb == "delete":
                    assert _key(item) in held, line
                    elements.discard(held[_key(item)])
                else:
                    assert _key(item) not in held, line
                    elements.add(item)
        else:
            raise AssertionError(line)
    return objects, chains


def _apply_ipt(text: str, script: str) -> iptdiff.Tables:
    tables = iptdiff.parse(text)
    assert tables is not None
    current: dict[str, list[str]] = {}
    for line in script.splitlines():
        if line.startswith("*"):
            current = tables[line[1:]]
        elif line.startswith(":"):
            current[line[1:].split()[0]] = []
        elif line.startswith("-A "):
            current[line.split()[1]].append(line)
        elif line.startswith("-X "):  # only an empty chain nothing jumps to
            chain = line.split()[1]
            assert current[chain] == [], line
            assert not any(r.endswith(f"-j {chain}") for rules in current.values() for r in rules), line
            del current[chain]
    return tables


ONE = {**WEB, "metadata": {"name": "one"}, "spec": {**WEB["spec"], "replicas": 1,
                                                  "selector": {"matchLabels": {"app": "one"}},
                                                  "template": {**WEB["spec"]["template"],
                                                               "metadata": {"labels": {"app": "one"}}}}}
STEPS = [  # each plan after the first, from the one before it
    [WEB, _svc("a")],
    [WEB, _svc("a"), _svc("b")],  # a Service added
    [WEB, _svc("a"), _svc("b", sessionAffinity="ClientIP")],  # affinity: chains of its own
    [WEB, _svc("a", type="NodePort"), _svc("b", sessionAffinity="ClientIP")],  # a node port
    [WEB, _svc("a", type="NodePort", ports=[{"name": "http", "port": 80, "targetPort": 9090}]), _svc("b")],
    [WEB, _svc("a", externalTrafficPolicy="Local", type="LoadBalancer")],  # Local; a Service gone
    [WEB, _svc("a", externalTrafficPolicy="Local", type="LoadBalancer"),
     {**_svc("none"), "spec": {"selector": {"app": "x"}, "ports": [{"port": 81}]}}],  # no endpoints: rejected
    [WEB],
    [{**WEB, "spec": {**WEB["spec"], "replicas": 6}}, _svc("a"),
     {**_svc("one"), "spec": {**_svc("one")["spec"], "selector": {"app": "one"}}}, ONE],
    # web down to one endpoint: its count of six is no Service's now, and its shared chain goes
    [{**WEB, "spec": {**WEB["spec"], "replicas": 1}}, _svc("a"),
     {**_svc("one"), "spec": {**_svc("one")["spec"], "selector": {"app": "one"}}}, ONE],
]


def test_each_patch_turns_the_tables_before_into_the_tables_after():
    before, patched, dropped = _plan(*STEPS[0]), 0, 0
    for docs in STEPS[1:]:
        after = _plan(*docs, previous=before.allocations())
        for node in after.nodes:
            old, new = node_view(before, before.node(node.name)), node_view(after, node)
            script = nft.patch(old, new)
            if script is None:  # only when a shared chain is missing: then the whole table is sent
                assert nft._picks(new) - nft._picks(old)
            else:
                objects, chains = _apply_nft(nft.render(old), script)
                want_objects, want_chains = _nft_model(nft.render(new))
                assert objects == want_objects
                assert chains == want_chains
                patched += 1
                dropped += "delete chain inet testbed-proxy pick-" in script
            for family in (4, 6):
                partial = ipt.patch(old, new, family)
                assert partial is not None
                assert _apply_ipt(ipt.render(old, family), partial) == iptdiff.parse(ipt.render(new, family))
        before = after
    assert patched >= 8 and dropped


def test_changed_endpoints_are_map_elements_and_one_chain():
    old = node_view(p := _plan(WEB, _svc("a"), _svc("b")), p.nodes[0])
    moved = [_svc("b", ports=[{"name": "http", "port": 80, "targetPort": 9090}])]
    new = node_view(q := _plan(WEB, _svc("a"), *moved, previous=p.allocations()), q.nodes[0])
    assert [(b.service, a.service) for b, a in changes(old, new) if a and b] == [("default/b", "default/b")]
    script = nft.patch(old, new)
    assert script is not None
    assert re.findall(r"^(\w+ element) inet testbed-proxy (\S+)", script, re.M) == [
        ("delete element", "cl4-endpoints"), ("add element", "cl4-endpoints")]
    assert len(script.splitlines()) == 2 and script.count(". 9090") == 3
    partial = ipt.patch(old, new, 4)
    assert partial is not None and partial.count(":KUBE-") == 1 and "KUBE-SERVICES" not in partial
    assert nft.patch(old, old) == "" and ipt.patch(old, old, 4) == ""


@pytest.mark.parametrize("replicas", [1, 2, 4, 5, 8])
def test_a_new_number_of_endpoints_reloads_the_table_past_the_standing_chains(replicas):
    """nft 1.0.6 cannot add a rule naming a typeof map to a loaded table: a new shared chain means a reload,
    unless the count is one of the few every table holds."""
    scaled = {**WEB, "spec": {**WEB["spec"], "replicas": replicas}}
    old = node_view(p := _plan(WEB, _svc("a")), p.nodes[0])
    new = node_view(q := _plan(scaled, _svc("a"), previous=p.allocations()), q.nodes[0])
    assert (nft.patch(old, new) is None) == (replicas > nft.STANDING)


def test_an_agent_takes_a_patch_only_from_the_state_it_holds(monkeypatch):
    """The agent's side of a partial sync (its commands recorded, not run): a patch needs the token of the last
    sync; a new agent, a failed command or a whole text without a token makes the next patch stale."""
    import asyncio

    from testbed.agent import rules

    sent: list[str] = []

    async def run(script: str) -> str:
        if "fail" in script:
            raise RuntimeError("nft -f: no")
        sent.append(script)
        return ""

    agent = rules.Rules()
    monkeypatch.setattr(agent, "_nft_run", run)
    table = {"family": "inet", "table": "t"}

    async def scenario() -> list[bool]:
        out = [(await agent.patch(**table, script="a", base="A", token="B"))["stale"]]  # a new agent
        await agent.apply(**table, text="table inet t {\n}\n", token="A")
        out.append((await agent.patch(**table, script="b", base="A", token="B"))["stale"])
        out.append((await agent.patch(**table, script="c", base="A", token="C"))["stale"])  # it holds B now
        out.append((await agent.patch(**table, script="fail", base="B", token="C"))["stale"])
        out.append((await agent.patch(**table, script="d", base="B", token="C"))["stale"])  # after the failure
        await agent.apply(**table, text="table inet t {\n  set s { type ipv4_addr; }\n}\n")
        out.append((await agent.patch(**table, script="e", base="B", token="C"))["stale"])  # no token given
        return out

    assert asyncio.run(scenario()) == [True, False, True, True, True, True]
    assert sent[1] == "b" and len(sent) == 3  # the two whole tables and the one patch taken


def test_traffic_distribution_picks_as_kube_proxy_reads_the_hints():
    from testbed.installers.kube_proxy.view import near

    eps = [("10.0.1.2", 80, "n1"), ("10.0.2.2", 80, "n2"), ("10.0.3.2", 80, "n3")]
    zones = {"n1": "a", "n2": "a", "n3": "b"}
    assert near(None, eps, "n1", zones) == []  # every endpoint
    assert near("PreferSameNode", eps, "n1", zones) == [("10.0.1.2", 80)]
    assert near("PreferSameNode", eps[1:], "n1", zones) == [("10.0.2.2", 80)]  # none here: the zone's
    assert near("PreferSameNode", eps[:2], "n3", zones) == []  # none in the zone either: every endpoint
    assert near("PreferSameZone", eps, "n2", zones) == [("10.0.1.2", 80), ("10.0.2.2", 80)]
    assert near("PreferSameZone", eps, "n3", zones) == [("10.0.3.2", 80)]
    assert near("PreferSameZone", eps, "n1", {"n1": "a", "n2": "a"}) == []  # an endpoint without a zone hint
    assert near("PreferSameZone", eps, "n4", zones) == []  # a node without a zone label


def test_a_service_port_follows_its_traffic_distribution_and_internal_policy_wins():
    near_svc = _svc("n", trafficDistribution="PreferSameNode")
    plan = _plan(WEB, near_svc, _svc("l", trafficDistribution="PreferSameNode", internalTrafficPolicy="Local"))
    for node in plan.nodes:
        view = node_view(plan, node)
        mine = sorted((p.ipv4, 8080) for p in plan.pods if p.node == node.name)
        n4 = next(e for e in view.entries if e.service == "default/n" and e.family == 4)
        assert n4.cluster_targets() == (mine or n4.endpoints)
        l4 = next(e for e in view.entries if e.service == "default/l" and e.family == 4)
        assert l4.cluster_targets() == mine


def test_only_a_services_own_endpoints_hairpin_so_other_pods_change_no_rules():
    other = {**WEB, "metadata": {"name": "batch"},
             "spec": {**WEB["spec"], "replicas": 4, "selector": {"matchLabels": {"app": "batch"}},
                      "template": {**WEB["spec"]["template"], "metadata": {"labels": {"app": "batch"}}}}}
    dual = _svc("a", ipFamilyPolicy="PreferDualStack")
    before, after = _plan(WEB, dual), _plan(WEB, dual, other)
    for node in after.nodes:
        old, new = node_view(before, before.node(node.name)), node_view(after, node)
        web = {ip for p in after.pods if p.node == node.name and p.labels.get("app") == "web"
               for ip in (p.ipv4, p.ipv6)}
        assert set(new.hairpin(4)) | set(new.hairpin(6)) == web
        assert new.fingerprint == old.fingerprint  # four pods no Service selects: nothing for kube-proxy to send
        assert nft.patch(old, new) == ""

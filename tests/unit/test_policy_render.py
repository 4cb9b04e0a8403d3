"""The NetworkPolicy table, rendered from a plan: rules over sets (three chains whatever the number of
policies), named ports resolved per pod, exceptions cut out of blocks, and a later sync as an element and chain
diff rather than a reload. No Docker."""

from netpol_cases import BY_NAME
from test_policy_model import plan_with

from testbed.agent import nftdiff
from testbed.installers.policy import nft
from testbed.installers.policy.view import node_view, rule_id


def render(plan, node="node1"):
    return nft.render(node_view(plan, node, plan.policies))


def test_named_ports_are_resolved_on_each_target_pod():
    plan = plan_with(BY_NAME["named-port-tcp"].policies)
    a = next(p for p in plan.pods if p.key == "x/a")
    text = render(plan, a.node)
    assert f"elements = {{ {a.ipv4} . tcp . 81 }}" in text
    assert "ip daddr @isolated-ingress-4 drop" in text
    other = "node2" if a.node == "node1" else "node1"
    assert "elements" not in render(plan, other).split("set isolated-ingress-4")[1].split("\n")[0]


def test_an_except_is_cut_out_of_its_block():
    case = BY_NAME["ingress-ip-block-with-except"]
    plan = plan_with(case.policies)
    yb = next(p for p in plan.pods if p.key == "y/b").ipv4
    a = next(p for p in plan.pods if p.key == "x/a")
    peers = next(line for line in render(plan, a.node).splitlines() if line.startswith("  set s-") and
                 "10.244.0.0/" in line)
    assert yb not in peers and "10.244.0.0/16" not in peers


def test_chains_do_not_grow_with_policies():
    plan = plan_with(lambda ips: [{**p, "metadata": {**p["metadata"], "name": f"p{i}"}}
                                  for i, p in enumerate(q for c in BY_NAME.values() for q in c.policies(ips))])
    assert len(plan.policies) > 20
    text = render(plan)
    assert text.count("  chain ") == 3


def test_a_changed_policy_syncs_as_a_diff():
    before = render(plan_with(BY_NAME["allow-from-namespace-y"].policies))
    after = render(plan_with(BY_NAME["union-of-two-policies"].policies))
    script = nftdiff.script(before, after)
    assert script is not None and "delete table" not in script
    assert "add set inet testbed-policy" in script and "flush chain inet testbed-policy ingress" in script


def test_rules_alike_in_their_peers_share_one_set_and_keep_their_id():
    plan = plan_with(lambda ips: [{**p, "metadata": {**p["metadata"], "name": f"p{i}"}}
                                  for i, p in enumerate(BY_NAME["allow-from-namespace-y"].policies(ips) * 3)])
    text = render(plan, next(p for p in plan.pods if p.key == "x/a").node)
    sets = [line for line in text.splitlines() if line.startswith("  set s-")]
    assert len(sets) == len(set(sets)) == 2  # the targets and the peers, once for the three policies
    ingress = next(line for line in text.splitlines() if "chain ingress" in line)
    assert all(f'comment "{rule_id(pol, "ingress", 0)}"' in ingress for pol in plan.policies)

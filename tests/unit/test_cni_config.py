"""A user's CNI configuration, checked before anything is made (pure): each problem names the file and the field;
and the runtime's pure parts: placeholders filled per node, addresses read from results of every version, a
whole iptables restore that keeps what CNI plugins hold."""

import json
import os
import stat

import pytest
import yaml

from testbed.agent.cni import addresses, container_id, fill
from testbed.agent.kernel import _ipt_lines, keep_foreign
from testbed.errors import InvalidInput
from testbed.model import loader
from testbed.model.cni import check

GOOD = {"cniVersion": "1.0.0", "name": "mine", "plugins": [{"type": "mine", "subnet": "{{podCIDR}}"},
                                                           {"type": "portmap"}]}


@pytest.fixture
def plugin(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    binary = folder / "mine"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return folder


def problems(tmp_path, plugin, text: str) -> list[str]:
    conf = tmp_path / "net.conflist"
    conf.write_text(text)
    return [f"{p.field}: {p.reason}" for p in check(conf, plugin)]


def test_a_good_conflist_passes(tmp_path, plugin):
    assert problems(tmp_path, plugin, json.dumps(GOOD)) == []


@pytest.mark.parametrize(("text", "field", "reason"), [
    ("{not json", "", "is not JSON"),
    (json.dumps({**GOOD, "plugins": []}), "plugins", "non-empty list of plugins"),
    (json.dumps({**GOOD, "plugins": [{"subnet": "x"}]}), "plugins[0].type", "needs a type"),
    (json.dumps({**GOOD, "cniVersion": "2.0.0"}), "cniVersion", "is not a CNI version"),
    (json.dumps({**GOOD, "plugins": [{"type": "absent"}]}), "plugins[0].type", "no binary 'absent'"),
    (json.dumps({**GOOD, "plugins": [{"type": "mine", "x": "{{nodeIP}}"}]}), "", "placeholder {{nodeIP}}"),
])
def test_each_problem_names_its_field(tmp_path, plugin, text, field, reason):
    found = problems(tmp_path, plugin, text)
    assert any(f.startswith(f"{field}: ") and reason in f for f in found), found


def test_a_plugin_that_is_not_executable(tmp_path, plugin):
    (plugin / "mine").chmod(0o644)
    found = problems(tmp_path, plugin, json.dumps(GOOD))
    assert any("is not executable" in f for f in found), found


def test_the_topology_names_the_file_and_creates_nothing(tmp_path, plugin):
    (tmp_path / "net.conflist").write_text(json.dumps({**GOOD, "cniVersion": "9"}))
    topo = {"apiVersion": "testbed/v1alpha1", "kind": "Topology", "name": "c", "nodes": 1,
            "cni": {"conflist": "net.conflist", "binDir": "bin"}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(topo))
    with pytest.raises(InvalidInput) as info:
        loader.load_topology(tmp_path / "t.yaml")
    assert str(tmp_path / "net.conflist") in str(info.value) and "cniVersion" in str(info.value)
    (tmp_path / "net.conflist").write_text(json.dumps(GOOD))
    loaded = loader.load_topology(tmp_path / "t.yaml")
    assert os.path.isabs(loaded.topology.cni.conflist)


def test_placeholders_are_filled_per_node():
    assert fill('{"s": "{{podCIDR}}", "n": "{{ nodeName }}"}', {"podCIDR": "10.244.1.0/24", "nodeName": "n2"}) \
        == '{"s": "10.244.1.0/24", "n": "n2"}'


def test_addresses_of_each_result_version():
    assert addresses({"ips": [{"address": "10.0.0.2/24"}, {"address": "fd00::2/64"}]}) == ("10.0.0.2", "fd00::2")
    assert addresses({"ip4": {"ip": "10.0.0.3/24"}}) == ("10.0.0.3", None)
    assert addresses({}) == (None, None)
    assert container_id("a_b") == container_id("a_b") != container_id("a_c")


SAVE = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A CNI-HOSTPORT-DNAT -p tcp --dport 8088 -j DNAT --to-destination 10.244.0.5:8080
COMMIT
"""


def test_a_whole_restore_keeps_the_cni_plugins_chains():
    mine = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
    merged = keep_foreign(SAVE, mine)
    assert ":CNI-HOSTPORT-DNAT - [0:0]" in merged and "-j CNI-HOSTPORT-DNAT" in merged and "KUBE-" not in merged
    assert merged.index("-A CNI-HOSTPORT-DNAT") < merged.index("COMMIT")
    # and comparing the kernel with testbed's meant rules looks at testbed's own only
    assert all("CNI-" not in line for line in _ipt_lines(SAVE, ["nat"]))

"""The agent's comparison of a kernel's rules with the meant ones (pure): lines compare by key, in order; what
is missing, extra or only reordered is told apart; an absent table is all missing."""

from testbed.agent.kernel import _rule_texts, compare, tables_of


def test_the_same_lines_match():
    lines = ["rule a\tA", "rule b\tB"]
    assert compare(lines, lines)["match"]


def test_missing_and_extra_lines_are_shown_as_printed():
    got = compare(["rule a\tA", "rule c\tC"], ["rule a\tA", "rule b\tB"])
    assert not got["match"] and got["present"] and not got["reordered"]
    assert (got["missing"], got["extra"], got["missingCount"], got["extraCount"]) == (["B"], ["C"], 1, 1)


def test_the_same_lines_in_another_order_are_reordered():
    got = compare(["rule b\tB", "rule a\tA"], ["rule a\tA", "rule b\tB"])
    assert (got["match"], got["reordered"], got["missing"], got["extra"]) == (False, True, [], [])


def test_a_duplicate_counts():
    got = compare(["rule a\tA", "rule a\tA"], ["rule a\tA"])
    assert got["extra"] == ["A"] and not got["match"]


def test_an_absent_table_is_all_missing_unless_nothing_is_meant():
    assert compare(None, [])["match"]
    got = compare(None, [f"rule {i}" for i in range(20)])
    assert (got["present"], got["missingCount"], len(got["missing"])) == (False, 20, 12)


def test_rule_texts_follow_nfts_listing():
    listing = """table inet t {
\tchain a {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state new jump b
\t}
\tchain b {
\t}
}"""
    assert _rule_texts(listing) == {"a": ["ct state new jump b"], "b": []}


def test_tables_of_an_iptables_restore_text():
    assert tables_of("*nat\n:KUBE-SVC - [0:0]\nCOMMIT\n*filter\nCOMMIT\n") == ["nat", "filter"]

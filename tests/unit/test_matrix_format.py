"""The matrix's printed tables and the --expect format read back (pure): what `probe --matrix` prints is a
valid expectation, a differing cell is named, and a malformed row is refused with its line."""

import pytest

from testbed.errors import InvalidInput
from testbed.observe.matrix import Cell, differences, parse_expect, tables


def cells(blocked: set[tuple[str, str]]) -> list[Cell]:
    pods = ["x/a", "x/b"]
    return [Cell(s, d, port, proto, "10.0.0.1:80", (s, d) not in blocked, (s, d) not in blocked, "")
            for proto in ("tcp", "udp") for port in (80, 81) for s in pods for d in pods]


def test_printed_tables_read_back_as_the_same_expectation():
    got = cells({("x/b", "x/a")})
    text = tables(got)
    assert text.startswith("tcp/80\n-\tx/a\tx/b\nx/a\t.\t.\nx/b\tX\t.\n")
    assert differences(got, parse_expect(text, "e.txt")) == []


def test_one_table_without_a_header_applies_to_every_port_and_a_difference_is_named():
    expect = parse_expect("-  x/a x/b\nx/a .   .\nx/b .   .\n", "e.txt")
    diffs = differences(cells({("x/b", "x/a")}), expect)
    assert len(diffs) == 4 and diffs[0] == "tcp/80 x/b → x/a: expected allowed, observed blocked ()"


def test_a_disagreeing_cell_is_starred_and_still_reads():
    got = cells(set())
    got[1].expected = False
    text = tables(got)
    assert ".*" in text
    assert differences(got, parse_expect(text, "e.txt")) == []


def test_a_malformed_row_names_its_line():
    with pytest.raises(InvalidInput) as info:
        parse_expect("tcp/80\n- x/a x/b\nx/a . maybe\n", "e.txt")
    assert "e.txt" in str(info.value) and ":3:" in str(info.value)

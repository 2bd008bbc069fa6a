"""bgpctl's output formats as pure functions: tablewriter's layout, calicoctl's rows.

The golden tables are calicoctl output as published (Calico docs and operators'
notes): the same inputs must give the same text, byte for byte."""

from __future__ import annotations

import os
import subprocess

import pytest

from bgpd.ctl import ipam, ipam_check, table

CALICO_BLOCKS = """\
+----------+-----------------+-----------+------------+-----------+
| GROUPING |      CIDR       | IPS TOTAL | IPS IN USE | IPS FREE  |
+----------+-----------------+-----------+------------+-----------+
| IP Pool  | 10.244.0.0/24   |       256 | 11 (4%)    | 245 (96%) |
| Block    | 10.244.0.128/26 |        64 | 8 (12%)    | 56 (88%)  |
| Block    | 10.244.0.192/26 |        64 | 1 (2%)     | 63 (98%)  |
| Block    | 10.244.0.64/26  |        64 | 2 (3%)     | 62 (97%)  |
+----------+-----------------+-----------+------------+-----------+
"""

CALICO_POOLS = """\
+----------+---------------+-----------+------------+--------------+
| GROUPING |     CIDR      | IPS TOTAL | IPS IN USE |   IPS FREE   |
+----------+---------------+-----------+------------+--------------+
| IP Pool  | 10.255.0.0/16 |     65536 | 36 (0%)    | 65500 (100%) |
| IP Pool  | 10.64.0.0/20  |      4096 | 9 (0%)     | 4087 (100%)  |
| IP Pool  | 10.64.16.0/20 |      4096 | 9 (0%)     | 4087 (100%)  |
+----------+---------------+-----------+------------+--------------+
"""

CALICO_CONFIG = """\
+--------------------+-------+
|      PROPERTY      | VALUE |
+--------------------+-------+
| StrictAffinity     | false |
| AutoAllocateBlocks | true  |
| MaxBlocksPerHost   |     0 |
+--------------------+-------+
"""


def test_usage_with_blocks_matches_calicoctl() -> None:
    blocks = [("10.244.0.128/26", 64, 8), ("10.244.0.192/26", 64, 1), ("10.244.0.64/26", 64, 2)]
    assert ipam.format_usage([("10.244.0.0/24", 256, blocks)], [], True) == CALICO_BLOCKS


def test_usage_pools_only_matches_calicoctl() -> None:
    pools = [
        ("10.255.0.0/16", 65536, [("10.255.0.0/26", 64, 36)]),
        ("10.64.0.0/20", 4096, [("10.64.0.0/26", 64, 9)]),
        ("10.64.16.0/20", 4096, [("10.64.16.0/26", 64, 9)]),
    ]
    assert ipam.format_usage(pools, [], False) == CALICO_POOLS


def test_configuration_matches_calicoctl() -> None:
    config = {"strictAffinity": False, "autoAllocateBlocks": True, "maxBlocksPerHost": 0}
    assert ipam.format_configuration(config) == CALICO_CONFIG


def test_usage_numbers_use_go_g5_and_round_half_to_even() -> None:
    # 2**80 addresses in an IPv6 /48: %.5g gives an exponent, which tablewriter does
    # not take for a number (left-aligned); 1/64 = 1.5625% rounds to 2, 12.5% to 12.
    row = ipam._usage_row("IP Pool", "fd00:65::/48", 1 << 80, 1)
    assert row == ["IP Pool", "fd00:65::/48", "1.2089e+24", "1 (0%)", "1.2089e+24 (100%)"]
    assert ipam._usage_row("Block", "b", 64, 1)[3:] == ["1 (2%)", "63 (98%)"]
    assert ipam._usage_row("Block", "b", 64, 8)[3:] == ["8 (12%)", "56 (88%)"]
    assert ipam._usage_row("Block", "b", 1 << 20, 123456)[3] == "1.2346e+05 (12%)"


def test_orphan_blocks_only_with_show_blocks() -> None:
    orphans = [("10.99.0.0/26", 64, 3)]
    assert "10.99.0.0/26" not in ipam.format_usage([], orphans, False)
    text = ipam.format_usage([], orphans, True)
    assert "| Block    | 10.99.0.0/26 |        64 | 3 (5%)     | 61 (95%) |" in text
    assert "IP Pool" not in text


def test_empty_tables_have_header_and_rules() -> None:
    assert ipam.format_usage([], [], False) == (
        "+----------+------+-----------+------------+----------+\n"
        "| GROUPING | CIDR | IPS TOTAL | IPS IN USE | IPS FREE |\n"
        "+----------+------+-----------+------------+----------+\n"
        "+----------+------+-----------+------------+----------+\n"
    )
    assert ipam.format_borrowed([], 0) == (
        "+----+----------------+-------+-------------+------+--------------+\n"
        "| IP | BORROWING-NODE | BLOCK | BLOCK OWNER | TYPE | ALLOCATED-TO |\n"
        "+----+----------------+-------+-------------+------+--------------+\n"
        "+----+----------------+-------+-------------+------+--------------+\n"
    )


def test_borrowed_rows_and_unclassified_note() -> None:
    rows = [
        ("10.65.0.5", "n2", "10.65.0.0/26", "n1", "pod", "default/web"),
        ("10.65.0.6", "n2", "10.65.0.0/26", "n1", "ipipTunnelAddress", ""),
    ]
    assert ipam.format_borrowed(rows, 2) == (
        "+-----------+----------------+--------------+-------------+-------------------+--------------+\n"
        "|    IP     | BORROWING-NODE |    BLOCK     | BLOCK OWNER |       TYPE        | ALLOCATED-TO |\n"  # noqa: E501
        "+-----------+----------------+--------------+-------------+-------------------+--------------+\n"
        "| 10.65.0.5 | n2             | 10.65.0.0/26 | n1          | pod               | default/web  |\n"  # noqa: E501
        "| 10.65.0.6 | n2             | 10.65.0.0/26 | n1          | ipipTunnelAddress |              |\n"  # noqa: E501
        "+-----------+----------------+--------------+-------------+-------------------+--------------+\n"
        "\n"
        "Note: found 2 IP allocations without an explicit node association. "
        "Unable to determine if they are borrowed.\n"
    )


def test_ip_use_formats() -> None:
    assert ipam.format_ip_use("10.65.0.9", None) == "10.65.0.9 is not assigned\n"
    attrs = {"pod": "web", "node": "n1", "namespace": "default", "timestamp": "t"}
    assert ipam.format_ip_use("10.65.0.1", ("k8s-pod-network.c0", attrs)) == (
        "IP 10.65.0.1 is in use\n"
        "Handle ID: k8s-pod-network.c0\n"
        "Attributes:\n"
        "  namespace: default\n"
        "  node: n1\n"
        "  pod: web\n"
        "  timestamp: t\n"
    )
    assert ipam.format_ip_use("10.65.0.1", (None, {})) == (
        "IP 10.65.0.1 is in use\nHandle ID: <none>\nNo attributes defined\n"
    )


@pytest.mark.parametrize(
    ("value", "text"), [(True, "true"), (False, "false"), (0, "0"), (20, "20")]
)
def test_go_values(value: object, text: str) -> None:
    assert ipam._go_value(value) == text


# -- tablewriter's layout -------------------------------------------------------------


def test_alignment_numbers_right_text_left_header_centred() -> None:
    text = table.render(["A", "LONGER HEADER"], [["1", "x"], ["-2.5", "1,234"], ["abc", "5 (8%)"]])
    assert text == (
        "+------+---------------+\n"
        "|  A   | LONGER HEADER |\n"
        "+------+---------------+\n"
        "|    1 | x             |\n"
        "| -2.5 |         1,234 |\n"
        "| abc  | 5 (8%)        |\n"
        "+------+---------------+\n"
    )


def test_headers_are_upper_cased_with_underscores_as_spaces() -> None:
    assert table.render(["ips_free"], [])[:40].splitlines()[1] == "| IPS FREE |"


def test_wrap_minimal_raggedness() -> None:
    assert table.wrap("short", 30) == ["short"]
    assert table.wrap("aaaa bbbb cccc dddd eeee ffff gggg", 30) == [
        "aaaa bbbb cccc dddd eeee ffff",
        "gggg",
    ]
    # Not greedy: balanced lines beat a full first line and a short last one when the
    # last line is not free (it is only free when it fits; here three lines are needed).
    words = "aaaaaaaaa bbbbbbbbb ccccccccc ddddddddd eeeeeeeee fffffffff ggggggggg"
    lines = table.wrap(words, 30)
    assert all(len(line) <= 30 for line in lines)
    assert " ".join(lines) == words
    assert len(lines) == 3
    # A word longer than the limit widens the limit to its own length (and so goes
    # on a line of its own when nothing else fits beside it).
    assert table.wrap("x " + "y" * 40, 30) == ["x", "y" * 40]
    assert table.wrap("y" * 40 + " x", 30) == ["y" * 40, "x"]


def test_long_cells_wrap_onto_several_lines() -> None:
    cell = "aaaa bbbb cccc dddd eeee ffff gggg"
    text = table.render(["K", "V"], [["1", cell]])
    # The column is 30 wide (the cap), though its widest line is 29.
    assert text == (
        "+---+--------------------------------+\n"
        "| K |               V                |\n"
        "+---+--------------------------------+\n"
        "| 1 | aaaa bbbb cccc dddd eeee ffff  |\n"
        "|   | gggg                           |\n"
        "+---+--------------------------------+\n"
    )


def test_long_word_widens_the_column() -> None:
    name = "x" * 45
    text = table.render(["NAME"], [[name]])
    assert f"| {name} |" in text
    assert text.splitlines()[0] == "+" + "-" * 47 + "+"


# -- check's helpers ---------------------------------------------------------------------


def test_attr_string_like_calicoctl() -> None:
    attribute = {"handle_id": "h", "secondary": {"pod": "p", "node": "n1", "namespace": "ns"}}
    assert ipam_check.attr_string(attribute) == "Main:h Extra:namespace=ns,node=n1,pod=p"
    assert ipam_check.attr_string({}) == "Main:<none> Extra:"


def test_handles_of_endpoint_records() -> None:
    record = {"network": "k8s-pod-network", "containerID": "abc", "namespace": "ns", "pod": "p"}
    assert ipam_check.handles_of(record) == ["k8s-pod-network.abc", "ns.p"]
    assert ipam_check.handles_of({**record, "handle": "net.x"}) == ["net.x", "ns.p"]
    assert ipam_check.handles_of({"containerID": "abc"}) == []


def test_pid_alive() -> None:
    assert ipam_check.pid_alive(os.getpid())
    child = subprocess.Popen(["true"])
    child.wait()
    assert not ipam_check.pid_alive(child.pid)
    for bad in (None, 0, -1, "123", True):
        assert not ipam_check.pid_alive(bad)


def test_leaked_in_all_reports_is_the_intersection() -> None:
    def report(*ips: str) -> dict[str, object]:
        return {
            "problems": [ipam_check.problem("leaked", ip=ip, handle=f"h{ip}") for ip in ips]
            + [ipam_check.problem("missing-handle", handle="hx")]
        }

    assert ipam_check.leaked_in_all([report("1", "2", "3")]) == [
        ("1", "h1"),
        ("2", "h2"),
        ("3", "h3"),
    ]
    assert ipam_check.leaked_in_all([report("1", "2", "3"), report("3", "1")]) == [
        ("1", "h1"),
        ("3", "h3"),
    ]
    assert ipam_check.leaked_in_all([report("1"), report("2")]) == []

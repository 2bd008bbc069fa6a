"""Import and export policy rules (the shape Calico's BGPFilter maps onto)."""

from __future__ import annotations

import pytest

from bgpd.messages import IPV4_UNICAST, IPV6_UNICAST, PathAttributes, prefix_from_text
from bgpd.rib.policy import Operator, Policy, PrefixMatch, Rule, Verdict

ATTRS = PathAttributes(origin=0, communities=(100,))


def p(text: str) -> bytes:
    return prefix_from_text(text)[1]


@pytest.mark.parametrize(
    ("operator", "route", "hit"),
    [
        (Operator.EQUAL, "10.0.0.0/8", True),
        (Operator.EQUAL, "10.1.0.0/16", False),
        (Operator.NOT_EQUAL, "10.1.0.0/16", True),
        (Operator.IN, "10.1.0.0/16", True),
        (Operator.IN, "11.0.0.0/16", False),
        (Operator.IN, "0.0.0.0/0", False),
        (Operator.NOT_IN, "11.0.0.0/16", True),
        (Operator.NOT_IN, "10.200.3.0/24", False),
    ],
)
def test_cidr_operators(operator: Operator, route: str, hit: bool) -> None:
    assert PrefixMatch(p("10.0.0.0/8"), operator).matches(p(route), 32) is hit


def test_prefix_length_range_is_birds_set_form() -> None:
    m = PrefixMatch(p("10.0.0.0/8"), Operator.IN, min_length=16, max_length=24)
    assert m.matches(p("10.1.0.0/16"), 32)
    assert m.matches(p("10.1.2.0/24"), 32)
    assert not m.matches(p("10.1.2.128/25"), 32)
    assert not m.matches(p("10.0.0.0/8"), 32)
    # min defaults to the CIDR's own length, max to the address width.
    only_min = PrefixMatch(p("10.0.0.0/8"), Operator.NOT_IN, max_length=16)
    assert only_min.matches(p("10.1.2.0/24"), 32)
    assert not only_min.matches(p("10.0.0.0/8"), 32)


def test_ipv6_cidr() -> None:
    m = PrefixMatch(p("fd00:10::/32"), Operator.IN)
    assert m.matches(p("fd00:10:0:1::/64"), 128)
    assert not m.matches(p("fd00:11::/48"), 128)


def test_rules_run_in_order_and_the_first_verdict_decides() -> None:
    policy = Policy(
        (
            Rule(prefix=PrefixMatch(p("10.1.0.0/16")), action=Verdict.REJECT),
            Rule(prefix=PrefixMatch(p("10.0.0.0/8")), action=Verdict.ACCEPT),
        ),
        default=Verdict.REJECT,
    )
    assert policy.evaluate(IPV4_UNICAST, p("10.1.5.0/24"), ATTRS, "peer") is None
    assert policy.evaluate(IPV4_UNICAST, p("10.2.5.0/24"), ATTRS, "peer") is ATTRS
    assert policy.evaluate(IPV4_UNICAST, p("11.0.0.0/8"), ATTRS, "peer") is None


def test_modifications_apply_and_fall_through_without_an_action() -> None:
    policy = Policy(
        (
            Rule(community=100, set_local_pref=200),
            Rule(peers=frozenset({"a"}), add_communities=(7, 100)),
        )
    )
    out = policy.evaluate(IPV4_UNICAST, p("10.0.0.0/8"), ATTRS, "a")
    assert out is not None and out.local_pref == 200 and out.communities == (100, 7)
    other = policy.evaluate(IPV4_UNICAST, p("10.0.0.0/8"), ATTRS, "b")
    assert other is not None and other.communities == (100,)


def test_family_source_and_interface_conditions() -> None:
    v6_only = Policy((Rule(family=IPV6_UNICAST, action=Verdict.REJECT),))
    assert v6_only.evaluate(IPV4_UNICAST, p("10.0.0.0/8"), ATTRS, "x") is ATTRS
    assert v6_only.evaluate(IPV6_UNICAST, p("fd00::/8"), ATTRS, "x") is None
    remote = Policy((Rule(from_bgp=True, action=Verdict.REJECT),))
    assert remote.evaluate(IPV4_UNICAST, p("10.0.0.0/8"), ATTRS, "x", from_bgp=True) is None
    assert remote.evaluate(IPV4_UNICAST, p("10.0.0.0/8"), ATTRS, "x", from_bgp=False) is ATTRS
    # BGP routes have no interface: an interface rule never matches them.
    iface = Policy((Rule(interface="eth0", action=Verdict.REJECT),))
    assert iface.evaluate(IPV4_UNICAST, p("10.0.0.0/8"), ATTRS, "x") is ATTRS

"""Next hops by pool encapsulation, and Loc-RIB selections into FIB routes (no I/O)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from bgpd.kernel import rtnl
from bgpd.kernel.encap import Encapsulation, Mode, Pool, Vtep
from bgpd.kernel.export import FibExport
from bgpd.kernel.fib import Fib
from bgpd.kernel.rtnl import RTN_BLACKHOLE, KernelRoute, NextHop
from bgpd.messages import IPV4_UNICAST, IPV6_UNICAST, Origin, PathAttributes, prefix_from_text
from bgpd.messages.aspath import EMPTY_PATH
from bgpd.rib import BestChange, LocRib, Path, Source

V4 = socket.AF_INET
V6 = socket.AF_INET6
TUNL0 = 7
VXLAN = 9


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def net(text: str) -> tuple[bytes, int]:
    n = ipaddress.ip_network(text)
    return n.network_address.packed, n.prefixlen


def encap() -> Encapsulation:
    return Encapsulation(
        pools=[
            Pool(ipaddress.ip_network("10.1.0.0/16")),  # no encapsulation
            Pool(ipaddress.ip_network("10.2.0.0/16"), ipip=Mode.ALWAYS),
            Pool(ipaddress.ip_network("10.3.0.0/16"), ipip=Mode.CROSS_SUBNET),
            Pool(ipaddress.ip_network("10.4.0.0/16"), vxlan=Mode.ALWAYS),
            Pool(ipaddress.ip_network("10.5.0.0/16"), vxlan=Mode.CROSS_SUBNET),
            # A more specific pool inside another wins.
            Pool(ipaddress.ip_network("10.4.128.0/17")),
            Pool(ipaddress.ip_network("2001:db8:1::/48")),
        ],
        subnets=[ipaddress.ip_network("198.18.5.0/24"), ipaddress.ip_network("2001:2:0:5::/64")],
        tunl0=TUNL0,
        vxlan=VXLAN,
        vteps={
            a("198.18.9.2"): Vtep(a("198.18.9.2"), a("10.4.9.0"), bytes.fromhex("66000000092a")),
            a("198.18.5.3"): Vtep(a("198.18.5.3"), a("10.5.3.0"), bytes.fromhex("66000000053a")),
        },
    )


SAME = a("198.18.5.3")  # a node in our subnet
OTHER = a("198.18.9.2")  # a node behind a router


@pytest.mark.parametrize(
    ("prefix", "gateway", "hop"),
    [
        # Outside every pool: straight to the BGP next hop.
        ("192.0.2.0/24", OTHER, NextHop(OTHER)),
        ("10.1.7.0/26", OTHER, NextHop(OTHER)),
        ("10.2.7.0/26", SAME, NextHop(SAME, TUNL0, onlink=True)),
        ("10.3.7.0/26", OTHER, NextHop(OTHER, TUNL0, onlink=True)),
        ("10.3.7.0/26", SAME, NextHop(SAME)),  # CrossSubnet, same subnet: direct
        ("10.4.7.0/26", OTHER, NextHop(a("10.4.9.0"), VXLAN, onlink=True)),
        ("10.5.7.0/26", OTHER, NextHop(a("10.4.9.0"), VXLAN, onlink=True)),
        ("10.5.7.0/26", SAME, NextHop(SAME)),
        ("10.4.200.0/26", OTHER, NextHop(OTHER)),  # the more specific pool
    ],
)
def test_next_hop_follows_the_pool(prefix: str, gateway: bytes, hop: NextHop) -> None:
    dst, length = net(prefix)
    plan = encap().plan(V4, dst, length, [gateway])
    assert plan.route == KernelRoute(V4, dst, length, nexthops=(hop,)), plan.reason


def test_a_prefix_wider_than_the_pool_is_not_in_it() -> None:
    dst, length = net("10.4.0.0/15")
    plan = encap().plan(V4, dst, length, [OTHER])
    assert plan.route is not None and plan.route.nexthops == (NextHop(OTHER),)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"tunl0": 0}, "pool 10.2.0.0/16 uses IPIP and tunl0 is missing"),
        ({"vxlan": 0}, "pool 10.4.0.0/16 uses VXLAN and vxlan.calico is missing"),
        ({"vteps": {}}, "no VTEP known for node 198.18.9.2"),
    ],
)
def test_what_cannot_be_planned_says_why(change: dict[str, object], reason: str) -> None:
    e = encap()
    for k, v in change.items():
        setattr(e, k, v)
    prefix = "10.2.7.0/26" if "tunl0" in change else "10.4.7.0/26"
    plan = e.plan(V4, *net(prefix), [OTHER])
    assert plan.route is None
    assert plan.reason == reason


def test_ecmp_plans_each_next_hop_and_merges_duplicates() -> None:
    dst, length = net("10.5.7.0/26")
    plan = encap().plan(V4, dst, length, [OTHER, SAME, OTHER])
    assert plan.route is not None
    assert plan.route.nexthops == (NextHop(a("10.4.9.0"), VXLAN, onlink=True), NextHop(SAME))


def test_ecmp_set_with_one_unplannable_hop_is_not_half_installed() -> None:
    e = encap()
    e.vteps = {}
    plan = e.plan(V4, *net("10.5.7.0/26"), [SAME, OTHER])
    assert plan.route is None and "198.18.9.2" in plan.reason


def test_ipv6_routes_go_direct_and_a_mismatched_next_hop_is_refused() -> None:
    dst, length = net("2001:db8:1:5::/64")
    hop = a("2001:2:0:5::3")
    plan = encap().plan(V6, dst, length, [hop])
    assert plan.route == KernelRoute(V6, dst, length, nexthops=(NextHop(hop),))
    assert plan.route.metric == rtnl.IP6_DEFAULT_METRIC
    assert encap().plan(V6, dst, length, [SAME]).route is None


def test_blackhole_for_own_block() -> None:
    route = encap().blackhole(V4, *net("10.4.1.0/26"))
    assert route.type == RTN_BLACKHOLE and route.nexthops == () and route.protocol == 12


def test_ipip_request_names_tunl0_onlink_and_the_node_as_gateway() -> None:
    """The exact RTM_NEWROUTE we would send for an IPIP route (this kernel has no
    IPIP module, so the live test cannot make tunl0)."""
    dst, length = net("10.2.7.0/26")
    plan = encap().plan(V4, dst, length, [OTHER])
    assert plan.route is not None
    data = rtnl.encode_add(plan.route, seq=5, replace=False)
    [(kind, flags, seq, body)] = list(rtnl.split(data))
    assert (kind, seq) == (rtnl.RTM_NEWROUTE, 5)
    assert flags & rtnl.NLM_F_EXCL and flags & rtnl.NLM_F_CREATE
    rtm_flags = rtnl.RTMSG.unpack_from(body, 0)[8]
    assert rtm_flags & rtnl.RTNH_F_ONLINK
    attrs = dict((k, bytes(v)) for k, v in rtnl.attributes(body, rtnl.RTMSG.size))
    assert attrs[rtnl.RTA_GATEWAY] == OTHER
    assert attrs[rtnl.RTA_OIF] == TUNL0.to_bytes(4, "little")
    assert attrs[rtnl.RTA_DST] == dst
    assert rtnl.decode_route(body) == plan.route


def test_pool_with_two_encapsulations_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        Pool(ipaddress.ip_network("10.9.0.0/16"), ipip=Mode.ALWAYS, vxlan=Mode.ALWAYS)
    with pytest.raises(ValueError, match="IPv4"):
        Pool(ipaddress.ip_network("2001:db8::/48"), ipip=Mode.ALWAYS)


# ------------------------------------------------------------------ FibExport

ATTRS = PathAttributes(origin=Origin.IGP, as_path=EMPTY_PATH)


def path(peer: str, hop: bytes) -> Path:
    return Path(ATTRS, hop, Source.peer(peer, 65000, 65000, int.from_bytes(a(peer), "big")))


def change(prefix: str, *paths: Path) -> BestChange:
    family = IPV6_UNICAST if ":" in prefix else IPV4_UNICAST
    _afi, packed = prefix_from_text(prefix)
    return BestChange(family, packed, paths[0] if paths else None, paths)


def test_selections_become_wanted_routes() -> None:
    fib = Fib()
    export = FibExport(fib, encap())
    export.changes(
        [
            change("10.1.7.0/26", path("198.18.9.2", OTHER)),
            change("10.5.7.0/26", path("198.18.9.2", OTHER), path("198.18.5.3", SAME)),
            # An IPv6 next hop with its link-local address after it (RFC 2545 §3).
            change("2001:db8:1:5::/64", path("2001:2:0:5::3", a("2001:2:0:5::3") + a("fe80::1"))),
        ]
    )
    routes = {str(r) for r in fib.wanted.values()}
    assert routes == {
        "10.1.7.0/26 via 198.18.9.2 proto 12",
        "10.5.7.0/26 via 10.4.9.0 dev #9 onlink nexthop via 198.18.5.3 proto 12",
        "2001:db8:1:5::/64 via 2001:2:0:5::3 proto 12 metric 1024",
    }
    export.changes([change("10.1.7.0/26")])  # withdrawn
    assert len(fib.wanted) == 2


def test_unplannable_selection_is_not_wanted_and_is_explained() -> None:
    fib = Fib()
    e = encap()
    e.vteps = {}
    export = FibExport(fib, e)
    export.changes([change("10.4.7.0/26", path("198.18.9.2", OTHER))])
    assert fib.wanted == {}
    assert list(export.unplanned.values()) == ["no VTEP known for node 198.18.9.2"]
    # The VTEP becomes known: a replan installs the route.
    e.set_vteps([Vtep(OTHER, a("10.4.9.0"), bytes(6))])
    loc = LocRib()
    _afi, packed = prefix_from_text("10.4.7.0/26")
    loc.update(IPV4_UNICAST, packed, ("198.18.9.2", 0), path("198.18.9.2", OTHER))
    export.replan(loc)
    assert [str(r) for r in fib.wanted.values()] == [
        "10.4.7.0/26 via 10.4.9.0 dev #9 onlink proto 12"
    ]
    assert export.unplanned == {}


def test_own_block_is_a_blackhole_whatever_peers_say() -> None:
    fib = Fib()
    export = FibExport(fib, encap())
    _afi, packed = prefix_from_text("10.4.1.0/26")
    export.own_block(IPV4_UNICAST, packed)
    export.changes([change("10.4.1.0/26", path("198.18.9.2", OTHER))])
    export.changes([change("10.4.1.0/26")])
    [route] = fib.wanted.values()
    assert route.type == RTN_BLACKHOLE


def test_locally_originated_routes_stay_out_of_the_kernel() -> None:
    fib = Fib()
    export = FibExport(fib, encap())
    local = Path(ATTRS, b"", Source.origin(65000, 1))
    export.changes([change("10.9.0.0/24", local)])
    assert fib.wanted == {}

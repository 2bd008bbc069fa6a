"""Route messages: what we encode is what the kernel installs (read back with
our decoder and with ``ip route``), and refusals are matched to their route."""

from __future__ import annotations

import socket

import pytest

from bgpd.kernel import rtnl
from bgpd.kernel.channel import RouteChannel, group_mask, ignore_echoes, open_socket
from bgpd.kernel.fib import matches
from bgpd.kernel.rtnl import KernelRoute, NextHop

from .conftest import GATEWAY, GATEWAY6, Netns

V4, V6 = socket.AF_INET, socket.AF_INET6


def net(text: str) -> tuple[int, bytes, int]:
    addr, length = text.split("/")
    family = V6 if ":" in addr else V4
    return family, socket.inet_pton(family, addr), int(length)


def unicast(text: str, *hops: NextHop, **kw: object) -> KernelRoute:
    family, dst, length = net(text)
    return KernelRoute(family, dst, length, nexthops=hops, **kw)  # type: ignore[arg-type]


def install(ns: Netns, *routes: KernelRoute) -> tuple[RouteChannel, list[rtnl.Failure]]:
    ch = RouteChannel(ns.name)
    reqs = []
    for r in routes:
        seq = ch.next_seq()
        reqs.append((seq, rtnl.encode_add(r, seq, replace=False)))
    return ch, ch.apply(reqs)


def ours(ch: RouteChannel, table: int = rtnl.RT_TABLE_MAIN) -> dict[str, KernelRoute]:
    return {
        f"{socket.inet_ntop(r.family, r.dst)}/{r.dst_len}": r
        for r in ch.dump_routes()
        if r.protocol == rtnl.RTPROT_BIRD and r.table == table
    }


def test_every_route_shape_installs_as_encoded(netns: Netns) -> None:
    dev = netns.ifindex("up0")
    other = socket.inet_aton("198.18.5.3")
    wanted = [
        unicast("10.1.0.0/24", NextHop(GATEWAY)),
        unicast("10.2.0.0/26", NextHop(socket.inet_aton("192.0.2.9"), dev, onlink=True)),
        unicast("10.3.0.0/24", NextHop(GATEWAY, dev), NextHop(other, dev, weight=3)),
        KernelRoute(V4, net("10.4.0.0/26")[1], 26, rtnl.RTN_BLACKHOLE),
        unicast("10.5.0.0/24", NextHop(GATEWAY), table=100, metric=20),
        unicast("10.6.0.0/24", NextHop(b"", dev)),
        unicast("fd00:1::/64", NextHop(GATEWAY6)),
        unicast("fd00:2::/64", NextHop(GATEWAY6, dev), NextHop(GATEWAY6[:-1] + b"\x03", dev)),
        KernelRoute(V6, net("fd00:3::/122")[1], 122, rtnl.RTN_BLACKHOLE),
    ]
    ch, failures = install(netns, *wanted)
    try:
        assert failures == []
        got = ours(ch)
        got.update(ours(ch, 100))
        for want in wanted:
            have = got[f"{socket.inet_ntop(want.family, want.dst)}/{want.dst_len}"]
            assert matches(want, have), (want, have)
            assert have.key == want.key
        text = "\n".join(netns.routes() + netns.routes("table", "100"))
        assert "10.2.0.0/26 via 192.0.2.9 dev up0 proto bird onlink" in text
        assert "blackhole 10.4.0.0/26 proto bird" in text
        assert "10.5.0.0/24 via 198.18.5.2 dev up0 proto bird metric 20" in text
        assert "10.6.0.0/24 dev up0 proto bird scope link" in text
        six = netns.ip("-6", "route")
        assert "fd00:1::/64 via 2001:2:0:5::2 dev up0 proto bird metric 1024" in six
        assert "weight 3" in netns.ip("route", "show", "10.3.0.0/24")
    finally:
        ch.close()


def test_a_refused_route_is_matched_and_the_rest_of_the_batch_lands(netns: Netns) -> None:
    good = [unicast(f"10.9.{i}.0/24", NextHop(GATEWAY)) for i in range(200)]
    bad = unicast("10.8.0.0/24", NextHop(socket.inet_aton("203.0.113.1")))  # not on a link
    ch = RouteChannel(netns.name)
    try:
        reqs = []
        seq_of_bad = 0
        for i, r in enumerate([*good[:100], bad, *good[100:]]):
            seq = ch.next_seq()
            if i == 100:
                seq_of_bad = seq
            reqs.append((seq, rtnl.encode_add(r, seq, replace=False)))
        failures = ch.apply(reqs)
        assert [f.seq for f in failures] == [seq_of_bad]
        assert failures[0].errno != 0 and "gateway" in failures[0].message.lower()
        assert len(ours(ch)) == 200
    finally:
        ch.close()


def test_excl_refuses_another_protocols_route_and_delete_spares_it(netns: Netns) -> None:
    netns.ip("route", "add", "10.7.0.0/24", "via", "198.18.5.2", "proto", "static")
    mine = unicast("10.7.0.0/24", NextHop(GATEWAY))
    ch, failures = install(netns, mine)
    try:
        assert [f.errno for f in failures] == [17]  # EEXIST
        seq = ch.next_seq()
        (gone,) = ch.apply([(seq, rtnl.encode_delete(mine, seq))])
        assert gone.errno == 3  # ESRCH: our delete names our protocol only
        assert netns.routes("10.7.0.0/24") == ["10.7.0.0/24 via 198.18.5.2 dev up0 proto static"]
    finally:
        ch.close()


def test_large_batches_span_many_datagrams(netns: Netns) -> None:
    routes = [unicast(f"10.{i >> 8}.{i & 255}.0/24", NextHop(GATEWAY)) for i in range(6000)]
    ch, failures = install(netns, *routes)
    try:
        assert failures == [] and len(ours(ch)) == 6000
        reqs = []
        for r in routes:
            seq = ch.next_seq()
            reqs.append((seq, rtnl.encode_delete(r, seq)))
        assert ch.apply(reqs) == [] and ours(ch) == {}
    finally:
        ch.close()


def test_split_rejects_an_impossible_length() -> None:
    bad = rtnl.NLMSGHDR.pack(400, rtnl.RTM_NEWROUTE, 0, 1, 0) + b"\0" * 20
    with pytest.raises(rtnl.NetlinkError):
        list(rtnl.split(bad))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"family": V4, "dst": b"\0" * 16, "dst_len": 24},
        {"family": V4, "dst": b"\0" * 4, "dst_len": 33},
        {"family": V4, "dst": b"\0" * 4, "dst_len": 8},  # unicast without a next hop
        {"family": V4, "dst": b"\0" * 4, "dst_len": 8, "nexthops": (NextHop(GATEWAY6),)},
        {"family": V4, "dst": b"\0" * 4, "dst_len": 8, "nexthops": (NextHop(),)},
    ],
)
def test_impossible_routes_are_refused_at_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        KernelRoute(**kwargs)  # type: ignore[arg-type]


def test_text_reads_like_ip_route() -> None:
    r = unicast("10.2.0.0/26", NextHop(socket.inet_aton("192.0.2.9"), 4, onlink=True), metric=5)
    assert str(r) == "10.2.0.0/26 via 192.0.2.9 dev #4 onlink proto 12 metric 5"
    assert str(KernelRoute(V6, bytes(16), 0, rtnl.RTN_BLACKHOLE)) == (
        "blackhole ::/0 proto 12 metric 1024"
    )


def test_the_event_filter_drops_only_what_our_requests_cause(netns: Netns) -> None:
    channel = RouteChannel(netns.name)
    events = open_socket(netns.name, group_mask(rtnl.RTNLGRP_IPV4_ROUTE))
    try:
        ignore_echoes(events, channel.portid)
        hop = (NextHop(socket.inet_aton("198.18.5.2")),)
        ours = [unicast(f"10.13.{i}.0/24", *hop) for i in range(3)]
        assert (
            channel.apply([(i + 1, rtnl.encode_add(r, i + 1, False)) for i, r in enumerate(ours)])
            == []
        )
        assert channel.apply([(9, rtnl.encode_delete(ours[0], 9))]) == []
        # By hand, with our protocol number too: these arrive.
        netns.ip("route", "add", "10.11.0.0/24", "via", "198.18.5.2", "proto", "bird")
        netns.ip("route", "add", "10.12.0.0/24", "via", "198.18.5.2", "proto", "static")
        netns.ip("route", "del", "10.13.1.0/24", "proto", "bird")
        seen = []
        while True:
            try:
                data = events.recv(65536)
            except BlockingIOError:
                break
            for kind, _flags, _seq, body in rtnl.split(data):
                route = rtnl.decode_route(body)
                assert route is not None
                seen.append((kind, route.protocol, route.dst))
        assert seen == [
            (rtnl.RTM_NEWROUTE, rtnl.RTPROT_BIRD, bytes([10, 11, 0, 0])),
            (rtnl.RTM_NEWROUTE, rtnl.RTPROT_STATIC, bytes([10, 12, 0, 0])),
            (rtnl.RTM_DELROUTE, rtnl.RTPROT_BIRD, bytes([10, 13, 1, 0])),
        ]
    finally:
        events.close()
        channel.close()

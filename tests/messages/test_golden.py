"""Decode what real BIRD 2 and GoBGP sent, assert the fields, re-encode byte for byte."""

from __future__ import annotations

import pytest

from bgpd.messages import (
    AS_TRANS,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPath,
    AddPathMode,
    AsPathSegmentType,
    CeaseSubcode,
    ErrorCode,
    FourOctetAs,
    GracefulRestart,
    Keepalive,
    LargeCommunity,
    Multiprotocol,
    Notification,
    Open,
    Update,
    WellKnownCommunity,
    decode_message,
    encode_message,
    iter_messages,
    prefix_from_text,
    prefix_to_text,
    reconstruct,
)

from .golden import NAMES, load


def _decoded(name: str) -> list[tuple[bytes, object]]:
    cap = load(name)
    out = []
    for index, (_mtype, raw) in enumerate(iter_messages(cap.stream, 65535)):
        # The OPEN precedes negotiation; everything after it uses the negotiated context.
        ctx = cap.context if index else type(cap.context)()
        out.append((raw, decode_message(raw, ctx)))
    return out


def _routes(name: str) -> dict[str, Update]:
    """Every announced prefix (text) -> the UPDATE that carried it."""
    routes: dict[str, Update] = {}
    for _raw, msg in _decoded(name):
        if not isinstance(msg, Update):
            continue
        for p in msg.nlri:
            routes[prefix_to_text(p, 1)] = msg
        if msg.mp_reach is not None:
            for p in msg.mp_reach.nlri:
                routes[prefix_to_text(p, msg.mp_reach.family.afi)] = msg
    return routes


def test_captures_exist() -> None:
    assert {"bird2-ebgp", "bird2-ibgp-addpath", "bird2-as2", "gobgp-ebgp"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_message_reencodes_to_the_same_bytes(name: str) -> None:
    cap = load(name)
    decoded = _decoded(name)
    assert [len(raw) for raw, _m in decoded] == [m["length"] for m in cap.meta["messages"]]
    for index, (raw, msg) in enumerate(decoded):
        ctx = cap.context if index else type(cap.context)()
        assert encode_message(msg, ctx) == raw, f"message {index} of {name}: {msg}"


@pytest.mark.parametrize("name", NAMES)
def test_session_shape(name: str) -> None:
    cap = load(name)
    msgs = [m for _r, m in _decoded(name)]
    first, last = msgs[0], msgs[-1]
    assert isinstance(first, Open)
    assert first.asn == cap.meta["peer_as"]
    assert [c.code for c in first.capabilities] == cap.meta["peer_capabilities"]
    assert Multiprotocol(IPV4_UNICAST) in first.capabilities
    assert Multiprotocol(IPV6_UNICAST) in first.capabilities
    assert first.find(FourOctetAs) == FourOctetAs(cap.meta["peer_as"])
    gr = first.find(GracefulRestart)
    assert gr is not None and gr.restart_time > 0
    assert any(isinstance(m, Keepalive) for m in msgs)
    # The peer's closing word: Cease / Administrative Shutdown with its message.
    assert isinstance(last, Notification)
    assert (last.code, last.subcode) == (ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)
    assert last.shutdown_communication == "golden capture shutdown"
    # End-of-RIB for both families.
    eors = {m.end_of_rib_family for m in msgs if isinstance(m, Update)}
    assert {IPV4_UNICAST, IPV6_UNICAST} <= eors


@pytest.mark.parametrize("name", NAMES)
def test_withdrawals(name: str) -> None:
    msgs = [m for _r, m in _decoded(name) if isinstance(m, Update)]
    v4 = {prefix_to_text(p, 1) for m in msgs for p in m.withdrawn}
    v6 = {
        prefix_to_text(p, 2)
        for m in msgs
        if m.mp_unreach is not None
        for p in m.mp_unreach.withdrawn
    }
    assert v4 == {"203.0.113.7/32"}
    assert v6 == {"2001:db8:ffff::1/128"}


def test_bird_ebgp_rich_attributes() -> None:
    routes = _routes("bird2-ebgp")
    assert {
        "10.0.0.0/8",
        "172.16.0.0/16",
        "192.0.2.0/24",
        "2001:db8::/32",
        "2001:db8:1::/48",
    } <= set(routes)
    a = routes["10.0.0.0/8"].attributes
    assert a.origin == 0
    assert a.as_path is not None and a.as_path.segments[0].asns == (65002, 4200000001)
    assert a.next_hop == bytes([198, 18, 0, 2])
    assert a.communities == (65000 << 16 | 1, WellKnownCommunity.NO_EXPORT)
    assert a.large_communities is not None
    assert LargeCommunity(4200000001, 1, 1) in a.large_communities
    assert a.extended_communities is not None and len(a.extended_communities) == 1
    # Route target 65000:100, 2-octet AS specific, transitive (RFC 4360 §4).
    assert a.extended_communities[0] == bytes([0x00, 0x02]) + (65000).to_bytes(2, "big") + (
        100
    ).to_bytes(4, "big")
    v6 = routes["2001:db8::/32"]
    assert v6.mp_reach is not None and v6.mp_reach.family == IPV6_UNICAST
    # BIRD sends the global and the link-local address (RFC 2545 §3).
    assert len(v6.mp_reach.next_hop) == 32
    assert v6.mp_reach.link_local_next_hop == bytes.fromhex("fe800000000000000000000000000002")
    # Prefixes sharing one attribute set share one decoded object.
    assert routes["10.0.0.0/8"].attributes is routes["172.16.0.0/16"].attributes


def test_bird_ibgp_add_path() -> None:
    cap = load("bird2-ibgp-addpath")
    first = decode_message(cap.stream[: cap.meta["messages"][0]["length"]])
    assert isinstance(first, Open)
    addpath = first.find(AddPath)
    assert addpath is not None
    assert (IPV4_UNICAST, AddPathMode.BOTH) in addpath.entries
    msgs = [m for _r, m in _decoded("bird2-ibgp-addpath") if isinstance(m, Update)]
    tens = [
        (pid, m.attributes)
        for m in msgs
        for p, pid in zip(m.nlri, m.nlri_path_ids, strict=True)
        if p == prefix_from_text("10.0.0.0/8")[1]
    ]
    # Two paths for one prefix, told apart by their path identifiers (RFC 7911).
    assert len(tens) == 2 and tens[0][0] != tens[1][0]
    assert {a.local_pref for _pid, a in tens} == {200, 50}
    # iBGP: the locally originated routes have an empty AS_PATH.
    assert any(
        a.as_path is not None and a.as_path.segments == ()
        for m in msgs
        for a in [m.attributes]
        if m.nlri
    )


@pytest.mark.parametrize("name", ["bird2-as2", "gobgp-as2"])
def test_two_octet_peer_sends_as4_path(name: str) -> None:
    routes = _routes(name)
    a = routes["10.0.0.0/8"].attributes
    assert a.as_path is not None and a.as4_path is not None
    # RFC 6793 §4.2.2: AS_TRANS stands in for the 4-octet AS in the 2-octet AS_PATH.
    assert AS_TRANS in a.as_path.segments[0].asns
    real = reconstruct(a.as_path, a.as4_path)
    assert 4200000001 in real.segments[0].asns
    assert AS_TRANS not in real.segments[0].asns
    assert real.length() == a.as_path.length()
    assert all(s.type == AsPathSegmentType.AS_SEQUENCE for s in real.segments)


def test_gobgp_as2_aggregator() -> None:
    msgs = [m for _r, m in _decoded("gobgp-as2") if isinstance(m, Update)]
    aggs = [m.attributes for m in msgs if m.attributes.as4_aggregator is not None]
    assert aggs, "gobgp-as2 carries AS4_AGGREGATOR"
    assert aggs[0].aggregator is not None and aggs[0].aggregator.asn == AS_TRANS
    assert aggs[0].as4_aggregator.asn > 0xFFFF  # type: ignore[union-attr]

"""OPEN, NOTIFICATION, ROUTE-REFRESH, capabilities and prefixes: values and validation."""

from __future__ import annotations

import pytest

from bgpd.messages import (
    AS_TRANS,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPath,
    AddPathMode,
    AsPath,
    CeaseSubcode,
    EnhancedRouteRefresh,
    FourOctetAs,
    GracefulRestart,
    Hostname,
    MpReach,
    Multiprotocol,
    Notification,
    Open,
    PathAttributes,
    RouteRefresh,
    RouteRefreshSubtype,
    SessionContext,
    Update,
    decode_message,
    encode_message,
    prefix_from_text,
    prefix_to_text,
)
from bgpd.messages.codes import error_name


def test_open_build_uses_as_trans_for_four_octet_as() -> None:
    msg = Open.build(4200000001, 90, 0xC6120001, (FourOctetAs(4200000001),))
    assert msg.my_as == AS_TRANS
    assert decode_message(encode_message(msg)).asn == 4200000001  # type: ignore[attr-defined]


def test_open_find_capabilities() -> None:
    caps = (Multiprotocol(IPV4_UNICAST), Multiprotocol(IPV6_UNICAST), EnhancedRouteRefresh())
    msg = Open.build(65001, 90, 1, caps)
    assert msg.find_all(Multiprotocol) == [Multiprotocol(IPV4_UNICAST), Multiprotocol(IPV6_UNICAST)]
    assert msg.find(GracefulRestart) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"my_as": 70000}, {"hold_time": 2}, {"bgp_id": 0}, {"version": 256}],
)
def test_open_constructor_refuses_invalid_values(kwargs: dict[str, int]) -> None:
    base = {"my_as": 65001, "hold_time": 90, "bgp_id": 1}
    with pytest.raises(ValueError):
        Open(**{**base, **kwargs})  # type: ignore[arg-type]


def test_graceful_restart_flags_and_families() -> None:
    cap = GracefulRestart(
        120,
        restarting=True,
        notification=True,
        families=((IPV4_UNICAST, True), (IPV6_UNICAST, False)),
    )
    value = cap.encode_value()
    assert value[:2] == bytes([0xC0, 120])
    assert GracefulRestart.decode_value(value) == cap
    with pytest.raises(ValueError):
        GracefulRestart(4096)


def test_add_path_modes() -> None:
    cap = AddPath(((IPV4_UNICAST, AddPathMode.BOTH), (IPV6_UNICAST, AddPathMode.RECEIVE)))
    assert cap.encode_value() == bytes([0, 1, 1, 3, 0, 2, 1, 1])


def test_hostname_capability_as_frr_sends_it() -> None:
    cap = Hostname("node1", "cluster.local")
    assert cap.encode_value() == b"\x05node1\x0dcluster.local"
    assert Hostname.decode_value(cap.encode_value()) == cap


def test_notification_shutdown_communication() -> None:
    note = Notification.shutdown("maintenance: back at 14:00")
    assert note.subcode == CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    assert (
        decode_message(encode_message(note)).shutdown_communication == "maintenance: back at 14:00"
    )  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        Notification.shutdown("x" * 256)


def test_notification_malformed_shutdown_communication_is_none() -> None:
    assert Notification(6, 2, b"\x09abc").shutdown_communication is None
    assert Notification(6, 2, b"\x02\xff\xfe").shutdown_communication is None
    assert Notification(6, 3, b"\x02ab").shutdown_communication is None


def test_hard_reset_wraps_the_cause() -> None:
    inner = Notification(4, 0)
    outer = Notification.hard_reset(inner)
    assert (outer.code, outer.subcode) == (6, CeaseSubcode.HARD_RESET)
    assert outer.hard_reset_cause == inner
    assert Notification(6, 2).hard_reset_cause is None


def test_error_names_from_the_registry() -> None:
    assert error_name(6, 9) == "CEASE/HARD_RESET"
    assert error_name(5, 3) == "FSM/UNEXPECTED_MESSAGE_IN_ESTABLISHED"
    assert error_name(3, 99) == "UPDATE_MESSAGE/99"
    assert error_name(200, 1) == "200/1"


def test_route_refresh_subtypes() -> None:
    borr = RouteRefresh(IPV6_UNICAST, RouteRefreshSubtype.BORR)
    assert encode_message(borr)[19:] == bytes([0, 2, 1, 1])
    with pytest.raises(ValueError):
        RouteRefresh(IPV4_UNICAST, RouteRefreshSubtype.EORR, b"\x00")


def test_prefix_text_round_trip() -> None:
    for text in (
        "0.0.0.0/0",
        "10.0.0.0/8",
        "192.0.2.128/25",
        "2001:db8::/32",
        "2001:db8::1/128",
        "::/0",
    ):
        afi, p = prefix_from_text(text)
        assert prefix_to_text(p, afi) == text
    with pytest.raises(ValueError):
        prefix_from_text("10.0.0.1/8")


def test_update_constructor_refuses_non_canonical_prefixes() -> None:
    with pytest.raises(ValueError):
        Update(nlri=(b"\x17\x0a\x01\x03",))
    with pytest.raises(ValueError):
        Update(nlri=(b"\x18\x0a\x01",))
    with pytest.raises(ValueError):
        MpReach(IPV6_UNICAST, bytes(4), ())


def test_path_ids_must_match_what_was_negotiated() -> None:
    p = prefix_from_text("10.0.0.0/8")[1]
    attrs = PathAttributes(origin=0, next_hop=b"\x0a\x00\x00\x01")
    with pytest.raises(ValueError):
        encode_message(Update(attributes=attrs, nlri=(p,), nlri_path_ids=(1,)))
    with pytest.raises(ValueError):
        encode_message(
            Update(attributes=attrs, nlri=(p,)),
            SessionContext(add_path_send=frozenset({IPV4_UNICAST})),
        )


def test_encoder_refuses_a_message_over_the_session_limit() -> None:
    prefixes = tuple(bytes([24, 10, i >> 8, i & 0xFF]) for i in range(1100))
    big = Update(withdrawn=prefixes)
    with pytest.raises(ValueError):
        encode_message(big)
    assert len(encode_message(big, SessionContext(extended_message=True))) == 23 + 4 * 1100


def test_end_of_rib_markers() -> None:
    assert encode_message(Update.end_of_rib()) == b"\xff" * 16 + b"\x00\x17\x02\x00\x00\x00\x00"
    v6 = encode_message(Update.end_of_rib(IPV6_UNICAST))
    assert v6[19:] == bytes([0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1])
    assert decode_message(v6).end_of_rib_family == IPV6_UNICAST  # type: ignore[attr-defined]
    assert Update(withdrawn=(prefix_from_text("10.0.0.0/8")[1],)).end_of_rib_family is None


def test_attributes_describe_for_operators() -> None:
    attrs = PathAttributes(
        origin=0, next_hop=b"\xc6\x12\x00\x02", communities=(0xFFFFFF01, 65000 << 16 | 7)
    )
    assert attrs.describe() == {
        "origin": "IGP",
        "next_hop": "198.18.0.2",
        "communities": ["NO_EXPORT", "65000:7"],
    }
    assert attrs.present_types() == [1, 3, 8]


def test_identical_attribute_bytes_decode_to_one_shared_object() -> None:
    ctx = SessionContext()
    attrs = PathAttributes(origin=0, next_hop=b"\xc6\x12\x00\x02")
    attrs = attrs.replace(as_path=AsPath.sequence(65002))
    a = decode_message(encode_message(Update(attributes=attrs, nlri=(b"\x08\x0a",))), ctx)
    b = decode_message(encode_message(Update(attributes=attrs, nlri=(b"\x08\x0b",))), ctx)
    assert a.attributes is b.attributes  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "changes",
    [
        {"origin": 3},
        {"next_hop": b"\x01\x02\x03"},
        {"med": -1},
        {"local_pref": 1 << 32},
        {"communities": ()},
        {"cluster_list": (1 << 32,)},
        {"extended_communities": (b"short",)},
        {"large_communities": ()},
    ],
)
def test_attributes_replace_checks_the_changed_fields(changes: dict[str, object]) -> None:
    attrs = PathAttributes(origin=0, as_path=AsPath.sequence(65001))
    with pytest.raises(ValueError):
        attrs.replace(**changes)
    with pytest.raises(ValueError):
        PathAttributes(**{"origin": 0, **changes})  # type: ignore[arg-type]


def test_attributes_replace_copies_the_rest_and_drops_wire_flags() -> None:
    ctx = SessionContext()
    wire = encode_message(
        Update(
            attributes=PathAttributes(
                origin=1, as_path=AsPath.sequence(65001), med=5, next_hop=bytes([198, 18, 0, 2])
            ),
            nlri=(prefix_from_text("10.0.0.0/8")[1],),
        ),
        ctx,
    )
    decoded = decode_message(wire, ctx).attributes
    assert decoded.wire_flags is not None
    changed = decoded.replace(med=7, communities=(65001 << 16 | 1,))
    assert (changed.med, changed.communities, changed.wire_flags) == (7, (65001 << 16 | 1,), None)
    assert changed.as_path == decoded.as_path and changed.origin == 1
    assert changed == PathAttributes(
        origin=1,
        as_path=AsPath.sequence(65001),
        med=7,
        next_hop=bytes([198, 18, 0, 2]),
        communities=(65001 << 16 | 1,),
    )
    with pytest.raises(TypeError):
        decoded.replace(colour=1)

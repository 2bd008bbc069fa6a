"""One named test per error case of RFC 4271 §6.1-6.3 and RFC 7606 §3-7.

Messages are built from raw octets here, not with the encoder, so the faults
are exactly the ones the RFCs describe.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from bgpd.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Action,
    AsPath,
    AsPathSegment,
    BgpError,
    ErrorCode,
    MessageHeaderError,
    MessageHeaderSubcode,
    Notification,
    OpenMessageError,
    OpenSubcode,
    RouteRefreshError,
    SessionContext,
    Update,
    UpdateMessageError,
    UpdateSubcode,
    decode_message,
    encode_message,
    prefix_from_text,
    reconstruct,
)
from bgpd.messages.context import ATTRIBUTE_CACHE_BYTES, AttributeCache

CTX = SessionContext()
AS2 = SessionContext(four_octet_as=False)
MARKER = b"\xff" * 16


def msg(mtype: int, body: bytes) -> bytes:
    return MARKER + struct.pack(">HB", 19 + len(body), mtype) + body


def attr(code: int, value: bytes, flags: int | None = None) -> bytes:
    if flags is None:
        flags = {1: 0x40, 2: 0x40, 3: 0x40, 5: 0x40, 6: 0x40}.get(code, 0xC0)
        if code in (4, 9, 10, 14, 15):
            flags = 0x80
    if len(value) > 255:
        return struct.pack(">BBH", flags | 0x10, code, len(value)) + value
    return struct.pack(">BBB", flags, code, len(value)) + value


ORIGIN = attr(1, b"\x00")
AS_PATH = attr(2, b"\x02\x01" + struct.pack(">I", 65002))
NEXT_HOP = attr(3, bytes([198, 18, 0, 2]))
BASE = ORIGIN + AS_PATH + NEXT_HOP
BASE_AS2 = ORIGIN + attr(2, b"\x02\x01" + struct.pack(">H", 65002)) + NEXT_HOP
P1 = prefix_from_text("10.1.0.0/16")[1]
P2 = prefix_from_text("10.2.3.0/24")[1]
NLRI = P1 + P2


def update(attrs: bytes, nlri: bytes = NLRI, withdrawn: bytes = b"") -> bytes:
    body = (
        struct.pack(">H", len(withdrawn)) + withdrawn + struct.pack(">H", len(attrs)) + attrs + nlri
    )
    return msg(2, body)


def mp_reach_v6(nh: bytes = bytes(15) + b"\x01", nlri: bytes | None = None) -> bytes:
    if nlri is None:
        nlri = prefix_from_text("2001:db8::/32")[1]
    return attr(14, struct.pack(">HBB", 2, 1, len(nh)) + nh + b"\x00" + nlri)


def fails(data: bytes, ctx: SessionContext = CTX) -> BgpError:
    with pytest.raises(BgpError) as info:
        decode_message(data, ctx)
    return info.value


def assert_withdraws(err: BgpError, prefixes: set[bytes]) -> None:
    assert isinstance(err, UpdateMessageError)
    assert err.action == Action.TREAT_AS_WITHDRAW
    got = {p for u in err.updates for p in u.withdrawn}
    got |= {p for u in err.updates if u.mp_unreach for p in u.mp_unreach.withdrawn}
    assert got == prefixes
    assert all(not u.nlri and u.mp_reach is None for u in err.updates)


# --- RFC 4271 §6.1 Message Header error handling -----------------------------------


def test_6_1_marker_not_all_ones_is_connection_not_synchronized() -> None:
    data = b"\xfe" + msg(4, b"")[1:]
    err = fails(data)
    assert isinstance(err, MessageHeaderError)
    assert (err.code, err.subcode) == (1, MessageHeaderSubcode.CONNECTION_NOT_SYNCHRONIZED)


@pytest.mark.parametrize(
    ("mtype", "length"),
    [
        (4, 18),  # shorter than a header
        (4, 20),  # KEEPALIVE is exactly 19
        (1, 28),  # OPEN is at least 29
        (2, 22),  # UPDATE is at least 23
        (3, 20),  # NOTIFICATION is at least 21
        (5, 22),  # ROUTE-REFRESH is at least 23
        (2, 4097),  # over 4096 without RFC 8654
    ],
)
def test_6_1_bad_message_length_carries_the_length_field(mtype: int, length: int) -> None:
    data = MARKER + struct.pack(">HB", length, mtype) + bytes(max(0, length - 19))
    err = fails(data)
    assert (err.code, err.subcode) == (1, MessageHeaderSubcode.BAD_MESSAGE_LENGTH)
    assert err.data == struct.pack(">H", length)


def test_6_1_extended_message_allows_65535_octets_after_negotiation() -> None:
    prefixes = b"".join(bytes([24, 10, i >> 8, i & 0xFF]) for i in range(2000))
    data = update(BASE, prefixes)
    assert len(data) > 4096
    assert fails(data).subcode == MessageHeaderSubcode.BAD_MESSAGE_LENGTH
    decoded = decode_message(data, SessionContext(extended_message=True))
    assert isinstance(decoded, Update) and len(decoded.nlri) == 2000


def test_6_1_bad_message_type_carries_the_type() -> None:
    err = fails(MARKER + b"\x00\x13\x09")
    assert (err.code, err.subcode, err.data) == (1, MessageHeaderSubcode.BAD_MESSAGE_TYPE, b"\x09")


# --- RFC 4271 §6.2 OPEN message error handling ----------------------------------------


def open_body(
    version: int = 4,
    my_as: int = 65002,
    hold: int = 90,
    bgp_id: int = 0xC6120002,
    params: bytes = b"",
) -> bytes:
    return struct.pack(">BHHIB", version, my_as, hold, bgp_id, len(params)) + params


def test_6_2_unsupported_version_names_the_version_we_support() -> None:
    err = fails(msg(1, open_body(version=3)))
    assert isinstance(err, OpenMessageError)
    assert (err.subcode, err.data) == (OpenSubcode.UNSUPPORTED_VERSION_NUMBER, b"\x00\x04")


@pytest.mark.parametrize("hold", [1, 2])
def test_6_2_hold_time_of_one_or_two_seconds_is_unacceptable(hold: int) -> None:
    assert fails(msg(1, open_body(hold=hold))).subcode == OpenSubcode.UNACCEPTABLE_HOLD_TIME


@pytest.mark.parametrize("hold", [0, 3])
def test_6_2_hold_time_zero_or_three_is_accepted(hold: int) -> None:
    assert decode_message(msg(1, open_body(hold=hold))).hold_time == hold  # type: ignore[attr-defined]


def test_6_2_bgp_identifier_zero_is_bad() -> None:
    assert fails(msg(1, open_body(bgp_id=0))).subcode == OpenSubcode.BAD_BGP_IDENTIFIER


def test_6_2_unknown_optional_parameter_is_unsupported() -> None:
    err = fails(msg(1, open_body(params=b"\x01\x02\xab\xcd")))
    assert err.subcode == OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER


def test_6_2_optional_parameters_overrunning_the_message() -> None:
    body = struct.pack(">BHHIB", 4, 65002, 90, 1, 10) + b"\x02\x02\x41\x04"
    assert fails(msg(1, body)).subcode == OpenSubcode.UNSPECIFIC


def test_6_2_capability_overrunning_its_parameter() -> None:
    assert (
        fails(msg(1, open_body(params=b"\x02\x03\x41\x04\x00"))).subcode == OpenSubcode.UNSPECIFIC
    )


def test_6_2_malformed_known_capability_carries_it() -> None:
    # A 4-octet AS capability must hold 4 octets (RFC 6793 §3).
    err = fails(msg(1, open_body(params=b"\x02\x04\x41\x02\x00\x01")))
    assert (err.subcode, err.data) == (OpenSubcode.UNSPECIFIC, b"\x41\x02\x00\x01")


def test_6_2_unknown_capability_is_kept_not_refused() -> None:
    decoded = decode_message(msg(1, open_body(params=b"\x02\x04\xee\x02\xab\xcd")))
    assert [(c.code, c.encode_value()) for c in decoded.capabilities] == [(0xEE, b"\xab\xcd")]  # type: ignore[attr-defined]


def test_6_2_rfc9072_extended_parameters() -> None:
    caps = b"\x01\x04\x00\x01\x00\x01" * 50  # 300 octets of capabilities
    params = struct.pack(">BH", 2, len(caps)) + caps
    body = (
        struct.pack(">BHHIB", 4, 65002, 90, 1, 255) + struct.pack(">BH", 255, len(params)) + params
    )
    decoded = decode_message(msg(1, body))
    assert len(decoded.capabilities) == 50  # type: ignore[attr-defined]


# --- RFC 4271 §6.3 / RFC 7606 UPDATE error handling -----------------------------------


def test_6_3_withdrawn_length_overrun_is_malformed_attribute_list() -> None:
    body = struct.pack(">H", 50) + b"\x00\x00"
    err = fails(msg(2, body))
    assert (err.subcode, err.action) == (
        UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
        Action.SESSION_RESET,
    )


def test_6_3_attribute_length_overrun_is_malformed_attribute_list() -> None:
    body = struct.pack(">HH", 0, 200) + BASE
    err = fails(msg(2, body))
    assert (err.subcode, err.action) == (
        UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
        Action.SESSION_RESET,
    )


def test_6_3_invalid_network_field_resets_the_session() -> None:
    err = fails(update(BASE, b"\x21\x0a\x00\x00\x00\x00"))  # /33 in IPv4
    assert (err.subcode, err.action) == (UpdateSubcode.INVALID_NETWORK_FIELD, Action.SESSION_RESET)


def test_6_3_truncated_prefix_in_withdrawn_routes_resets_the_session() -> None:
    err = fails(update(b"", b"", withdrawn=b"\x18\x0a\x01"))
    assert (err.subcode, err.action) == (UpdateSubcode.INVALID_NETWORK_FIELD, Action.SESSION_RESET)


def test_6_3_pad_bits_are_cleared_not_refused() -> None:
    # RFC 4271 §4.3: "the value of trailing bits is irrelevant".
    decoded = decode_message(update(BASE, b"\x17\x0a\x01\x03"))
    assert decoded.nlri == (b"\x17\x0a\x01\x02",)  # type: ignore[attr-defined]


def test_6_3_unrecognized_well_known_attribute_resets_the_session() -> None:
    bad = attr(99, b"\x01", flags=0x40)
    err = fails(update(BASE + bad))
    assert (err.subcode, err.action) == (
        UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
        Action.SESSION_RESET,
    )
    assert err.data == bad


def test_6_3_missing_well_known_attribute_names_it() -> None:
    err = fails(update(ORIGIN + NEXT_HOP))
    assert err.subcode == UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE
    assert err.data == b"\x02"
    assert_withdraws(err, {P1, P2})


def test_6_3_nlri_without_any_attribute_is_treat_as_withdraw() -> None:
    err = fails(update(b""))
    assert err.subcode == UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE
    assert_withdraws(err, {P1, P2})


def test_6_3_next_hop_not_required_without_ipv4_nlri() -> None:
    decoded = decode_message(update(ORIGIN + AS_PATH + mp_reach_v6(), b""))
    assert isinstance(decoded, Update) and decoded.mp_reach is not None


def test_6_3_withdrawal_only_update_needs_no_attributes() -> None:
    decoded = decode_message(update(b"", b"", withdrawn=NLRI))
    assert decoded.withdrawn == (P1, P2)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("code", "bad_flags"),
    [(1, 0xC0), (2, 0x80), (3, 0x00), (4, 0x40), (5, 0xC0), (8, 0x80), (16, 0x40), (32, 0x80)],
)
def test_7606_3c_attribute_flags_conflict_is_treat_as_withdraw(code: int, bad_flags: int) -> None:
    values = {
        1: b"\x00",
        2: b"",
        3: bytes([198, 18, 0, 2]),
        4: bytes(4),
        5: bytes(4),
        8: bytes(4),
        16: bytes(8),
        32: bytes(12),
    }
    rest = {1: ORIGIN, 2: AS_PATH, 3: NEXT_HOP}
    attrs = b"".join(v for c, v in rest.items() if c != code) + attr(code, values[code], bad_flags)
    err = fails(update(attrs))
    assert err.subcode in (
        UpdateSubcode.ATTRIBUTE_FLAGS_ERROR,
        UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
    )
    assert any(f.subcode == UpdateSubcode.ATTRIBUTE_FLAGS_ERROR for f in err.faults)  # type: ignore[attr-defined]
    assert_withdraws(err, {P1, P2})


def test_7606_3g_repeated_attribute_keeps_the_first() -> None:
    decoded = decode_message(
        update(BASE + attr(4, b"\x00\x00\x00\x07") + attr(4, b"\x00\x00\x00\x09"))
    )
    assert decoded.attributes.med == 7  # type: ignore[attr-defined]


def test_7606_3g_repeated_mp_reach_resets_the_session() -> None:
    err = fails(update(ORIGIN + AS_PATH + mp_reach_v6() + mp_reach_v6(), b""))
    assert (err.subcode, err.action) == (
        UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
        Action.SESSION_RESET,
    )


def test_7606_4_attribute_overrunning_the_block_is_treat_as_withdraw() -> None:
    # The last attribute claims 9 octets; the block ends after 4.
    attrs = BASE + b"\x80\x04\x09\x00\x00\x00\x01"
    err = fails(update(attrs))
    assert err.subcode == UpdateSubcode.ATTRIBUTE_LENGTH_ERROR
    assert_withdraws(err, {P1, P2})


def test_7606_4_truncated_attribute_header_is_treat_as_withdraw() -> None:
    err = fails(update(BASE + b"\x80\x04"))
    assert err.subcode == UpdateSubcode.MALFORMED_ATTRIBUTE_LIST
    assert_withdraws(err, {P1, P2})


def test_7606_7_1_origin_bad_length() -> None:
    err = fails(update(attr(1, b"\x00\x00") + AS_PATH + NEXT_HOP))
    assert (err.subcode, err.data) == (UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, attr(1, b"\x00\x00"))
    assert_withdraws(err, {P1, P2})


def test_7606_7_1_origin_undefined_value() -> None:
    err = fails(update(attr(1, b"\x03") + AS_PATH + NEXT_HOP))
    assert err.subcode == UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE
    assert_withdraws(err, {P1, P2})


@pytest.mark.parametrize(
    "value",
    [
        b"\x05\x01" + bytes(4),  # undefined segment type
        b"\x02\x00",  # zero-length segment
        b"\x02\x02" + bytes(4),  # segment overruns the attribute
        b"\x02",  # truncated segment header
    ],
)
def test_7606_7_2_malformed_as_path(value: bytes) -> None:
    err = fails(update(ORIGIN + attr(2, value) + NEXT_HOP))
    assert err.subcode == UpdateSubcode.MALFORMED_AS_PATH
    assert_withdraws(err, {P1, P2})


def test_7606_7_2_as_path_in_two_octet_form_for_an_old_speaker() -> None:
    decoded = decode_message(update(ORIGIN + attr(2, b"\x02\x02\xfd\xea\x5b\xa0") + NEXT_HOP), AS2)
    assert decoded.attributes.as_path.segments[0].asns == (65002, 23456)  # type: ignore[attr-defined]


def test_7606_7_3_next_hop_bad_length() -> None:
    err = fails(update(ORIGIN + AS_PATH + attr(3, b"\x0a\x00\x00")))
    assert err.subcode == UpdateSubcode.ATTRIBUTE_LENGTH_ERROR
    assert_withdraws(err, {P1, P2})


@pytest.mark.parametrize("nh", [b"\x00\x00\x00\x00", b"\xe0\x00\x00\x05", b"\xff\xff\xff\xff"])
def test_7606_7_3_next_hop_semantically_invalid(nh: bytes) -> None:
    err = fails(update(ORIGIN + AS_PATH + attr(3, nh)))
    assert err.subcode == UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE
    assert_withdraws(err, {P1, P2})


@pytest.mark.parametrize("code", [4, 5, 9])
def test_7606_7_4_7_5_7_9_four_octet_attributes_bad_length(code: int) -> None:
    err = fails(update(BASE + attr(code, b"\x00\x00\x01")))
    assert err.subcode == UpdateSubcode.ATTRIBUTE_LENGTH_ERROR
    assert_withdraws(err, {P1, P2})


def test_7606_7_6_atomic_aggregate_bad_length_is_discarded() -> None:
    decoded = decode_message(update(BASE + attr(6, b"\x01")))
    assert isinstance(decoded, Update)
    assert decoded.attributes.atomic_aggregate is False
    assert decoded.nlri == (P1, P2)
    assert [f.action for f in decoded.discarded] == [Action.ATTRIBUTE_DISCARD]


@pytest.mark.parametrize(("ctx", "length"), [(CTX, 6), (AS2, 8)])
def test_7606_7_7_aggregator_bad_length_is_discarded(ctx: SessionContext, length: int) -> None:
    base = BASE if ctx.four_octet_as else BASE_AS2
    decoded = decode_message(update(base + attr(7, bytes(length))), ctx)
    assert isinstance(decoded, Update)
    assert decoded.attributes.aggregator is None and decoded.nlri == (P1, P2)
    assert decoded.discarded[0].subcode == UpdateSubcode.ATTRIBUTE_LENGTH_ERROR


@pytest.mark.parametrize("value", [b"", b"\x00\x01\x00"])
def test_7606_7_8_communities_bad_length(value: bytes) -> None:
    err = fails(update(BASE + attr(8, value)))
    assert_withdraws(err, {P1, P2})


@pytest.mark.parametrize("value", [b"", b"\x01\x02\x03\x04\x05"])
def test_7606_7_10_cluster_list_bad_length(value: bytes) -> None:
    err = fails(update(BASE + attr(10, value)))
    assert_withdraws(err, {P1, P2})


def test_7606_7_11_mp_reach_next_hop_length_disables_the_family() -> None:
    err = fails(update(ORIGIN + AS_PATH + NEXT_HOP + mp_reach_v6(nh=bytes(4))))
    assert isinstance(err, UpdateMessageError)
    assert (err.action, err.family, err.subcode) == (
        Action.AFI_SAFI_DISABLE,
        IPV6_UNICAST,
        UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
    )
    # The IPv4 part of the message is still good and still applied.
    assert [u.nlri for u in err.updates] == [(P1, P2)]


def test_7606_7_11_mp_reach_bad_nlri_disables_the_family() -> None:
    err = fails(update(ORIGIN + AS_PATH + mp_reach_v6(nlri=b"\x81" + bytes(16)), b""))
    assert (err.action, err.family) == (Action.AFI_SAFI_DISABLE, IPV6_UNICAST)  # type: ignore[attr-defined]


def test_7606_7_11_mp_reach_too_short_to_name_a_family_resets() -> None:
    err = fails(update(ORIGIN + AS_PATH + attr(14, b"\x00\x02"), b""))
    assert err.action == Action.SESSION_RESET


def test_7606_7_11_mp_reach_with_wrong_flags_resets() -> None:
    bad = mp_reach_v6()
    bad = bytes([0xC0]) + bad[1:]
    err = fails(update(ORIGIN + AS_PATH + bad, b""))
    assert (err.subcode, err.action) == (UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, Action.SESSION_RESET)


def test_7606_7_12_mp_unreach_bad_nlri_disables_the_family() -> None:
    err = fails(update(attr(15, struct.pack(">HB", 2, 1) + b"\x40\x20"), b""))
    assert (err.action, err.family) == (Action.AFI_SAFI_DISABLE, IPV6_UNICAST)  # type: ignore[attr-defined]
    assert err.updates == ()  # type: ignore[attr-defined]


def test_7606_7_13_unknown_optional_non_transitive_is_dropped() -> None:
    # Traffic Engineering (type 24) is optional non-transitive; we do not implement it.
    decoded = decode_message(update(BASE + attr(24, b"\x01\x02", flags=0x80)))
    assert decoded.attributes.unknown == ()  # type: ignore[attr-defined]


def test_7606_7_14_extended_communities_bad_length() -> None:
    err = fails(update(BASE + attr(16, bytes(7))))
    assert_withdraws(err, {P1, P2})


def test_rfc8092_large_community_bad_length() -> None:
    err = fails(update(BASE + attr(32, bytes(13))))
    assert_withdraws(err, {P1, P2})


def test_rfc9234_otc_bad_length() -> None:
    err = fails(update(BASE + attr(35, bytes(3))))
    assert_withdraws(err, {P1, P2})


def test_rfc6793_malformed_as4_path_is_discarded() -> None:
    decoded = decode_message(update(BASE_AS2 + attr(17, b"\x02\x01\x00"), b""), AS2)
    assert isinstance(decoded, Update) and decoded.attributes.as4_path is None
    assert decoded.discarded[0].action == Action.ATTRIBUTE_DISCARD


def test_rfc6793_confederation_segments_are_dropped_from_as4_path() -> None:
    # AS_PATH 23456 100; AS4_PATH (9) 4200000000 100: the confederation part goes,
    # the rest rebuilds the real path (RFC 6793 §6, §4.2.3).
    as_path = attr(2, b"\x02\x02" + struct.pack(">HH", 23456, 100))
    as4 = attr(
        17, b"\x03\x01" + struct.pack(">I", 9) + b"\x02\x02" + struct.pack(">II", 4200000000, 100)
    )
    decoded = decode_message(update(ORIGIN + as_path + NEXT_HOP + as4), AS2)
    a = decoded.attributes  # type: ignore[attr-defined]
    assert a.as4_path.segments == (AsPathSegment(2, (4200000000, 100)),)
    assert reconstruct(a.as_path, a.as4_path) == AsPath.sequence(4200000000, 100)


def test_rfc6793_4_1_as4_attributes_from_a_new_speaker_are_discarded() -> None:
    as4 = attr(17, b"\x02\x01" + struct.pack(">I", 7))
    decoded = decode_message(update(BASE + as4))
    assert isinstance(decoded, Update)
    assert decoded.attributes.as4_path is None and decoded.discarded == ()
    assert b"\xc0\x11" not in encode_message(decoded)
    # ... and never sent to a NEW speaker even when a value holds one.
    attrs = decoded.attributes.replace(as4_path=AsPath.sequence(7))
    assert b"\xc0\x11" not in encode_message(Update(attributes=attrs, nlri=(P1,)))
    assert b"\xc0\x11" in encode_message(Update(attributes=attrs, nlri=(P1,)), AS2)


def test_rfc6793_malformed_as4_aggregator_is_discarded() -> None:
    decoded = decode_message(update(BASE_AS2 + attr(18, bytes(6))), AS2)
    assert decoded.attributes.as4_aggregator is None  # type: ignore[attr-defined]


def test_unknown_optional_transitive_passes_with_partial_bit() -> None:
    decoded = decode_message(update(BASE + attr(99, b"\xab", flags=0xC0)))
    (unknown,) = decoded.attributes.unknown  # type: ignore[attr-defined]
    assert (unknown.type, unknown.flags, unknown.value) == (99, 0xE0, b"\xab")


def test_7606_3_strongest_action_wins() -> None:
    # A discardable fault and a treat-as-withdraw fault: treat-as-withdraw wins ...
    err = fails(update(BASE + attr(6, b"\x01") + attr(8, b"\x00")))
    assert err.action == Action.TREAT_AS_WITHDRAW
    assert sorted(f.action for f in err.faults) == [
        Action.ATTRIBUTE_DISCARD,
        Action.TREAT_AS_WITHDRAW,
    ]  # type: ignore[attr-defined]
    # ... and a session-reset fault beats both.
    err = fails(update(BASE + attr(6, b"\x01") + attr(8, b"\x00") + attr(99, b"", flags=0x40)))
    assert err.action == Action.SESSION_RESET
    assert err.subcode == UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE


def test_7606_treat_as_withdraw_covers_mp_reach_and_mp_unreach() -> None:
    v6a = prefix_from_text("2001:db8::/32")[1]
    v6b = prefix_from_text("2001:db8:1::/48")[1]
    unreach = attr(15, struct.pack(">HB", 2, 1) + v6b)
    err = fails(
        update(ORIGIN + attr(2, b"\x09\x01" + bytes(4)) + unreach + mp_reach_v6(nlri=v6a), b"")
    )
    assert_withdraws(err, {v6a, v6b})


def test_7606_afi_safi_disable_with_treat_as_withdraw_withdraws_the_rest() -> None:
    err = fails(update(ORIGIN + AS_PATH + attr(3, b"\x00\x00\x00\x00") + mp_reach_v6(nh=bytes(3))))
    assert err.action == Action.AFI_SAFI_DISABLE
    assert [set(u.withdrawn) for u in err.updates] == [{P1, P2}]  # type: ignore[attr-defined]


def test_error_converts_to_its_notification() -> None:
    err = fails(update(ORIGIN + AS_PATH + attr(3, b"\x0a\x00\x00")))
    note = Notification.from_error(err)
    assert (note.code, note.subcode, note.data) == (
        ErrorCode.UPDATE_MESSAGE,
        5,
        attr(3, b"\x0a\x00\x00"),
    )


# --- RFC 7313 §5 ROUTE-REFRESH ---------------------------------------------------------


@pytest.mark.parametrize("subtype", [1, 2])
def test_7313_borr_eorr_with_wrong_length(subtype: int) -> None:
    data = msg(5, struct.pack(">HBB", 1, subtype, 1) + b"\x00")
    err = fails(data)
    assert isinstance(err, RouteRefreshError)
    assert (err.code, err.subcode, err.data) == (7, 1, data)


def test_7313_unknown_subtype_decodes_for_the_session_to_ignore() -> None:
    decoded = decode_message(msg(5, struct.pack(">HBB", 1, 9, 1)))
    assert decoded.subtype == 9  # type: ignore[attr-defined]
    assert decoded.family == IPV4_UNICAST  # type: ignore[attr-defined]


# --- findings of the codec review ---------------------------------------------------


def test_repeated_faulty_attribute_sets_raise_distinct_errors() -> None:
    # The attribute cache must not hand the same exception object to two UPDATEs.
    bad = BASE + attr(4, b"\x00\x00\x01")
    ctx = SessionContext()
    errors = [fails(update(bad, nlri), ctx) for nlri in (P1, P2)]
    assert errors[0] is not errors[1]
    assert_withdraws(errors[0], {P1})
    assert_withdraws(errors[1], {P2})


def test_notification_for_a_huge_route_refresh_still_encodes() -> None:
    data = msg(5, struct.pack(">HBB", 1, 1, 1) + bytes(4000))
    note = Notification.from_error(fails(data))
    assert len(encode_message(note)) <= 4096
    assert len(encode_message(Notification.hard_reset(note))) <= 4096


def test_attribute_cache_is_bounded_by_octets() -> None:
    cache = AttributeCache()
    for i in range(ATTRIBUTE_CACHE_BYTES // 1000 + 10):
        cache.put(i.to_bytes(4, "big") * 250, i)
    assert cache.octets <= ATTRIBUTE_CACHE_BYTES
    cache.put(bytes(5000), "too long")
    assert cache.get(bytes(5000)) is None


def test_replaced_context_does_not_share_the_cache() -> None:
    ctx = SessionContext()
    assert replace(ctx, four_octet_as=False).attribute_cache is not ctx.attribute_cache


@pytest.mark.parametrize(
    "attrs",
    [
        attr(6, b"\x01"),  # a discarded ATOMIC_AGGREGATE
        attr(7, bytes(3)),  # a discarded AGGREGATOR
        attr(24, b"\x01", flags=0x80),  # a dropped optional non-transitive attribute
    ],
)
def test_4724_end_of_rib_is_only_the_bare_marker(attrs: bytes) -> None:
    v4 = decode_message(update(attrs, b""))
    assert v4.end_of_rib_family is None  # type: ignore[attr-defined]
    unreach = attr(15, struct.pack(">HB", 2, 1))
    v6 = decode_message(update(unreach + attrs, b""))
    assert v6.end_of_rib_family is None  # type: ignore[attr-defined]
    assert decode_message(update(unreach, b"")).end_of_rib_family == IPV6_UNICAST  # type: ignore[attr-defined]


@pytest.mark.parametrize("nh", [attr(3, b"\x00\x00\x00\x00"), attr(3, bytes(5))])
def test_bad_next_hop_without_ipv4_nlri_is_ignored(nh: bytes) -> None:
    decoded = decode_message(update(ORIGIN + AS_PATH + nh + mp_reach_v6(), b""))
    assert isinstance(decoded, Update) and decoded.mp_reach is not None
    assert decoded.mp_reach.nlri == (prefix_from_text("2001:db8::/32")[1],)
    assert [f.action for f in decoded.discarded] == [Action.ATTRIBUTE_DISCARD]


def test_partial_bit_only_kept_on_optional_transitive_attributes() -> None:
    wire = update(attr(1, b"\x00", flags=0x60) + AS_PATH + NEXT_HOP + attr(8, bytes(4), flags=0xE0))
    out = encode_message(decode_message(wire))
    assert attr(1, b"\x00", flags=0x40) in out
    assert attr(8, bytes(4), flags=0xE0) in out


def test_7606_3c_flags_error_on_aggregator_is_treat_as_withdraw() -> None:
    err = fails(update(BASE + attr(7, bytes(8), flags=0x40)))
    assert err.subcode == UpdateSubcode.ATTRIBUTE_FLAGS_ERROR
    assert_withdraws(err, {P1, P2})

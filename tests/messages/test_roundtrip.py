"""hypothesis round trips: encode then decode gives the value back, and the bytes
re-encode identically, for every message, capability and attribute."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.messages import (
    KEEPALIVE,
    Capability,
    Notification,
    Open,
    PathAttributes,
    RouteRefresh,
    SessionContext,
    Update,
    decode_message,
    encode_message,
)
from bgpd.messages.attribute_codec import decode_attribute_block, encode_attribute_block
from bgpd.messages.capabilities import decode_capabilities

from .strategies import (
    capabilities,
    contexts,
    notifications,
    opens,
    path_attributes,
    route_refreshes,
    updates,
)

BIG = SessionContext(extended_message=True)


@given(capabilities)
def test_capability_round_trip(cap: Capability) -> None:
    assert decode_capabilities(cap.encode()) == (cap,)


@given(opens)
def test_open_round_trip(msg: Open) -> None:
    data = encode_message(msg)
    back = decode_message(data)
    assert back == msg
    assert encode_message(back) == data


@given(path_attributes)
def test_attributes_round_trip(attrs: PathAttributes) -> None:
    ctx = SessionContext(four_octet_as=True)
    block = decode_attribute_block(encode_attribute_block(attrs, True), ctx)
    assert block.faults == ()
    # RFC 6793 §4.1: AS4_PATH and AS4_AGGREGATOR are never sent between NEW speakers.
    assert block.attributes == attrs.replace(as4_path=None, as4_aggregator=None)


@settings(max_examples=300)
@given(st.data())
def test_update_round_trip(data: st.DataObject) -> None:
    ctx = data.draw(contexts())
    ctx = SessionContext(ctx.four_octet_as, ctx.add_path_receive, ctx.add_path_send, True)
    msg: Update = data.draw(updates(ctx))
    wire = encode_message(msg, ctx)
    back = decode_message(wire, ctx)
    assert back == msg
    assert encode_message(back, ctx) == wire


@given(notifications)
def test_notification_round_trip(msg: Notification) -> None:
    assert decode_message(encode_message(msg)) == msg


@given(route_refreshes)
def test_route_refresh_round_trip(msg: RouteRefresh) -> None:
    assert decode_message(encode_message(msg, BIG), BIG) == msg


def test_keepalive_round_trip() -> None:
    data = encode_message(KEEPALIVE)
    assert data == b"\xff" * 16 + b"\x00\x13\x04"
    assert decode_message(data) == KEEPALIVE

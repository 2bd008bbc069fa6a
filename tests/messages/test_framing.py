"""The stream buffer yields the same messages however the bytes arrive (RFC 4271 §4.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.messages import (
    KEEPALIVE,
    MessageBuffer,
    MessageHeaderError,
    MessageHeaderSubcode,
    Notification,
    decode_message,
    encode_message,
    iter_messages,
)

from .golden import NAMES, load


def _stream() -> bytes:
    return load("bird2-ebgp").stream


def _all(buffer: MessageBuffer) -> list[tuple[int, bytes]]:
    return list(buffer.messages())


def test_whole_stream_at_once() -> None:
    stream = _stream()
    buf = MessageBuffer(65535)
    buf.feed(stream)
    got = _all(buf)
    assert b"".join(m for _t, m in got) == stream
    assert len(buf) == 0
    assert got[0][0] == 1 and got[-1][0] == 3


def test_one_byte_at_a_time() -> None:
    stream = _stream()
    buf = MessageBuffer(65535)
    got = []
    for i in range(len(stream)):
        buf.feed(stream[i : i + 1])
        got += _all(buf)
    assert b"".join(m for _t, m in got) == stream


@given(st.lists(st.integers(1, 300), min_size=1, max_size=40))
def test_any_split(cuts: list[int]) -> None:
    stream = _stream()
    buf = MessageBuffer(65535)
    got = []
    pos = 0
    for cut in cuts:
        buf.feed(stream[pos : pos + cut])
        pos += cut
        got += _all(buf)
    buf.feed(stream[pos:])
    got += _all(buf)
    assert b"".join(m for _t, m in got) == stream


def test_trailing_partial_message_waits_in_the_buffer() -> None:
    ka = encode_message(KEEPALIVE)
    buf = MessageBuffer()
    buf.feed(ka + ka[:10])
    assert _all(buf) == [(4, ka)]
    assert len(buf) == 10
    buf.feed(ka[10:])
    assert _all(buf) == [(4, ka)]


def test_trailing_bytes_in_a_complete_capture_are_an_error() -> None:
    ka = encode_message(KEEPALIVE)
    with pytest.raises(MessageHeaderError):
        list(iter_messages(ka + b"\xff\xff"))


def test_decode_message_refuses_trailing_bytes() -> None:
    ka = encode_message(KEEPALIVE)
    with pytest.raises(MessageHeaderError) as info:
        decode_message(ka + b"\x00")
    assert info.value.subcode == MessageHeaderSubcode.BAD_MESSAGE_LENGTH


def test_header_checked_before_the_body_arrives() -> None:
    # A bad length is reported as soon as the header is in, not after 4096 octets.
    buf = MessageBuffer()
    buf.feed(b"\xff" * 16 + b"\x20\x00\x02")
    with pytest.raises(MessageHeaderError) as info:
        _all(buf)
    assert info.value.data == b"\x20\x00"


def test_buffer_can_be_fed_while_iterating() -> None:
    ka = encode_message(KEEPALIVE)
    note = encode_message(Notification(6, 2))
    buf = MessageBuffer()
    buf.feed(ka)
    seen = []
    for mtype, _m in buf.messages():
        seen.append(mtype)
        if mtype == 4:
            buf.feed(note[:5])  # shorter than what was consumed: the buffer shrinks
            buf.feed(note[5:])
    assert seen == [4, 3]
    assert len(buf) == 0


@pytest.mark.parametrize("name", NAMES)
def test_every_capture_frames_cleanly(name: str) -> None:
    cap = load(name)
    offsets = [m["offset"] for m in cap.meta["messages"]]
    pos = 0
    got = []
    for _t, m in iter_messages(cap.stream, 65535):
        got.append(pos)
        pos += len(m)
    assert got == offsets

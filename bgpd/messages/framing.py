"""Framing: the 19-octet header and a streaming buffer of whole messages.

RFC 4271 §4.1: a message is a 16-octet all-ones marker, a 2-octet length that
counts the header, and a 1-octet type.  ``check_header`` applies every §6.1 check
(marker, length range per type, known type) before a body is looked at, so the
body decoders may trust that they hold exactly one whole message of a known type.

``MessageBuffer`` is the one framing implementation: the session driver feeds it
whatever the socket delivered and takes out ``(type, message bytes)`` pairs, however
the bytes were split.  It never copies a message more than once.
"""

from __future__ import annotations

from collections.abc import Iterator

from .codes import HEADER_LEN, MARKER, MAX_MESSAGE_LEN, MessageHeaderSubcode, MessageType
from .errors import MessageHeaderError

#: (minimum, maximum or None for "the session maximum") total length per type,
#: from RFC 4271 §4.2-4.5 and RFC 2918 §3.
LENGTH_LIMITS: dict[int, tuple[int, int | None]] = {
    MessageType.OPEN: (29, MAX_MESSAGE_LEN),  # OPEN is exchanged before RFC 8654 applies
    MessageType.UPDATE: (23, None),
    MessageType.NOTIFICATION: (21, None),
    MessageType.KEEPALIVE: (19, 19),
    MessageType.ROUTE_REFRESH: (23, None),
}


def check_header(header: bytes | memoryview, max_length: int = MAX_MESSAGE_LEN) -> tuple[int, int]:
    """Validate a message header; return ``(length, type)`` (RFC 4271 §6.1).

    Raises ``MessageHeaderError``: Connection Not Synchronized for a bad marker, Bad
    Message Length (data: the length field) for a length out of range for its type,
    Bad Message Type (data: the type octet) for an unknown type.
    """
    if header[:16] != MARKER:
        raise MessageHeaderError(
            MessageHeaderSubcode.CONNECTION_NOT_SYNCHRONIZED, b"", "marker is not all ones"
        )
    length = (header[16] << 8) | header[17]
    mtype = header[18]
    limits = LENGTH_LIMITS.get(mtype)
    if limits is None:
        raise MessageHeaderError(
            MessageHeaderSubcode.BAD_MESSAGE_TYPE, bytes([mtype]), f"unknown message type {mtype}"
        )
    low, high = limits
    if length < low or length > (max_length if high is None else min(high, max_length)):
        raise MessageHeaderError(
            MessageHeaderSubcode.BAD_MESSAGE_LENGTH,
            bytes(header[16:18]),
            f"length {length} is invalid for message type {mtype}",
        )
    return length, mtype


class MessageBuffer:
    """Accumulates stream bytes and yields whole, header-checked messages.

    A header fault raises ``MessageHeaderError`` from ``messages()``; the stream
    cannot be resynchronised after that, so the session must reset.
    """

    __slots__ = ("_buf", "_pos", "max_length")

    def __init__(self, max_length: int = MAX_MESSAGE_LEN) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_length = max_length

    def feed(self, data: bytes) -> None:
        """Append bytes as they arrived from the transport."""
        if self._pos:
            # Drop what was consumed before growing, so the buffer stays small.
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def __len__(self) -> int:
        return len(self._buf) - self._pos

    def messages(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(type, whole message bytes)`` for every complete message buffered."""
        buf = self._buf
        # Re-read the length every round: the consumer may feed() between messages.
        while len(buf) - self._pos >= HEADER_LEN:
            end = len(buf)
            pos = self._pos
            # The view is released before yielding, so feed() may resize the buffer.
            with memoryview(buf) as view:
                length, mtype = check_header(view[pos : pos + HEADER_LEN], self.max_length)
                if end - pos < length:
                    return
                message = bytes(view[pos : pos + length])
            self._pos = pos + length
            yield mtype, message


def iter_messages(stream: bytes, max_length: int = MAX_MESSAGE_LEN) -> Iterator[tuple[int, bytes]]:
    """Split a complete capture into messages; trailing partial bytes are an error."""
    buffer = MessageBuffer(max_length)
    buffer.feed(stream)
    yield from buffer.messages()
    if len(buffer):
        raise MessageHeaderError(
            MessageHeaderSubcode.BAD_MESSAGE_LENGTH, b"", f"{len(buffer)} trailing octets"
        )

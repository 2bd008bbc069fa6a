"""The public entry points: one whole message in, one typed message out, and back.

``decode_message`` checks the header (RFC 4271 §6.1) and hands the body to the
message class found in ``MESSAGE_CLASSES``; ``encode_message`` is its inverse.
Decoders raise only ``BgpError``: a body too short for a struct field is a length
fault of that message type, never an ``IndexError`` leaking out.
"""

from __future__ import annotations

import struct

from .codes import HEADER_LEN, MARKER, MessageHeaderSubcode, MessageType
from .context import SessionContext
from .errors import MessageHeaderError, RouteRefreshError
from .framing import LENGTH_LIMITS, check_header
from .message import Keepalive, Message
from .notification import Notification
from .open import Open
from .route_refresh import RouteRefresh
from .update import Update

_ENCODE_DEFAULT = SessionContext()  # encoding never touches the attribute cache

MESSAGE_CLASSES: dict[int, type[Message]] = {
    MessageType.OPEN: Open,
    MessageType.UPDATE: Update,
    MessageType.NOTIFICATION: Notification,
    MessageType.KEEPALIVE: Keepalive,
    MessageType.ROUTE_REFRESH: RouteRefresh,
}


def decode_message(data: bytes, context: SessionContext | None = None) -> Message:
    """Decode exactly one whole message, header included (RFC 4271 §4).

    Without a context, a fresh default one: no attribute cache is shared between
    callers.  Sessions pass their own, which also shares decoded attribute sets.
    """
    if context is None:
        context = SessionContext()
    if len(data) < HEADER_LEN:
        raise MessageHeaderError(
            MessageHeaderSubcode.BAD_MESSAGE_LENGTH,
            b"",
            f"{len(data)} octets is shorter than a header",
        )
    length, mtype = check_header(data[:HEADER_LEN], context.max_message_length)
    if length != len(data):
        raise MessageHeaderError(
            MessageHeaderSubcode.BAD_MESSAGE_LENGTH,
            bytes(data[16:18]),
            f"length field {length} but {len(data)} octets given",
        )
    body = bytes(data[HEADER_LEN:])
    try:
        return MESSAGE_CLASSES[mtype].decode_body(body, context)
    except RouteRefreshError as e:
        # RFC 7313 §5: the data of this error is the whole message.
        e.data = bytes(data)
        raise


def encode_message(message: Message, context: SessionContext | None = None) -> bytes:
    """Encode one message with its header; ``ValueError`` if it exceeds the size
    the session allows (RFC 4271 §4.1, RFC 8654 §4)."""
    if context is None:
        context = _ENCODE_DEFAULT
    body = message.encode_body(context)
    length = HEADER_LEN + len(body)
    low, high = LENGTH_LIMITS[message.message_type]
    limit = context.max_message_length if high is None else min(high, context.max_message_length)
    if not low <= length <= limit:
        raise ValueError(
            f"{message.message_type.name} of {length} octets is outside {low}..{limit}"
        )
    return MARKER + struct.pack(">HB", length, message.message_type) + body

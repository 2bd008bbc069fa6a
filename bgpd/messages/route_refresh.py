"""ROUTE-REFRESH (RFC 2918 §3) with the BoRR/EoRR subtypes of RFC 7313 §3.2.

The octet RFC 2918 called Reserved is the Message Subtype since RFC 7313.  A
subtype outside 0..2 decodes (the session must ignore it, RFC 7313 §5); subtypes
1 and 2 with a body other than 4 octets are ROUTE-REFRESH Message Error / Invalid
Message Length with the whole message as data (RFC 7313 §5).  Octets after the
first four of any other subtype (ORF entries, RFC 5291) are kept raw.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from .codes import Family, MessageType, RouteRefreshErrorSubcode, RouteRefreshSubtype
from .context import SessionContext
from .errors import RouteRefreshError
from .message import Message


@dataclass(frozen=True, slots=True)
class RouteRefresh(Message):
    """ROUTE-REFRESH: a family and a subtype (normal request, BoRR, EoRR)."""

    message_type: ClassVar[MessageType] = MessageType.ROUTE_REFRESH
    family: Family
    subtype: int = RouteRefreshSubtype.NORMAL
    orf: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.family.afi <= 0xFFFF or not 0 <= self.family.safi <= 255:
            raise ValueError("AFI fits 16 bits and SAFI 8 bits")
        if not 0 <= self.subtype <= 255:
            raise ValueError("subtype fits 8 bits")
        if self.orf and self.subtype in (RouteRefreshSubtype.BORR, RouteRefreshSubtype.EORR):
            raise ValueError("BoRR and EoRR messages have a 4-octet body")

    def encode_body(self, context: SessionContext) -> bytes:
        return struct.pack(">HBB", self.family.afi, self.subtype, self.family.safi) + self.orf

    @classmethod
    def decode_body(cls, body: bytes, context: SessionContext) -> RouteRefresh:
        afi, subtype, safi = struct.unpack_from(">HBB", body)
        extra = body[4:]
        if extra and subtype in (RouteRefreshSubtype.BORR, RouteRefreshSubtype.EORR):
            raise RouteRefreshError(
                RouteRefreshErrorSubcode.INVALID_MESSAGE_LENGTH,
                b"",  # the codec fills in the whole message
                f"subtype {subtype} message body is {len(body)} octets, not 4",
            )
        return cls(Family(afi, safi), subtype, extra)

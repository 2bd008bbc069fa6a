"""OPEN (RFC 4271 §4.2) with RFC 9072 extended optional parameters.

The only optional parameter in use is Capabilities (RFC 5492); each one on the
wire is kept as its own tuple of capabilities, so that a message re-encodes to the
bytes it came from whether the sender put all capabilities in one parameter (BIRD)
or one per parameter (GoBGP, FRR).  ``capabilities`` flattens them.

The checks a decoder can make without configuration are made here (§6.2):
version, hold time 1 or 2, BGP Identifier zero, unknown optional parameters.
Peer AS, identifier collisions and required capabilities are the session's checks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from .capabilities import Capability, FourOctetAs, decode_capabilities, encode_capabilities
from .codes import AS_TRANS, BGP_VERSION, MessageType, OpenSubcode, OptionalParameterType
from .context import SessionContext
from .errors import OpenMessageError
from .message import Message

C = TypeVar("C", bound=Capability)


@dataclass(frozen=True, slots=True)
class Open(Message):
    """OPEN: version, My AS (2 octets on the wire), Hold Time, BGP Identifier, capabilities."""

    message_type: ClassVar[MessageType] = MessageType.OPEN
    my_as: int
    hold_time: int
    bgp_id: int
    parameters: tuple[tuple[Capability, ...], ...] = ()
    version: int = BGP_VERSION
    # How the sender laid the parameters out (RFC 9072); a wire hint, not a value.
    extended_parameters: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.my_as <= 0xFFFF:
            raise ValueError(f"My AS {self.my_as} does not fit 16 bits; use AS_TRANS")
        if not 0 <= self.hold_time <= 0xFFFF or self.hold_time in (1, 2):
            raise ValueError(f"hold time {self.hold_time} is not 0 or 3..65535")
        if not 0 < self.bgp_id <= 0xFFFFFFFF:
            raise ValueError("BGP Identifier must be a non-zero 32-bit value")
        if not 0 <= self.version <= 255:
            raise ValueError("version fits 8 bits")

    @classmethod
    def build(
        cls, asn: int, hold_time: int, bgp_id: int, capabilities: tuple[Capability, ...]
    ) -> Open:
        """An OPEN for ``asn`` (AS_TRANS in My AS when it needs 4 octets, RFC 6793 §3)."""
        return cls(
            my_as=asn if asn <= 0xFFFF else AS_TRANS,
            hold_time=hold_time,
            bgp_id=bgp_id,
            parameters=(capabilities,) if capabilities else (),
        )

    @property
    def capabilities(self) -> tuple[Capability, ...]:
        """Every capability, in wire order."""
        return tuple(c for param in self.parameters for c in param)

    def find(self, kind: type[C]) -> C | None:
        """The first capability of this class, if advertised."""
        for param in self.parameters:
            for cap in param:
                if isinstance(cap, kind):
                    found: C = cap
                    return found
        return None

    def find_all(self, kind: type[C]) -> list[C]:
        """Every capability of this class (RFC 5492 §4 allows repeats)."""
        return [c for param in self.parameters for c in param if isinstance(c, kind)]

    @property
    def asn(self) -> int:
        """The speaker's AS: from the 4-octet AS capability if present (RFC 6793 §4.1)."""
        four = self.find(FourOctetAs)
        return four.asn if four is not None else self.my_as

    def encode_body(self, context: SessionContext) -> bytes:
        values = [encode_capabilities(p) for p in self.parameters]
        cap = OptionalParameterType.CAPABILITIES
        short = sum(2 + len(v) for v in values)
        if not self.extended_parameters and short <= 255 and all(len(v) <= 255 for v in values):
            params = b"".join(bytes((cap, len(v))) + v for v in values)
            head = struct.pack(
                ">BHHIB", self.version, self.my_as, self.hold_time, self.bgp_id, len(params)
            )
            return head + params
        # RFC 9072 §2: Non-Ext OP Len 255, Non-Ext OP Type 255, then a 2-octet length.
        params = b"".join(struct.pack(">BH", cap, len(v)) + v for v in values)
        head = struct.pack(">BHHIB", self.version, self.my_as, self.hold_time, self.bgp_id, 255)
        return (
            head + struct.pack(">BH", OptionalParameterType.EXTENDED_LENGTH, len(params)) + params
        )

    @classmethod
    def decode_body(cls, body: bytes, context: SessionContext) -> Open:
        """Decode and check an OPEN body (RFC 4271 §4.2, §6.2; RFC 9072 §2)."""
        version, my_as, hold, bgp_id, opt_len = struct.unpack_from(">BHHIB", body)
        if version != BGP_VERSION:
            raise OpenMessageError(
                OpenSubcode.UNSUPPORTED_VERSION_NUMBER,
                struct.pack(">H", BGP_VERSION),
                f"version {version} is not supported",
            )
        if hold in (1, 2):
            raise OpenMessageError(
                OpenSubcode.UNACCEPTABLE_HOLD_TIME, b"", f"hold time {hold} is 1 or 2 seconds"
            )
        if bgp_id == 0:
            raise OpenMessageError(OpenSubcode.BAD_BGP_IDENTIFIER, b"", "BGP Identifier is 0")
        rest = body[10:]
        extended = (
            opt_len != 0 and len(rest) >= 1 and rest[0] == OptionalParameterType.EXTENDED_LENGTH
        )
        if extended:
            if len(rest) < 3:
                raise OpenMessageError(OpenSubcode.UNSPECIFIC, b"", "truncated extended parameters")
            opt_len = int.from_bytes(rest[1:3], "big")
            rest = rest[3:]
        if opt_len != len(rest):
            raise OpenMessageError(
                OpenSubcode.UNSPECIFIC,
                b"",
                f"optional parameters length {opt_len} but {len(rest)} octets present",
            )
        head = 3 if extended else 2
        params: list[tuple[Capability, ...]] = []
        i = 0
        while i < len(rest):
            if i + head > len(rest):
                raise OpenMessageError(OpenSubcode.UNSPECIFIC, b"", "truncated optional parameter")
            ptype = rest[i]
            plen = int.from_bytes(rest[i + 1 : i + head], "big")
            value = rest[i + head : i + head + plen]
            if len(value) != plen:
                raise OpenMessageError(
                    OpenSubcode.UNSPECIFIC, b"", f"optional parameter {ptype} overruns the message"
                )
            if ptype != OptionalParameterType.CAPABILITIES:
                raise OpenMessageError(
                    OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER,
                    b"",
                    f"optional parameter type {ptype} is not supported",
                )
            params.append(decode_capabilities(value))
            i += head + plen
        return cls(my_as, hold, bgp_id, tuple(params), version, extended)

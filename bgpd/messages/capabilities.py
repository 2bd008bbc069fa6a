"""OPEN capabilities (RFC 5492) as frozen, validated values.

Each capability class knows its code, decodes its value octets (``decode_value``)
and encodes them (``encode_value``).  ``decode_capabilities`` walks a Capabilities
optional parameter through a dispatch table; a code it does not know becomes an
``UnknownCapability`` holding the raw value, so it survives a round trip.  A known
capability whose value is malformed is an OPEN Message Error (subcode 0) carrying
the capability's octets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from .codes import AddPathMode, CapabilityCode, Family, OpenSubcode
from .errors import OpenMessageError


class Capability:
    """Base of every capability: a code and value octets."""

    __slots__ = ()
    code: ClassVar[int]

    def encode_value(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode_value(cls, value: bytes) -> Capability:
        raise NotImplementedError

    def encode(self) -> bytes:
        """Code, length and value (RFC 5492 §4)."""
        value = self.encode_value()
        if len(value) > 255:
            raise ValueError(f"capability {self.code} value is {len(value)} octets, over 255")
        return bytes((self.code, len(value))) + value


def _malformed(code: int, value: bytes, why: str) -> OpenMessageError:
    return OpenMessageError(
        OpenSubcode.UNSPECIFIC, bytes((code, len(value))) + value, f"capability {code}: {why}"
    )


def _check_u16(name: str, v: int) -> None:
    if not 0 <= v <= 0xFFFF:
        raise ValueError(f"{name} {v} does not fit 16 bits")


@dataclass(frozen=True, slots=True)
class Multiprotocol(Capability):
    """Multiprotocol Extensions (RFC 4760 §8)."""

    code: ClassVar[int] = CapabilityCode.MULTIPROTOCOL
    family: Family

    def __post_init__(self) -> None:
        _check_u16("AFI", self.family.afi)
        if not 0 <= self.family.safi <= 255:
            raise ValueError(f"SAFI {self.family.safi} does not fit 8 bits")

    def encode_value(self) -> bytes:
        return struct.pack(">HBB", self.family.afi, 0, self.family.safi)

    @classmethod
    def decode_value(cls, value: bytes) -> Multiprotocol:
        if len(value) != 4:
            raise _malformed(cls.code, value, "length is not 4")
        afi, _reserved, safi = struct.unpack(">HBB", value)
        return cls(Family(afi, safi))


@dataclass(frozen=True, slots=True)
class _Empty(Capability):
    """A capability whose presence is its whole meaning."""

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes) -> Capability:
        if value:
            raise _malformed(cls.code, value, "value must be empty")
        return cls()


@dataclass(frozen=True, slots=True)
class RouteRefresh(_Empty):
    """Route Refresh (RFC 2918 §2)."""

    code: ClassVar[int] = CapabilityCode.ROUTE_REFRESH


@dataclass(frozen=True, slots=True)
class EnhancedRouteRefresh(_Empty):
    """Enhanced Route Refresh (RFC 7313 §3.1)."""

    code: ClassVar[int] = CapabilityCode.ENHANCED_ROUTE_REFRESH


@dataclass(frozen=True, slots=True)
class ExtendedMessage(_Empty):
    """Extended Message (RFC 8654 §3)."""

    code: ClassVar[int] = CapabilityCode.EXTENDED_MESSAGE


@dataclass(frozen=True, slots=True)
class ExtendedNextHop(Capability):
    """Extended Next Hop Encoding: (NLRI family, next-hop AFI) tuples (RFC 8950 §3)."""

    code: ClassVar[int] = CapabilityCode.EXTENDED_NEXT_HOP
    entries: tuple[tuple[Family, int], ...]

    def __post_init__(self) -> None:
        for family, nh_afi in self.entries:
            _check_u16("AFI", family.afi)
            _check_u16("SAFI", family.safi)
            _check_u16("next hop AFI", nh_afi)

    def encode_value(self) -> bytes:
        return b"".join(struct.pack(">HHH", f.afi, f.safi, nh) for f, nh in self.entries)

    @classmethod
    def decode_value(cls, value: bytes) -> ExtendedNextHop:
        if len(value) % 6:
            raise _malformed(cls.code, value, "length is not a multiple of 6")
        return cls(tuple((Family(a, s), nh) for a, s, nh in struct.iter_unpack(">HHH", value)))


@dataclass(frozen=True, slots=True)
class BgpRoleCapability(Capability):
    """BGP Role (RFC 9234 §4.1)."""

    code: ClassVar[int] = CapabilityCode.BGP_ROLE
    role: int

    def __post_init__(self) -> None:
        if not 0 <= self.role <= 255:
            raise ValueError(f"role {self.role} does not fit 8 bits")

    def encode_value(self) -> bytes:
        return bytes((self.role,))

    @classmethod
    def decode_value(cls, value: bytes) -> BgpRoleCapability:
        if len(value) != 1:
            raise _malformed(cls.code, value, "length is not 1")
        return cls(value[0])


@dataclass(frozen=True, slots=True)
class GracefulRestart(Capability):
    """Graceful Restart (RFC 4724 §3) with the N bit of RFC 8538 §2.

    ``families`` maps each preserved family to its Forwarding State bit.
    """

    code: ClassVar[int] = CapabilityCode.GRACEFUL_RESTART
    restart_time: int
    restarting: bool = False
    notification: bool = False
    families: tuple[tuple[Family, bool], ...] = ()
    reserved_flags: int = 0

    RESTART_STATE: ClassVar[int] = 0x8
    NOTIFICATION_BIT: ClassVar[int] = 0x4
    FORWARDING: ClassVar[int] = 0x80

    def __post_init__(self) -> None:
        if not 0 <= self.restart_time <= 0xFFF:
            raise ValueError(f"restart time {self.restart_time} does not fit 12 bits")
        if self.reserved_flags & ~0x3:
            raise ValueError("reserved_flags holds only the two unassigned bits")

    def encode_value(self) -> bytes:
        flags = (
            (self.RESTART_STATE if self.restarting else 0)
            | (self.NOTIFICATION_BIT if self.notification else 0)
            | self.reserved_flags
        )
        out = [struct.pack(">H", (flags << 12) | self.restart_time)]
        out += [
            struct.pack(">HBB", f.afi, f.safi, self.FORWARDING if fwd else 0)
            for f, fwd in self.families
        ]
        return b"".join(out)

    @classmethod
    def decode_value(cls, value: bytes) -> GracefulRestart:
        if len(value) < 2 or (len(value) - 2) % 4:
            raise _malformed(cls.code, value, "length is not 2 + 4n")
        word = int.from_bytes(value[:2], "big")
        flags = word >> 12
        families = tuple(
            (Family(afi, safi), bool(f & cls.FORWARDING))
            for afi, safi, f in struct.iter_unpack(">HBB", value[2:])
        )
        return cls(
            restart_time=word & 0xFFF,
            restarting=bool(flags & cls.RESTART_STATE),
            notification=bool(flags & cls.NOTIFICATION_BIT),
            families=families,
            reserved_flags=flags & 0x3,
        )


@dataclass(frozen=True, slots=True)
class FourOctetAs(Capability):
    """Support for 4-octet AS numbers (RFC 6793 §3)."""

    code: ClassVar[int] = CapabilityCode.FOUR_OCTET_AS
    asn: int

    def __post_init__(self) -> None:
        if not 0 <= self.asn <= 0xFFFFFFFF:
            raise ValueError(f"AS {self.asn} does not fit 32 bits")

    def encode_value(self) -> bytes:
        return struct.pack(">I", self.asn)

    @classmethod
    def decode_value(cls, value: bytes) -> FourOctetAs:
        if len(value) != 4:
            raise _malformed(cls.code, value, "length is not 4")
        return cls(int.from_bytes(value, "big"))


@dataclass(frozen=True, slots=True)
class AddPath(Capability):
    """ADD-PATH: per family, send and/or receive (RFC 7911 §4)."""

    code: ClassVar[int] = CapabilityCode.ADD_PATH
    entries: tuple[tuple[Family, AddPathMode], ...]

    def __post_init__(self) -> None:
        for family, mode in self.entries:
            _check_u16("AFI", family.afi)
            if not 0 <= family.safi <= 255 or not 0 <= mode <= 255:
                raise ValueError("SAFI and send/receive fit 8 bits")

    def encode_value(self) -> bytes:
        return b"".join(struct.pack(">HBB", f.afi, f.safi, m) for f, m in self.entries)

    @classmethod
    def decode_value(cls, value: bytes) -> AddPath:
        if len(value) % 4:
            raise _malformed(cls.code, value, "length is not a multiple of 4")
        return cls(
            tuple(
                (Family(afi, safi), AddPathMode(mode))
                for afi, safi, mode in struct.iter_unpack(">HBB", value)
            )
        )


@dataclass(frozen=True, slots=True)
class LongLivedGracefulRestart(Capability):
    """Long-Lived Graceful Restart: (family, forwarding, stale time) (RFC 9494 §3)."""

    code: ClassVar[int] = CapabilityCode.LONG_LIVED_GRACEFUL_RESTART
    entries: tuple[tuple[Family, bool, int], ...]

    def __post_init__(self) -> None:
        for family, _fwd, stale in self.entries:
            _check_u16("AFI", family.afi)
            if not 0 <= stale <= 0xFFFFFF:
                raise ValueError(f"long-lived stale time {stale} does not fit 24 bits")

    def encode_value(self) -> bytes:
        return b"".join(
            struct.pack(">HBB", f.afi, f.safi, 0x80 if fwd else 0) + stale.to_bytes(3, "big")
            for f, fwd, stale in self.entries
        )

    @classmethod
    def decode_value(cls, value: bytes) -> LongLivedGracefulRestart:
        if len(value) % 7:
            raise _malformed(cls.code, value, "length is not a multiple of 7")
        entries = []
        for i in range(0, len(value), 7):
            afi, safi, flags = struct.unpack_from(">HBB", value, i)
            stale = int.from_bytes(value[i + 4 : i + 7], "big")
            entries.append((Family(afi, safi), bool(flags & 0x80), stale))
        return cls(tuple(entries))


@dataclass(frozen=True, slots=True)
class Hostname(Capability):
    """FQDN capability: host and domain name, as FRR and GoBGP send it
    (draft-walton-bgp-hostname-capability §3)."""

    code: ClassVar[int] = CapabilityCode.FQDN
    hostname: str
    domain: str = ""

    def __post_init__(self) -> None:
        if len(self.hostname.encode()) > 255 or len(self.domain.encode()) > 255:
            raise ValueError("host and domain names are at most 255 octets each")

    def encode_value(self) -> bytes:
        h = self.hostname.encode()
        d = self.domain.encode()
        return bytes((len(h),)) + h + bytes((len(d),)) + d

    @classmethod
    def decode_value(cls, value: bytes) -> Hostname:
        try:
            hlen = value[0]
            host = value[1 : 1 + hlen]
            dlen = value[1 + hlen]
            domain = value[2 + hlen : 2 + hlen + dlen]
            if len(host) != hlen or len(domain) != dlen or 2 + hlen + dlen != len(value):
                raise IndexError
            return cls(host.decode(), domain.decode())
        except (IndexError, UnicodeDecodeError):
            raise _malformed(cls.code, value, "malformed host/domain name") from None


@dataclass(frozen=True, slots=True)
class UnknownCapability(Capability):
    """A capability this codec does not interpret, kept as raw octets (RFC 5492 §3)."""

    code: int  # type: ignore[misc]
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 255 or len(self.value) > 255:
            raise ValueError("capability code fits 8 bits and value at most 255 octets")

    def encode_value(self) -> bytes:
        return self.value


CAPABILITY_DECODERS: dict[int, type[Capability]] = {
    cls.code: cls
    for cls in (
        Multiprotocol,
        RouteRefresh,
        EnhancedRouteRefresh,
        ExtendedMessage,
        ExtendedNextHop,
        BgpRoleCapability,
        GracefulRestart,
        FourOctetAs,
        AddPath,
        LongLivedGracefulRestart,
        Hostname,
    )
}


def decode_capabilities(data: bytes) -> tuple[Capability, ...]:
    """Decode the value of one Capabilities optional parameter (RFC 5492 §4)."""
    caps: list[Capability] = []
    i = 0
    n = len(data)
    while i < n:
        if i + 2 > n:
            raise OpenMessageError(OpenSubcode.UNSPECIFIC, data[i:], "truncated capability header")
        code, length = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise OpenMessageError(
                OpenSubcode.UNSPECIFIC, data[i:], f"capability {code} overruns its parameter"
            )
        cls = CAPABILITY_DECODERS.get(code)
        caps.append(cls.decode_value(value) if cls else UnknownCapability(code, value))
        i += 2 + length
    return tuple(caps)


def encode_capabilities(caps: tuple[Capability, ...]) -> bytes:
    """Encode capabilities back to back, as one parameter's value (RFC 5492 §4)."""
    return b"".join(c.encode() for c in caps)

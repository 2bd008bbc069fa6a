"""Path attributes as one immutable, shareable value.

A ``PathAttributes`` holds every attribute of a route except MP_REACH_NLRI and
MP_UNREACH_NLRI, which carry NLRI rather than describe a path and so live on the
UPDATE.  Thousands of prefixes share one attribute set, so the decoder returns the
same object for the same bytes (see ``SessionContext.attribute_cache``) and the
layers above compare them by identity.

Fields hold plain, compact values: ASNs and communities as ints, addresses as
packed bytes, extended communities as 8-octet bytes, large communities as
(global, local1, local2) triples.  ``None`` means "absent".

``wire_flags`` remembers, in wire order, the flags each attribute arrived with,
as (type, flags) octet pairs.  It does not take part in equality; the encoder follows it so a
decoded message re-encodes to its own bytes (attribute order, Extended Length
bits that a sender set on short attributes).  A value built in code has none and
is encoded canonically (RFC 7606 §5.1: MP attributes first, then by type code).

Unrecognised optional transitive attributes are kept with the Partial bit set, as
they will be propagated (RFC 4271 §5); unrecognised non-transitive ones are not
kept (RFC 4271 §9).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from .aspath import AsPath
from .codes import AttrFlag, AttrType, Origin, WellKnownCommunity, as_enum
from .message import trusted_copier


class Aggregator(NamedTuple):
    """AGGREGATOR / AS4_AGGREGATOR value: AS and the aggregating speaker's ID (RFC 4271 §4.3)."""

    asn: int
    address: int


class LargeCommunity(NamedTuple):
    """A large community (RFC 8092 §3)."""

    global_admin: int
    local1: int
    local2: int

    def __str__(self) -> str:
        return f"{self.global_admin}:{self.local1}:{self.local2}"


@dataclass(frozen=True, slots=True)
class UnknownAttribute:
    """An optional transitive attribute this codec does not interpret."""

    type: int
    flags: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 255:
            raise ValueError("attribute type fits 8 bits")
        if self.flags & 0xC0 != 0xC0:
            raise ValueError("only optional transitive unknown attributes are kept")
        if len(self.value) > 0xFFFF:
            raise ValueError("attribute value is at most 65535 octets")


def community_text(value: int) -> str:
    """``65535:65281`` style, with the well-known name when there is one (RFC 1997)."""
    known = as_enum(WellKnownCommunity, value)
    if isinstance(known, WellKnownCommunity):
        return known.name
    return f"{value >> 16}:{value & 0xFFFF}"


def _u32(name: str, v: int | None) -> None:
    if v is not None and not 0 <= v <= 0xFFFFFFFF:
        raise ValueError(f"{name} {v} does not fit 32 bits")


@dataclass(frozen=True, slots=True)
class PathAttributes:
    """Every path attribute of a route but the MP ones (RFC 4271 §5, RFC 4456 §8,
    RFC 4360, RFC 6793, RFC 8092, RFC 9234)."""

    origin: int | None = None
    as_path: AsPath | None = None
    next_hop: bytes | None = None
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    aggregator: Aggregator | None = None
    communities: tuple[int, ...] | None = None
    originator_id: int | None = None
    cluster_list: tuple[int, ...] | None = None
    extended_communities: tuple[bytes, ...] | None = None
    as4_path: AsPath | None = None
    as4_aggregator: Aggregator | None = None
    large_communities: tuple[LargeCommunity, ...] | None = None
    otc: int | None = None
    unknown: tuple[UnknownAttribute, ...] = ()
    wire_flags: bytes | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            check(name, getattr(self, name))

    def replace(self, **changes: Any) -> PathAttributes:
        """A copy with ``changes``; the wire flags no longer describe it, so are dropped.

        Only the changed fields are checked: the rest were checked when this
        value was made, and export rewrites attributes once per UPDATE sent."""
        for name, value in changes.items():
            check = _CHECKS.get(name)
            if check is not None:
                check(name, value)
            elif name not in _UNCHECKED:
                raise TypeError(f"PathAttributes has no field {name!r}")
        changes["wire_flags"] = None
        return _copy_with(self, changes)

    @property
    def origin_name(self) -> str:
        o = as_enum(Origin, self.origin) if self.origin is not None else None
        return o.name if isinstance(o, Origin) else str(o)

    def present_types(self) -> list[int]:
        """Type codes of the attributes present, ascending."""
        out = [code for code, name in _FIELD_OF_TYPE.items() if _present(getattr(self, name))]
        out += [u.type for u in self.unknown]
        return sorted(out)

    def describe(self) -> dict[str, Any]:
        """A plain, readable view (for the CLI, logs and the HTTP API)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "wire_flags" or not _present(v):
                continue
            if f.name == "next_hop":
                v = str(ipaddress.IPv4Address(v))
            elif f.name in ("as_path", "as4_path"):
                v = str(v)
            elif f.name == "origin":
                v = self.origin_name
            elif f.name == "communities":
                v = [community_text(c) for c in v]
            elif f.name in ("originator_id",):
                v = str(ipaddress.IPv4Address(v))
            elif f.name == "cluster_list":
                v = [str(ipaddress.IPv4Address(c)) for c in v]
            elif f.name == "extended_communities":
                v = [c.hex() for c in v]
            elif f.name == "large_communities":
                v = [str(c) for c in v]
            elif f.name in ("aggregator", "as4_aggregator"):
                v = f"{v.asn} {ipaddress.IPv4Address(v.address)}"
            elif f.name == "unknown":
                v = [{"type": u.type, "flags": u.flags, "value": u.value.hex()} for u in v]
            out[f.name] = v
        return out


def _present(v: object) -> bool:
    return v is not None and v is not False and v != ()


def _check_origin(name: str, v: int | None) -> None:
    if v is not None and v not in (0, 1, 2):
        raise ValueError(f"ORIGIN {v} is not IGP, EGP or INCOMPLETE")


def _check_next_hop(name: str, v: bytes | None) -> None:
    if v is not None and len(v) != 4:
        raise ValueError("NEXT_HOP is a 4-octet IPv4 address")


def _check_aggregator(name: str, v: Aggregator | None) -> None:
    if v is not None:
        _u32("aggregator AS", v.asn)
        _u32("aggregator address", v.address)


def _check_u32_list(name: str, values: tuple[int, ...] | None) -> None:
    if values is not None:
        if not values:
            raise ValueError(f"{name} must not be empty when present")
        for v in values:
            _u32(name, v)


def _check_extended(name: str, ext: tuple[bytes, ...] | None) -> None:
    if ext is not None and (not ext or any(len(c) != 8 for c in ext)):
        raise ValueError("extended communities are non-empty 8-octet values")


def _check_large(name: str, values: tuple[LargeCommunity, ...] | None) -> None:
    if values is not None:
        if not values:
            raise ValueError("large_communities must not be empty when present")
        for lc in values:
            for v in lc:
                _u32("large community part", v)


def _check_unknown(name: str, unknown: tuple[UnknownAttribute, ...]) -> None:
    types = [u.type for u in unknown]
    if types != sorted(set(types)) or _KNOWN_TYPES.intersection(types):
        raise ValueError("unknown attributes must be unrecognised types, ascending, once each")


#: The check of each field that has one; a field's check looks at it alone.
_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "origin": _check_origin,
    "next_hop": _check_next_hop,
    "med": _u32,
    "local_pref": _u32,
    "originator_id": _u32,
    "otc": _u32,
    "aggregator": _check_aggregator,
    "as4_aggregator": _check_aggregator,
    "communities": _check_u32_list,
    "cluster_list": _check_u32_list,
    "extended_communities": _check_extended,
    "large_communities": _check_large,
    "unknown": _check_unknown,
}
# AsPath values check themselves; a flag needs none.
_UNCHECKED = frozenset({"as_path", "as4_path", "atomic_aggregate", "wire_flags"})
_copy_with = trusted_copier(PathAttributes)


#: Attribute type -> PathAttributes field name.
_FIELD_OF_TYPE: dict[int, str] = {
    AttrType.ORIGIN: "origin",
    AttrType.AS_PATH: "as_path",
    AttrType.NEXT_HOP: "next_hop",
    AttrType.MULTI_EXIT_DISC: "med",
    AttrType.LOCAL_PREF: "local_pref",
    AttrType.ATOMIC_AGGREGATE: "atomic_aggregate",
    AttrType.AGGREGATOR: "aggregator",
    AttrType.COMMUNITIES: "communities",
    AttrType.ORIGINATOR_ID: "originator_id",
    AttrType.CLUSTER_LIST: "cluster_list",
    AttrType.EXTENDED_COMMUNITIES: "extended_communities",
    AttrType.AS4_PATH: "as4_path",
    AttrType.AS4_AGGREGATOR: "as4_aggregator",
    AttrType.LARGE_COMMUNITY: "large_communities",
    AttrType.OTC: "otc",
}
_KNOWN_TYPES = frozenset(_FIELD_OF_TYPE) | {AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI}

# Plain ints: IntFlag arithmetic costs a microsecond per operation on the hot path.
_WELL_KNOWN = int(AttrFlag.TRANSITIVE)
_OPTIONAL_TRANSITIVE = int(AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE)
_OPTIONAL = int(AttrFlag.OPTIONAL)

#: Optional/Transitive bits each known attribute must carry (RFC 4271 §5, RFC 4760 §3-4).
EXPECTED_FLAGS: dict[int, int] = {
    AttrType.ORIGIN: _WELL_KNOWN,
    AttrType.AS_PATH: _WELL_KNOWN,
    AttrType.NEXT_HOP: _WELL_KNOWN,
    AttrType.MULTI_EXIT_DISC: _OPTIONAL,
    AttrType.LOCAL_PREF: _WELL_KNOWN,
    AttrType.ATOMIC_AGGREGATE: _WELL_KNOWN,
    AttrType.AGGREGATOR: _OPTIONAL_TRANSITIVE,
    AttrType.COMMUNITIES: _OPTIONAL_TRANSITIVE,
    AttrType.ORIGINATOR_ID: _OPTIONAL,
    AttrType.CLUSTER_LIST: _OPTIONAL,
    AttrType.MP_REACH_NLRI: _OPTIONAL,
    AttrType.MP_UNREACH_NLRI: _OPTIONAL,
    AttrType.EXTENDED_COMMUNITIES: _OPTIONAL_TRANSITIVE,
    AttrType.AS4_PATH: _OPTIONAL_TRANSITIVE,
    AttrType.AS4_AGGREGATOR: _OPTIONAL_TRANSITIVE,
    AttrType.LARGE_COMMUNITY: _OPTIONAL_TRANSITIVE,
    AttrType.OTC: _OPTIONAL_TRANSITIVE,
}

FIELD_OF_TYPE = _FIELD_OF_TYPE
EMPTY_ATTRIBUTES = PathAttributes()

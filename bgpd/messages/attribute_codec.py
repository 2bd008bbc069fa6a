"""Path attribute block <-> ``PathAttributes``, with RFC 7606 error handling.

Decoding walks the attribute headers once (RFC 4271 §4.3: flags, type, 1- or
2-octet length).  Each known type has a row in ``_DECODERS``: the value decoder
and the RFC 7606 action for a malformed value.  Faults do not stop the walk: every
attribute is checked and every fault collected, so the UPDATE decoder can apply the
strongest action (RFC 7606 §3) and still report them all.

MP_REACH_NLRI and MP_UNREACH_NLRI are cut out and returned raw; the UPDATE decoder
parses them because they need the family's NLRI rules.  What remains is decoded
once per distinct byte string: the result is cached on the session context, so a
full table's repeated attribute sets cost one dictionary lookup each.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from .aspath import AsPath, AsPathError
from .attributes import (
    EXPECTED_FLAGS,
    FIELD_OF_TYPE,
    Aggregator,
    LargeCommunity,
    PathAttributes,
    UnknownAttribute,
)
from .codes import AS_TRANS, AttrFlag, AttrType, UpdateSubcode
from .context import SessionContext
from .errors import Action, UpdateMessageError
from .message import trusted_builder

_TAW = Action.TREAT_AS_WITHDRAW
_DISCARD = Action.ATTRIBUTE_DISCARD
_RESET = Action.SESSION_RESET
_LENGTH = UpdateSubcode.ATTRIBUTE_LENGTH_ERROR
_OPTIONAL = UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR
_MP_TYPES = (int(AttrType.MP_REACH_NLRI), int(AttrType.MP_UNREACH_NLRI))
_EXT = int(AttrFlag.EXTENDED_LENGTH)
_PARTIAL = int(AttrFlag.PARTIAL)
_OPT = int(AttrFlag.OPTIONAL)
_TRANS = int(AttrFlag.TRANSITIVE)


class _Malformed(Exception):
    """A value decoder's complaint; the walk turns it into an UpdateMessageError."""

    def __init__(self, subcode: UpdateSubcode, reason: str) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason


def _length(value: bytes, length: int, what: str) -> _Malformed:
    return _Malformed(_LENGTH, f"{what} length is {len(value)}, not {length}")


def _origin(value: bytes, four: bool) -> int:
    """RFC 4271 §6.3, RFC 7606 §7.1."""
    if len(value) != 1:
        raise _length(value, 1, "ORIGIN")
    if value[0] > 2:
        raise _Malformed(UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE, f"ORIGIN value {value[0]}")
    return value[0]


def _as_path(value: bytes, four: bool) -> AsPath:
    """RFC 4271 §6.3, RFC 7606 §7.2."""
    try:
        return AsPath.decode(value, four)
    except AsPathError as e:
        raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, f"AS_PATH: {e}") from None


def _as4_path(value: bytes, four: bool) -> AsPath:
    """RFC 6793 §6: a malformed AS4_PATH is discarded; confederation segments in it
    are dropped and the rest kept."""
    try:
        path = AsPath.decode(value, True)
    except AsPathError as e:
        raise _Malformed(_OPTIONAL, f"AS4_PATH: {e}") from None
    if any(s.type > 2 for s in path.segments):
        path = AsPath(tuple(s for s in path.segments if s.type <= 2))
    return path


def _next_hop(value: bytes, four: bool) -> bytes:
    """RFC 4271 §6.3 (semantic check), RFC 7606 §7.3."""
    if len(value) != 4:
        raise _length(value, 4, "NEXT_HOP")
    if value[0] >= 224 or value == b"\0\0\0\0":
        raise _Malformed(
            UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE, f"NEXT_HOP {'.'.join(map(str, value))}"
        )
    return value


def _u32(what: str) -> Callable[[bytes, bool], int]:
    """MULTI_EXIT_DISC, LOCAL_PREF, ORIGINATOR_ID, OTC: exactly 4 octets (RFC 7606 §7)."""

    def decode(value: bytes, four: bool) -> int:
        if len(value) != 4:
            raise _length(value, 4, what)
        return int.from_bytes(value, "big")

    return decode


def _atomic(value: bytes, four: bool) -> bool:
    """RFC 7606 §7.6."""
    if value:
        raise _length(value, 0, "ATOMIC_AGGREGATE")
    return True


def _aggregator(value: bytes, four: bool) -> Aggregator:
    """RFC 7606 §7.7: 6 octets from an OLD speaker, 8 from a NEW one."""
    if four:
        if len(value) != 8:
            raise _length(value, 8, "AGGREGATOR")
        return Aggregator(*struct.unpack(">II", value))
    if len(value) != 6:
        raise _length(value, 6, "AGGREGATOR")
    return Aggregator(*struct.unpack(">HI", value))


def _as4_aggregator(value: bytes, four: bool) -> Aggregator:
    """RFC 6793 §6."""
    if len(value) != 8:
        raise _length(value, 8, "AS4_AGGREGATOR")
    return Aggregator(*struct.unpack(">II", value))


def _u32_list(what: str) -> Callable[[bytes, bool], tuple[int, ...]]:
    """COMMUNITIES (RFC 7606 §7.8), CLUSTER_LIST (§7.10): a non-zero multiple of 4."""

    def decode(value: bytes, four: bool) -> tuple[int, ...]:
        n = len(value)
        if n == 0 or n & 3:
            raise _Malformed(_LENGTH, f"{what} length {n} is not a non-zero multiple of 4")
        return struct.unpack(f">{n >> 2}I", value)

    return decode


def _extended_communities(value: bytes, four: bool) -> tuple[bytes, ...]:
    """RFC 7606 §7.14: a non-zero multiple of 8."""
    n = len(value)
    if n == 0 or n & 7:
        raise _Malformed(
            _LENGTH, f"EXTENDED_COMMUNITIES length {n} is not a non-zero multiple of 8"
        )
    return tuple([value[i : i + 8] for i in range(0, n, 8)])


def _large_communities(value: bytes, four: bool) -> tuple[LargeCommunity, ...]:
    """RFC 8092 §6: a non-zero multiple of 12."""
    n = len(value)
    if n == 0 or n % 12:
        raise _Malformed(_LENGTH, f"LARGE_COMMUNITY length {n} is not a non-zero multiple of 12")
    return tuple([LargeCommunity(*t) for t in struct.iter_unpack(">III", value)])


#: type -> (value decoder, RFC 7606 action when malformed).
_DECODERS: dict[int, tuple[Callable[[bytes, bool], Any], Action]] = {
    AttrType.ORIGIN: (_origin, _TAW),
    AttrType.AS_PATH: (_as_path, _TAW),
    AttrType.NEXT_HOP: (_next_hop, _TAW),
    AttrType.MULTI_EXIT_DISC: (_u32("MULTI_EXIT_DISC"), _TAW),
    AttrType.LOCAL_PREF: (_u32("LOCAL_PREF"), _TAW),
    AttrType.ATOMIC_AGGREGATE: (_atomic, _DISCARD),
    AttrType.AGGREGATOR: (_aggregator, _DISCARD),
    AttrType.COMMUNITIES: (_u32_list("COMMUNITIES"), _TAW),
    AttrType.ORIGINATOR_ID: (_u32("ORIGINATOR_ID"), _TAW),
    AttrType.CLUSTER_LIST: (_u32_list("CLUSTER_LIST"), _TAW),
    AttrType.EXTENDED_COMMUNITIES: (_extended_communities, _TAW),
    AttrType.AS4_PATH: (_as4_path, _DISCARD),
    AttrType.AS4_AGGREGATOR: (_as4_aggregator, _DISCARD),
    AttrType.LARGE_COMMUNITY: (_large_communities, _TAW),
    AttrType.OTC: (_u32("OTC"), _TAW),
}

_FIELDS = [f for f in PathAttributes.__dataclass_fields__ if f not in ("unknown", "wire_flags")]
#: type -> position of its field in PathAttributes' constructor.
_SLOT = {t: _FIELDS.index(name) for t, name in FIELD_OF_TYPE.items()}
#: type -> (field position, value decoder, action when malformed, expected flags):
#: one lookup per attribute on the hot path.
_ROWS: dict[int, tuple[int, Callable[[bytes, bool], Any], Action, int]] = {
    int(code): (_SLOT[code], decoder, action, EXPECTED_FLAGS[code])
    for code, (decoder, action) in _DECODERS.items()
}
_TEMPLATE: list[Any] = [None] * len(_FIELDS)
_TEMPLATE[_FIELDS.index("atomic_aggregate")] = False


_new_attributes = trusted_builder(PathAttributes)


class RawAttribute(NamedTuple):
    """An MP attribute cut out of the block: flags, value and its wire position."""

    flags: int
    value: bytes
    whole: bytes


class DecodedBlock(NamedTuple):
    """What the attribute walk found."""

    attributes: PathAttributes
    faults: tuple[UpdateMessageError, ...]
    mp_reach: RawAttribute | None
    mp_unreach: RawAttribute | None


def _fault(
    subcode: UpdateSubcode, action: Action, data: bytes, reason: str, attribute: int | None = None
) -> UpdateMessageError:
    return UpdateMessageError(subcode, data, reason, action, attribute=attribute)


def _fresh(block: DecodedBlock) -> DecodedBlock:
    """The block with new error objects: cached ones are never handed out, since the
    UPDATE decoder annotates and raises them."""
    if not block.faults:
        return block
    return block._replace(faults=tuple(f.copy() for f in block.faults))


def _walk(data: bytes) -> tuple[list[tuple[int, int, int, int, int]], list[UpdateMessageError]]:
    """Split the block into (flags, type, start of attribute, start of value, end).

    RFC 7606 §4: an attribute header or value running past the block makes the
    rest unparseable; that is treat-as-withdraw, since the NLRI field is still
    located by the Total Path Attribute Length.
    """
    out = []
    faults: list[UpdateMessageError] = []
    i = 0
    n = len(data)
    while i < n:
        if i + 3 > n:
            faults.append(
                _fault(
                    UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                    _TAW,
                    data[i:],
                    "truncated attribute header",
                )
            )
            break
        flags = data[i]
        if flags & _EXT:
            if i + 4 > n:
                faults.append(
                    _fault(
                        UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                        _TAW,
                        data[i:],
                        "truncated attribute header",
                    )
                )
                break
            start = i + 4
            end = start + ((data[i + 2] << 8) | data[i + 3])
        else:
            start = i + 3
            end = start + data[i + 2]
        if end > n:
            faults.append(
                _fault(
                    _LENGTH, _TAW, data[i:], f"attribute {data[i + 1]} overruns the attribute block"
                )
            )
            break
        out.append((flags, data[i + 1], i, start, end))
        i = end
    return out, faults


def decode_attribute_block(data: bytes, context: SessionContext) -> DecodedBlock:
    """Decode a Path Attributes field (RFC 4271 §4.3, §6.3; RFC 7606 §3-7)."""
    cache = context.attribute_cache
    hit: DecodedBlock | None = cache.get(data)
    if hit is not None:
        return _fresh(hit)
    four = context.four_octet_as
    # Optimistic single pass: most blocks (all IPv4 ones) hold no MP attribute.
    decoded = _decode_values(data, four, allow_mp=False)
    if decoded is not None:
        block = DecodedBlock(decoded[0], decoded[1], None, None)
        if not any(f.action >= _RESET for f in decoded[1]):
            cache.put(data, block)
        return _fresh(block)
    headers, walk_faults = _walk(data)
    mp: dict[int, RawAttribute] = {}
    mp_faults: list[UpdateMessageError] = []
    rest = []
    for flags, code, at, start, end in headers:
        if code in _MP_TYPES:
            whole = data[at:end]
            if code in mp:
                # RFC 7606 §3 g: a repeated MP attribute cannot be resolved.  RFC 4271
                # §6.3 gives Malformed Attribute List no data.
                why = f"attribute {code} repeated"
                mp_faults.append(_fault(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, _RESET, b"", why))
                continue
            if flags & 0xC0 != EXPECTED_FLAGS[code]:
                why = f"attribute {code} flags {flags:#x}"
                mp_faults.append(_fault(UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, _RESET, whole, why))
            mp[code] = RawAttribute(flags, data[start:end], whole)
        else:
            rest.append(data[at:end])
    # The MP attributes differ from UPDATE to UPDATE; the rest is what repeats.
    key = b"".join(rest)
    hit = None if walk_faults else cache.get(key)
    if hit is None:
        full = _decode_values(data, four, allow_mp=True)
        assert full is not None
        hit = DecodedBlock(full[0], full[1], None, None)
        if not walk_faults and not any(f.action >= _RESET for f in full[1]):
            cache.put(key, hit)
    return DecodedBlock(
        hit.attributes,
        tuple(mp_faults) + tuple(f.copy() for f in hit.faults),
        mp.get(AttrType.MP_REACH_NLRI),
        mp.get(AttrType.MP_UNREACH_NLRI),
    )


def _decode_values(
    data: bytes, four: bool, allow_mp: bool
) -> tuple[PathAttributes, tuple[UpdateMessageError, ...]] | None:
    """Walk and decode every attribute but the MP ones in one pass.

    MP attributes only keep their wire position; without ``allow_mp`` meeting one
    returns None, so the caller can take the path that cuts them out first.
    Header faults end the walk (RFC 7606 §4, see ``_walk``).
    """
    # The header parsing below repeats ``_walk`` on purpose: this is the hot path,
    # and a generator or a list of headers in between costs measurably per UPDATE.
    values = _TEMPLATE.copy()
    faults: list[UpdateMessageError] = []
    unknown: list[UnknownAttribute] = []
    seen: set[int] = set()
    wire = bytearray()
    rows = _ROWS
    i = 0
    n = len(data)
    while i < n:
        if i + 3 > n or (data[i] & _EXT and i + 4 > n):
            why = "truncated attribute header"
            faults.append(_fault(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, _TAW, data[i:], why))
            break
        flags = data[i]
        code = data[i + 1]
        if flags & _EXT:
            start = i + 4
            end = start + ((data[i + 2] << 8) | data[i + 3])
        else:
            start = i + 3
            end = start + data[i + 2]
        if end > n:
            why = f"attribute {code} overruns the attribute block"
            faults.append(_fault(_LENGTH, _TAW, data[i:], why, code))
            break
        at = i
        i = end
        if code in seen:
            continue  # RFC 7606 §3 g: later copies of an attribute are discarded
        seen.add(code)
        row = rows.get(code)
        if row is None:
            if code in _MP_TYPES:
                if not allow_mp:
                    return None
            elif not flags & _OPT:
                # RFC 4271 §6.3: an unrecognised well-known attribute resets the session.
                why = f"unrecognised well-known attribute {code}"
                faults.append(
                    _fault(
                        UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                        _RESET,
                        data[at:end],
                        why,
                        code,
                    )
                )
            elif flags & _TRANS:
                # Kept for propagation with the Partial bit set (RFC 4271 §5).
                flags |= _PARTIAL
                unknown.append(UnknownAttribute(code, flags & 0xE0, data[start:end]))
        elif four and code in _AS4_TYPES:
            pass  # RFC 6793 §4.1: from a NEW speaker these are discarded
        else:
            slot, decoder, action, expected = row
            if flags & 0xC0 != expected:
                # RFC 7606 §3 c: treat-as-withdraw, unless the attribute's own rules
                # say otherwise (RFC 6793 §6 for AS4_PATH and AS4_AGGREGATOR).
                flag_action = _DISCARD if code in _AS4_TYPES else _TAW
                why = f"attribute {code} flags {flags:#x}"
                faults.append(
                    _fault(
                        UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, flag_action, data[at:end], why, code
                    )
                )
            else:
                try:
                    values[slot] = decoder(data[start:end], four)
                except _Malformed as e:
                    faults.append(_fault(e.subcode, action, data[at:end], e.reason, code))
        # Every attribute seen goes into the layout, kept or not: the encoder emits
        # only what is present, and End-of-RIB detection must know that the block
        # held nothing else (RFC 4724 §2).
        wire.append(code)
        wire.append(flags)
    # The wire layout repeats across a whole table: share one bytes object per layout.
    layout = bytes(wire)
    if len(_LAYOUTS) >= 4096:
        _LAYOUTS.clear()
    layout = _LAYOUTS.setdefault(layout, layout)
    # Every value was checked by its decoder; skip the constructor's second look.
    attributes = _new_attributes(
        *values, tuple(sorted(unknown, key=_type_of)) if unknown else (), layout
    )
    return attributes, tuple(faults) if faults else ()


_LAYOUTS: dict[bytes, bytes] = {}
_AS4_TYPES = (int(AttrType.AS4_PATH), int(AttrType.AS4_AGGREGATOR))


def _type_of(attribute: UnknownAttribute) -> int:
    return attribute.type


def _pack_u32(value: int, four: bool) -> bytes:
    return value.to_bytes(4, "big")


def _pack_path(value: AsPath, four: bool) -> bytes:
    return value.encode(four)


def _pack_as4_path(value: AsPath, four: bool) -> bytes:
    return value.encode(True)


def _pack_bytes(value: bytes, four: bool) -> bytes:
    return value


def _pack_aggregator(value: Aggregator, four: bool) -> bytes:
    if four:
        return struct.pack(">II", value.asn, value.address)
    return struct.pack(">HI", value.asn if value.asn <= 0xFFFF else AS_TRANS, value.address)


def _pack_as4_aggregator(value: Aggregator, four: bool) -> bytes:
    return struct.pack(">II", value.asn, value.address)


def _pack_u32_list(value: tuple[int, ...], four: bool) -> bytes:
    return struct.pack(f">{len(value)}I", *value)


def _pack_large(value: tuple[LargeCommunity, ...], four: bool) -> bytes:
    return b"".join([struct.pack(">III", *lc) for lc in value])


def _pack_origin(value: int, four: bool) -> bytes:
    return bytes((value,))


def _pack_nothing(value: bool, four: bool) -> bytes:
    return b""


def _pack_joined(value: tuple[bytes, ...], four: bool) -> bytes:
    return b"".join(value)


_VALUE_ENCODERS: dict[int, Callable[[Any, bool], bytes]] = {
    AttrType.ORIGIN: _pack_origin,
    AttrType.AS_PATH: _pack_path,
    AttrType.NEXT_HOP: _pack_bytes,
    AttrType.MULTI_EXIT_DISC: _pack_u32,
    AttrType.LOCAL_PREF: _pack_u32,
    AttrType.ATOMIC_AGGREGATE: _pack_nothing,
    AttrType.AGGREGATOR: _pack_aggregator,
    AttrType.COMMUNITIES: _pack_u32_list,
    AttrType.ORIGINATOR_ID: _pack_u32,
    AttrType.CLUSTER_LIST: _pack_u32_list,
    AttrType.EXTENDED_COMMUNITIES: _pack_joined,
    AttrType.AS4_PATH: _pack_as4_path,
    AttrType.AS4_AGGREGATOR: _pack_as4_aggregator,
    AttrType.LARGE_COMMUNITY: _pack_large,
    AttrType.OTC: _pack_u32,
}

#: (type, field, flags, value encoder) in ascending type order.
_ENCODERS: list[tuple[int, str, int, Callable[[Any, bool], bytes]]] = [
    (int(code), FIELD_OF_TYPE[code], EXPECTED_FLAGS[code], encoder)
    for code, encoder in sorted(_VALUE_ENCODERS.items())
]


def attribute_bytes(code: int, flags: int, value: bytes) -> bytes:
    """One attribute: flags, type, length (extended when needed), value (RFC 4271 §4.3)."""
    n = len(value)
    if n > 255 or flags & _EXT:
        return bytes((flags | _EXT, code, n >> 8, n & 0xFF)) + value
    return bytes((flags, code, n)) + value


def encode_attribute_block(
    attributes: PathAttributes,
    four_octet: bool,
    mp_reach: bytes | None = None,
    mp_unreach: bytes | None = None,
) -> bytes:
    """Encode a Path Attributes field; ``mp_reach``/``mp_unreach`` are MP attribute
    values (RFC 4760 §3-4).  Follows ``wire_flags`` when present, else RFC 7606 §5.1
    order: MP_UNREACH, MP_REACH, then ascending type codes."""
    parts: dict[int, tuple[int, bytes]] = {}
    if mp_unreach is not None:
        parts[AttrType.MP_UNREACH_NLRI] = (_OPT, mp_unreach)
    if mp_reach is not None:
        parts[AttrType.MP_REACH_NLRI] = (_OPT, mp_reach)
    for code, name, flags, encoder in _ENCODERS:
        value = getattr(attributes, name)
        if value is not None and value is not False:
            if four_octet and code in _AS4_TYPES:
                continue  # RFC 6793 §4.1: never sent between NEW speakers
            parts[code] = (flags, encoder(value, four_octet))
    for u in attributes.unknown:
        parts[u.type] = (u.flags, u.value)
    wire = attributes.wire_flags
    if not wire:
        if attributes.unknown:
            head = [c for c in parts if c in _MP_TYPES]
            order = head + sorted(c for c in parts if c not in _MP_TYPES)
            return b"".join([attribute_bytes(c, *parts[c]) for c in order])
        return b"".join([attribute_bytes(code, f, v) for code, (f, v) in parts.items()])
    out = []
    for i in range(0, len(wire), 2):
        code = wire[i]
        sent = wire[i + 1]
        part = parts.pop(code, None)
        if part is not None:
            # Keep the sender's Extended Length bit, and its Partial bit where one is
            # allowed: on optional transitive attributes only (RFC 4271 §4.3).
            keep = _EXT | (_PARTIAL if part[0] & 0xC0 == 0xC0 else 0)
            out.append(attribute_bytes(code, part[0] | (sent & keep), part[1]))
    if parts:
        # What the wire order does not mention goes where the canonical order puts it.
        mp_first = [attribute_bytes(c, f, v) for c, (f, v) in parts.items() if c in _MP_TYPES]
        rest = [
            attribute_bytes(c, f, v) for c, (f, v) in sorted(parts.items()) if c not in _MP_TYPES
        ]
        out = mp_first + out + rest
    return b"".join(out)

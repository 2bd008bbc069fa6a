"""UPDATE (RFC 4271 §4.3) with MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760).

An ``Update`` holds the IPv4 withdrawn routes and NLRI fields, the shared
``PathAttributes`` and the two MP attributes, each with its family, next hop and
prefixes.  Prefixes are packed bytes (``nlri.Prefix``); Path Identifiers, when
ADD-PATH is negotiated for the family and direction, sit in parallel tuples
(RFC 7911 §3).

Decoding applies RFC 7606: every fault is collected, then the strongest action
wins.  Attribute discard returns the UPDATE without the bad attributes (listed in
``discarded``); treat-as-withdraw and AFI/SAFI disable raise an
``UpdateMessageError`` whose ``updates`` say what the session must still apply;
session reset raises the error whose NOTIFICATION the session sends.

End-of-RIB (RFC 4724 §2) is an UPDATE with nothing in it (IPv4 unicast) or with
only an empty MP_UNREACH_NLRI (other families).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from .attribute_codec import RawAttribute, decode_attribute_block, encode_attribute_block
from .attributes import EMPTY_ATTRIBUTES, PathAttributes
from .codes import IPV4_UNICAST, PREFIX_FAMILIES, Afi, AttrType, Family, MessageType, UpdateSubcode
from .context import SessionContext
from .errors import Action, UpdateMessageError
from .message import Message, trusted_builder
from .nlri import (
    NlriError,
    Prefix,
    decode_prefixes,
    decode_prefixes_with_ids,
    encode_prefixes,
    is_valid_prefix,
    max_bits,
)

#: Valid next-hop lengths per family (RFC 4760 §3, RFC 2545 §3, RFC 8950 §3).
_NEXT_HOP_LENGTHS: dict[int, tuple[int, ...]] = {Afi.IPV4: (4, 16, 32), Afi.IPV6: (16, 32)}


def _check_prefixes(
    family: Family, prefixes: tuple[Prefix, ...], path_ids: tuple[int, ...]
) -> None:
    if family in PREFIX_FAMILIES:
        for p in prefixes:
            if not is_valid_prefix(p, family.afi):
                raise ValueError(f"{p.hex()} is not a canonical {family} prefix")
    if path_ids and len(path_ids) != len(prefixes):
        raise ValueError("one path identifier per prefix, or none")
    for pid in path_ids:
        if not 0 <= pid <= 0xFFFFFFFF:
            raise ValueError(f"path identifier {pid} does not fit 32 bits")


def _split(
    data: bytes, family: Family, with_ids: bool
) -> tuple[tuple[Prefix, ...], tuple[int, ...]]:
    limit = max_bits(family.afi)
    if with_ids:
        prefixes, ids = decode_prefixes_with_ids(data, limit)
        return tuple(prefixes), tuple(ids)
    return tuple(decode_prefixes(data, limit)), ()


@dataclass(frozen=True, slots=True)
class MpReach:
    """MP_REACH_NLRI (RFC 4760 §3).

    ``next_hop`` is the raw Network Address of Next Hop: 4 octets for IPv4; 16 for an
    IPv6 global address, or 32 for global plus link-local (RFC 2545 §3); IPv4 NLRI
    may have an IPv6 next hop (RFC 8950).  For a family this codec does not parse,
    ``nlri`` is empty and the raw NLRI octets are in ``unparsed``.
    """

    family: Family
    next_hop: bytes
    nlri: tuple[Prefix, ...] = ()
    path_ids: tuple[int, ...] = ()
    unparsed: bytes = b""

    def __post_init__(self) -> None:
        if self.family in PREFIX_FAMILIES:
            if len(self.next_hop) not in _NEXT_HOP_LENGTHS[self.family.afi]:
                raise ValueError(f"{len(self.next_hop)}-octet next hop for {self.family}")
            if self.unparsed:
                raise ValueError(f"{self.family} NLRI are parsed, not kept raw")
        elif len(self.next_hop) > 255:
            raise ValueError("next hop is at most 255 octets")
        _check_prefixes(self.family, self.nlri, self.path_ids)

    @property
    def global_next_hop(self) -> bytes:
        """The next hop address, without an IPv6 link-local part (RFC 2545 §3)."""
        return self.next_hop[:16] if len(self.next_hop) == 32 else self.next_hop

    @property
    def link_local_next_hop(self) -> bytes | None:
        return self.next_hop[16:] if len(self.next_hop) == 32 else None

    def encode_value(self, path_ids: bool) -> bytes:
        _check_path_ids(self.family, self.nlri, self.path_ids, path_ids)
        head = struct.pack(">HBB", self.family.afi, self.family.safi, len(self.next_hop))
        return (
            head + self.next_hop + b"\0" + encode_prefixes(self.nlri, self.path_ids) + self.unparsed
        )


@dataclass(frozen=True, slots=True)
class MpUnreach:
    """MP_UNREACH_NLRI (RFC 4760 §4)."""

    family: Family
    withdrawn: tuple[Prefix, ...] = ()
    path_ids: tuple[int, ...] = ()
    unparsed: bytes = b""

    def __post_init__(self) -> None:
        if self.unparsed and self.family in PREFIX_FAMILIES:
            raise ValueError(f"{self.family} NLRI are parsed, not kept raw")
        _check_prefixes(self.family, self.withdrawn, self.path_ids)

    def encode_value(self, path_ids: bool) -> bytes:
        _check_path_ids(self.family, self.withdrawn, self.path_ids, path_ids)
        head = struct.pack(">HB", self.family.afi, self.family.safi)
        return head + encode_prefixes(self.withdrawn, self.path_ids) + self.unparsed


def _check_path_ids(
    family: Family, prefixes: tuple[Prefix, ...], ids: tuple[int, ...], negotiated: bool
) -> None:
    if negotiated and len(ids) != len(prefixes):
        raise ValueError(f"ADD-PATH is negotiated for {family}: every prefix needs a path id")
    if not negotiated and ids:
        raise ValueError(f"ADD-PATH is not negotiated for {family}: no path ids may be sent")


@dataclass(frozen=True, slots=True)
class Update(Message):
    """UPDATE: withdrawn routes, path attributes, NLRI, and the MP attributes."""

    message_type: ClassVar[MessageType] = MessageType.UPDATE
    withdrawn: tuple[Prefix, ...] = ()
    attributes: PathAttributes = EMPTY_ATTRIBUTES
    nlri: tuple[Prefix, ...] = ()
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    withdrawn_path_ids: tuple[int, ...] = ()
    nlri_path_ids: tuple[int, ...] = ()
    discarded: tuple[UpdateMessageError, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_prefixes(IPV4_UNICAST, self.withdrawn, self.withdrawn_path_ids)
        _check_prefixes(IPV4_UNICAST, self.nlri, self.nlri_path_ids)

    @classmethod
    def end_of_rib(cls, family: Family = IPV4_UNICAST) -> Update:
        """The End-of-RIB marker for ``family`` (RFC 4724 §2)."""
        if family == IPV4_UNICAST:
            return cls()
        return cls(mp_unreach=MpUnreach(family))

    @property
    def end_of_rib_family(self) -> Family | None:
        """The family this UPDATE marks End-of-RIB for, or None (RFC 4724 §2)."""
        if self.withdrawn or self.nlri or self.mp_reach is not None or self.discarded:
            return None
        attrs = self.attributes
        if attrs is not EMPTY_ATTRIBUTES and attrs != EMPTY_ATTRIBUTES:
            return None
        # A decoded UPDATE remembers every attribute it held, even ones dropped:
        # only a bare minimum-length UPDATE, or one with nothing but an empty
        # MP_UNREACH_NLRI, is a marker.
        layout = attrs.wire_flags or b""
        if self.mp_unreach is None:
            return IPV4_UNICAST if not layout else None
        u = self.mp_unreach
        if layout and (len(layout) != 2 or layout[0] != AttrType.MP_UNREACH_NLRI):
            return None
            return None
        return u.family if not u.withdrawn and not u.unparsed else None

    def encode_body(self, context: SessionContext) -> bytes:
        send_ids = context.send_path_id(IPV4_UNICAST)
        _check_path_ids(IPV4_UNICAST, self.withdrawn, self.withdrawn_path_ids, send_ids)
        _check_path_ids(IPV4_UNICAST, self.nlri, self.nlri_path_ids, send_ids)
        withdrawn = encode_prefixes(self.withdrawn, self.withdrawn_path_ids)
        reach = self.mp_reach
        unreach = self.mp_unreach
        if self.attributes is EMPTY_ATTRIBUTES and reach is None and unreach is None:
            attrs = b""
        else:
            attrs = encode_attribute_block(
                self.attributes,
                context.four_octet_as,
                reach.encode_value(context.send_path_id(reach.family)) if reach else None,
                unreach.encode_value(context.send_path_id(unreach.family)) if unreach else None,
            )
        nlri = encode_prefixes(self.nlri, self.nlri_path_ids)
        return (
            struct.pack(">H", len(withdrawn))
            + withdrawn
            + struct.pack(">H", len(attrs))
            + attrs
            + nlri
        )

    @classmethod
    def decode_body(cls, body: bytes, context: SessionContext) -> Update:
        """Decode an UPDATE body (RFC 4271 §4.3, §6.3; RFC 4760; RFC 7606; RFC 7911)."""
        n = len(body)
        wlen = (body[0] << 8) | body[1]
        if 4 + wlen > n:
            raise UpdateMessageError(
                UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                b"",
                "withdrawn routes length overruns the message",
            )
        alen = (body[2 + wlen] << 8) | body[3 + wlen]
        astart = 4 + wlen
        if astart + alen > n:
            raise UpdateMessageError(
                UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                b"",
                "path attribute length overruns the message",
            )
        v4_ids = IPV4_UNICAST in context.add_path_receive
        withdrawn: tuple[Prefix, ...]
        nlri: tuple[Prefix, ...]
        withdrawn_ids: tuple[int, ...]
        nlri_ids: tuple[int, ...]
        try:
            if wlen:
                withdrawn, withdrawn_ids = _split(body[2 : 2 + wlen], IPV4_UNICAST, v4_ids)
            else:
                withdrawn, withdrawn_ids = (), ()
            if astart + alen == n:
                nlri, nlri_ids = (), ()
            elif v4_ids:
                nlri, nlri_ids = _split(body[astart + alen :], IPV4_UNICAST, True)
            else:
                nlri, nlri_ids = tuple(decode_prefixes(body[astart + alen :], 32)), ()
        except NlriError as e:
            # RFC 7606 §5.3: prefixes that cannot be parsed leave no way to withdraw them.
            raise UpdateMessageError(UpdateSubcode.INVALID_NETWORK_FIELD, b"", str(e)) from None
        if not alen:
            if nlri:
                raise _missing_error(withdrawn, withdrawn_ids, nlri, nlri_ids)
            return _new_update(
                withdrawn, EMPTY_ATTRIBUTES, nlri, None, None, withdrawn_ids, nlri_ids, ()
            )
        block = decode_attribute_block(body[astart : astart + alen], context)
        attributes = block.attributes
        faults = list(block.faults)
        reach = unreach = None
        if block.mp_reach is not None:
            reach = _decode_reach(block.mp_reach, context, faults)
        if block.mp_unreach is not None:
            unreach = _decode_unreach(block.mp_unreach, context, faults)
        if nlri or (reach is not None and (reach.nlri or reach.unparsed)):
            # RFC 7606 §3 d: ORIGIN, AS_PATH, and NEXT_HOP for IPv4 NLRI, must be present.
            required = (attributes.origin, attributes.as_path) + (
                (attributes.next_hop,) if nlri else ()
            )
            if None in required:
                codes = (AttrType.ORIGIN, AttrType.AS_PATH, AttrType.NEXT_HOP)
                missing = codes[required.index(None)]
                faults.append(
                    UpdateMessageError(
                        UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
                        bytes((missing,)),
                        f"mandatory attribute {missing} is missing",
                        Action.TREAT_AS_WITHDRAW,
                    )
                )
        if faults and not nlri:
            # RFC 4760 §3 / RFC 7606 §3 d: without IPv4 NLRI a NEXT_HOP is not needed,
            # so a bad one is ignored rather than withdrawing the MP routes.
            for fault in faults:
                if (
                    fault.attribute == AttrType.NEXT_HOP
                    and fault.action == Action.TREAT_AS_WITHDRAW
                ):
                    fault.action = Action.ATTRIBUTE_DISCARD
        if not faults:
            return _new_update(
                withdrawn, attributes, nlri, reach, unreach, withdrawn_ids, nlri_ids, ()
            )
        update = _new_update(
            withdrawn, attributes, nlri, reach, unreach, withdrawn_ids, nlri_ids, tuple(faults)
        )
        return _apply_faults(update, faults)


_new_update = trusted_builder(Update)
_new_reach = trusted_builder(MpReach)
_new_unreach = trusted_builder(MpUnreach)


def _missing_error(
    withdrawn: tuple[Prefix, ...],
    withdrawn_ids: tuple[int, ...],
    nlri: tuple[Prefix, ...],
    nlri_ids: tuple[int, ...],
) -> UpdateMessageError:
    """NLRI with no path attributes at all: treat-as-withdraw (RFC 7606 §3 d)."""
    err = UpdateMessageError(
        UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
        bytes((AttrType.ORIGIN,)),
        "NLRI present but no path attributes",
        Action.TREAT_AS_WITHDRAW,
    )
    err.updates = (Update(withdrawn + nlri, withdrawn_path_ids=withdrawn_ids + nlri_ids),)
    return err


def _reach_fault(raw: RawAttribute, family: Family | None, reason: str) -> UpdateMessageError:
    # RFC 7606 §7.11 and RFC 4760 §7: the NLRI cannot be located reliably, so the whole
    # family goes (AFI/SAFI disable) or, when even the family is unreadable, the session.
    action = Action.AFI_SAFI_DISABLE if family is not None else Action.SESSION_RESET
    return UpdateMessageError(
        UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, raw.whole, reason, action, family=family
    )


def _decode_reach(
    raw: RawAttribute, context: SessionContext, faults: list[UpdateMessageError]
) -> MpReach | None:
    """MP_REACH_NLRI value (RFC 4760 §3)."""
    value = raw.value
    if len(value) < 5:
        faults.append(_reach_fault(raw, None, "MP_REACH_NLRI shorter than 5 octets"))
        return None
    afi, safi, nh_len = struct.unpack_from(">HBB", value)
    family = Family(afi, safi)
    nh_end = 4 + nh_len
    if nh_end + 1 > len(value):
        faults.append(_reach_fault(raw, family, f"next hop length {nh_len} overruns the attribute"))
        return None
    next_hop = value[4:nh_end]
    # The octet after the next hop is Reserved (formerly the SNPA count): ignored.
    data = value[nh_end + 1 :]
    if family not in PREFIX_FAMILIES:
        return _new_reach(family, next_hop, (), (), data)
    if nh_len not in _NEXT_HOP_LENGTHS[afi]:
        faults.append(
            _reach_fault(raw, family, f"next hop length {nh_len} is invalid for {family}")
        )
        return None
    try:
        prefixes, ids = _split(data, family, family in context.add_path_receive)
    except NlriError as e:
        faults.append(_reach_fault(raw, family, f"MP_REACH_NLRI: {e}"))
        return None
    return _new_reach(family, next_hop, prefixes, ids, b"")


def _decode_unreach(
    raw: RawAttribute, context: SessionContext, faults: list[UpdateMessageError]
) -> MpUnreach | None:
    """MP_UNREACH_NLRI value (RFC 4760 §4)."""
    value = raw.value
    if len(value) < 3:
        faults.append(_reach_fault(raw, None, "MP_UNREACH_NLRI shorter than 3 octets"))
        return None
    afi, safi = struct.unpack_from(">HB", value)
    family = Family(afi, safi)
    if family not in PREFIX_FAMILIES:
        return _new_unreach(family, (), (), value[3:])
    try:
        prefixes, ids = _split(value[3:], family, family in context.add_path_receive)
    except NlriError as e:
        faults.append(_reach_fault(raw, family, f"MP_UNREACH_NLRI: {e}"))
        return None
    return _new_unreach(family, prefixes, ids, b"")


def _withdrawals(update: Update, skip: Family | None = None) -> tuple[Update, ...]:
    """UPDATEs withdrawing every prefix ``update`` announces or withdraws (RFC 7606 §2)."""
    out = []
    v4 = update.withdrawn + update.nlri
    v4_ids = update.withdrawn_path_ids + update.nlri_path_ids
    mp: dict[Family, tuple[tuple[Prefix, ...], tuple[int, ...]]] = {}
    for part in (update.mp_unreach, update.mp_reach):
        if part is None or part.family == skip or part.family not in PREFIX_FAMILIES:
            continue
        prefixes = part.withdrawn if isinstance(part, MpUnreach) else part.nlri
        old = mp.get(part.family, ((), ()))
        mp[part.family] = (old[0] + prefixes, old[1] + part.path_ids)
    if IPV4_UNICAST in mp:
        extra, extra_ids = mp.pop(IPV4_UNICAST)
        v4 += extra
        v4_ids += extra_ids
    if v4 and skip != IPV4_UNICAST:
        out.append(Update(v4, withdrawn_path_ids=v4_ids))
    for family, (prefixes, ids) in mp.items():
        if prefixes:
            out.append(Update(mp_unreach=MpUnreach(family, prefixes, ids)))
    return tuple(out)


def _apply_faults(update: Update, faults: list[UpdateMessageError]) -> Update:
    """Apply the strongest RFC 7606 action among ``faults`` (RFC 7606 §3)."""
    ordered = sorted(faults, key=lambda f: -f.action)
    strongest = ordered[0]
    strongest.faults = tuple(ordered)
    if strongest.action == Action.ATTRIBUTE_DISCARD:
        return update
    if strongest.action == Action.SESSION_RESET:
        raise strongest
    taw = any(f.action == Action.TREAT_AS_WITHDRAW for f in faults)
    if strongest.action == Action.TREAT_AS_WITHDRAW:
        strongest.updates = _withdrawals(update)
        raise strongest
    # AFI/SAFI disable: the family goes; the rest is applied, as withdrawals if it
    # also had a treat-as-withdraw fault.
    disabled = {f.family for f in faults if f.action == Action.AFI_SAFI_DISABLE}
    if taw:
        strongest.updates = tuple(u for u in _withdrawals(update) if _family_of(u) not in disabled)
    else:
        keep_reach = (
            update.mp_reach if update.mp_reach and update.mp_reach.family not in disabled else None
        )
        keep_unreach = (
            update.mp_unreach
            if update.mp_unreach and update.mp_unreach.family not in disabled
            else None
        )
        v4 = IPV4_UNICAST not in disabled
        rest = Update(
            update.withdrawn if v4 else (),
            update.attributes,
            update.nlri if v4 else (),
            keep_reach,
            keep_unreach,
            update.withdrawn_path_ids if v4 else (),
            update.nlri_path_ids if v4 else (),
        )
        has_routes = rest.withdrawn or rest.nlri or keep_reach or keep_unreach
        strongest.updates = (rest,) if has_routes else ()
    raise strongest


def _family_of(update: Update) -> Family:
    if update.mp_unreach is not None:
        return update.mp_unreach.family
    return IPV4_UNICAST

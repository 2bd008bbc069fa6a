"""UPDATE packing: many prefixes per message, each encoding shared by every peer
that receives the same bytes (RFC 4271 §4.3, §9.2; RFC 4760 §3-4).

Prefixes that share an ``Advert`` (attributes and next hop) go into as few
UPDATEs as the message size allows (4,096 octets, or 65,535 with RFC 8654);
withdrawals are packed the same way.  The bytes are built directly: the
attribute block is encoded once per advert and wire parameters, and only the
NLRI differ between messages.  ``UpdateEncoder`` remembers what it produced for
one batch, keyed by (family, advert, prefixes, wire parameters), so fifty
route-reflector clients that are sent the same routes cost one encoding.

For IPv4 unicast with an IPv4 next hop the NLRI sit in the UPDATE body and the
next hop in NEXT_HOP; every other case uses MP_REACH_NLRI / MP_UNREACH_NLRI.
Towards a 2-octet-AS speaker, AS4_PATH carries the real path (RFC 6793 §4.2.2).
When ADD-PATH send was negotiated, our single best path goes with Path
Identifier 1 (RFC 7911 §3).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from bgpd.messages import IPV4_UNICAST, Family, PathAttributes, Prefix, SessionContext
from bgpd.messages.aspath import to_two_octet
from bgpd.messages.attribute_codec import attribute_bytes, encode_attribute_block
from bgpd.messages.codes import AttrType

from .export import Advert

_MARKER = b"\xff" * 16
_HEADER = 19
_PATH_ID = struct.pack(">I", 1)
# Flags of MP_UNREACH_NLRI as sent: optional, extended length.
_OPT_EXT = 0x90

EncodeKey = tuple[Family, Advert | None, tuple[Prefix, ...], bool, bool, int]


def _message(body: bytes) -> bytes:
    return _MARKER + struct.pack(">HB", _HEADER + len(body), 2) + body


def _chunks(prefixes: Iterable[bytes], budget: int) -> list[bytes]:
    """Concatenated NLRI fields, each at most ``budget`` octets."""
    out: list[bytes] = []
    part: list[bytes] = []
    size = 0
    for p in prefixes:
        if size + len(p) > budget and part:
            out.append(b"".join(part))
            part, size = [], 0
        part.append(p)
        size += len(p)
    if part:
        out.append(b"".join(part))
    return out


class UpdateEncoder:
    """Encodes announcements and withdrawals; results are shared within a batch."""

    def __init__(self) -> None:
        self._memo: dict[EncodeKey, list[bytes]] = {}
        self._blocks: dict[tuple[Advert, bool], bytes] = {}

    def new_batch(self) -> None:
        """Forget the last batch's messages (the attribute blocks stay, bounded)."""
        self._memo.clear()
        if len(self._blocks) > 65536:
            self._blocks.clear()

    def announce(
        self, family: Family, advert: Advert, prefixes: tuple[Prefix, ...], ctx: SessionContext
    ) -> list[bytes]:
        ids = ctx.send_path_id(family)
        key = (family, advert, prefixes, ctx.four_octet_as, ids, ctx.max_message_length)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._announce(family, advert, prefixes, ctx, ids)
        return found

    def withdraw(
        self, family: Family, prefixes: tuple[Prefix, ...], ctx: SessionContext
    ) -> list[bytes]:
        ids = ctx.send_path_id(family)
        key = (family, None, prefixes, ctx.four_octet_as, ids, ctx.max_message_length)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._withdraw(family, prefixes, ctx, ids)
        return found

    def _attributes(self, advert: Advert, four: bool, v4_hop: bool) -> PathAttributes:
        attrs = advert.attributes
        if v4_hop:
            attrs = attrs.replace(next_hop=advert.next_hop)
        if not four and attrs.as_path is not None:
            _path, as4 = to_two_octet(attrs.as_path)
            if as4 is not None:
                attrs = attrs.replace(as4_path=as4)
        return attrs

    def _announce(
        self,
        family: Family,
        advert: Advert,
        prefixes: tuple[Prefix, ...],
        ctx: SessionContext,
        ids: bool,
    ) -> list[bytes]:
        four = ctx.four_octet_as
        limit = ctx.max_message_length
        nlri = [_PATH_ID + p for p in prefixes] if ids else prefixes
        if family == IPV4_UNICAST and len(advert.next_hop) == 4:
            block = self._blocks.get((advert, four))
            if block is None:
                block = encode_attribute_block(self._attributes(advert, four, True), four)
                self._blocks[(advert, four)] = block
            head = b"\x00\x00" + struct.pack(">H", len(block)) + block
            budget = limit - _HEADER - len(head)
            return [_message(head + part) for part in _chunks(nlri, budget)]
        attrs = self._attributes(advert, four, False)
        hop = advert.next_hop
        mp_head = struct.pack(">HBB", family.afi, family.safi, len(hop)) + hop + b"\x00"
        # The MP_REACH attribute grows with the NLRI: size the rest with an empty
        # one, which already uses the extended (2-octet) length form once large.
        rest = len(encode_attribute_block(attrs, four, mp_head + b"\x00" * 256)) - 256
        budget = limit - _HEADER - 4 - rest
        out = []
        for part in _chunks(nlri, budget):
            block = encode_attribute_block(attrs, four, mp_head + part)
            out.append(_message(b"\x00\x00" + struct.pack(">H", len(block)) + block))
        return out

    def _withdraw(
        self, family: Family, prefixes: tuple[Prefix, ...], ctx: SessionContext, ids: bool
    ) -> list[bytes]:
        limit = ctx.max_message_length
        nlri = [_PATH_ID + p for p in prefixes] if ids else prefixes
        if family == IPV4_UNICAST:
            parts = _chunks(nlri, limit - _HEADER - 4)
            return [_message(struct.pack(">H", len(part)) + part + b"\x00\x00") for part in parts]
        head = struct.pack(">HB", family.afi, family.safi)
        out = []
        for part in _chunks(nlri, limit - _HEADER - 4 - 4 - len(head)):
            block = attribute_bytes(AttrType.MP_UNREACH_NLRI, _OPT_EXT, head + part)
            out.append(_message(b"\x00\x00" + struct.pack(">H", len(block)) + block))
        return out

"""AS_PATH and AS4_PATH: segments, their wire forms, and the RFC 6793 transition.

An ``AsPath`` is a tuple of segments exactly as they were on the wire (a sequence
longer than 255 ASNs arrives split, and stays split, so bytes round-trip).  AS
numbers are always held as full 32-bit values; the 2- or 4-octet width is a
property of the session (``SessionContext.four_octet_as``), applied only at the
wire.

RFC 6793 §4.2.3: a NEW speaker talking to an OLD one sends AS_TRANS in place of
4-octet ASNs in AS_PATH and the real path in AS4_PATH; receiving from an OLD
speaker it rebuilds the real path.  ``to_two_octet`` and ``reconstruct`` do those
two steps; decoding itself stays faithful to the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from .codes import AS_TRANS, AsPathSegmentType
from .message import trusted_builder

_SET = AsPathSegmentType.AS_SET
_SEQUENCE = AsPathSegmentType.AS_SEQUENCE
_CONFED = (AsPathSegmentType.AS_CONFED_SEQUENCE, AsPathSegmentType.AS_CONFED_SET)
MAX_SEGMENT = 255


class AsPathError(ValueError):
    """A malformed AS_PATH or AS4_PATH value."""


class AsPathSegment(NamedTuple):
    """One path segment: its type (RFC 4271 §4.3, RFC 5065 §3) and ASNs."""

    type: int
    asns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AsPath:
    """An AS_PATH value (RFC 4271 §4.3)."""

    segments: tuple[AsPathSegment, ...] = ()

    def __post_init__(self) -> None:
        for seg in self.segments:
            if not 1 <= seg.type <= 4:
                raise ValueError(f"AS path segment type {seg.type} is not 1..4")
            if not 1 <= len(seg.asns) <= MAX_SEGMENT:
                raise ValueError("an AS path segment holds 1..255 ASNs")
            for asn in seg.asns:
                if not 0 <= asn <= 0xFFFFFFFF:
                    raise ValueError(f"AS {asn} does not fit 32 bits")

    @classmethod
    def sequence(cls, *asns: int) -> AsPath:
        """A path of one AS_SEQUENCE (split into 255-ASN segments when longer)."""
        return cls(
            tuple(
                AsPathSegment(_SEQUENCE, tuple(asns[i : i + MAX_SEGMENT]))
                for i in range(0, len(asns), MAX_SEGMENT)
            )
        )

    def length(self) -> int:
        """Path length for the decision process: a set counts one, confederation
        segments count zero (RFC 4271 §9.1.2.2 a, RFC 5065 §5.3)."""
        total = 0
        for seg in self.segments:
            if seg.type == _SEQUENCE:
                total += len(seg.asns)
            elif seg.type == _SET:
                total += 1
        return total

    def first_as(self) -> int | None:
        """The neighbouring AS: leftmost ASN of a leading AS_SEQUENCE (RFC 4271 §9.1.2.2 c)."""
        for seg in self.segments:
            if seg.type in _CONFED:
                continue
            return seg.asns[0] if seg.type == _SEQUENCE else None
        return None

    def origin_as(self) -> int | None:
        """The originating AS: last ASN of the final AS_SEQUENCE, if it ends in one."""
        if self.segments and self.segments[-1].type == _SEQUENCE:
            return self.segments[-1].asns[-1]
        return None

    def count(self, asn: int) -> int:
        """How many times ``asn`` occurs anywhere in the path (loop detection, RFC 4271 §9.1.2)."""
        segments = self.segments
        if len(segments) == 1:
            return segments[0].asns.count(asn)
        return sum(seg.asns.count(asn) for seg in segments)

    def prepend(self, asn: int, times: int = 1) -> AsPath:
        """The path with ``asn`` prepended to its leading sequence (RFC 4271 §5.1.2).
        Export does this once per UPDATE sent: the unchanged segments are not
        checked again."""
        if not 0 <= asn <= 0xFFFFFFFF:
            raise ValueError(f"AS {asn} does not fit 32 bits")
        segs = self.segments
        add = (asn,) * times
        if segs and segs[0].type == _SEQUENCE and len(segs[0].asns) + times <= MAX_SEGMENT:
            first = tuple.__new__(AsPathSegment, (_SEQUENCE, add + segs[0].asns))
            return _new_path((first, *segs[1:]))
        return AsPath(AsPath.sequence(*add).segments + segs)

    def without_confederation(self) -> AsPath:
        """The path with confederation segments removed (RFC 5065 §5.1.2)."""
        return AsPath(tuple(s for s in self.segments if s.type not in _CONFED))

    def needs_four_octets(self) -> bool:
        return any(asn > 0xFFFF for seg in self.segments for asn in seg.asns)

    def encode(self, four_octet: bool) -> bytes:
        """The attribute value with 2- or 4-octet ASNs; 4-octet ASNs become AS_TRANS
        in the 2-octet form (RFC 6793 §4.2.2)."""
        out = []
        for seg in self.segments:
            n = len(seg.asns)
            if four_octet:
                out.append(struct.pack(f">BB{n}I", seg.type, n, *seg.asns))
            else:
                asns = [a if a <= 0xFFFF else AS_TRANS for a in seg.asns]
                out.append(struct.pack(f">BB{n}H", seg.type, n, *asns))
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes, four_octet: bool) -> AsPath:
        """Parse an AS_PATH/AS4_PATH value; ``AsPathError`` when malformed (RFC 7606 §7.2)."""
        size = 4 if four_octet else 2
        code = "I" if four_octet else "H"
        n = len(data)
        # Fast path: one AS_SEQUENCE, the shape of nearly every path on the Internet.
        if n > 2 and data[0] == 2 and data[1] and 2 + data[1] * size == n:
            asns = struct.unpack(f">{data[1]}{code}", data[2:])
            return _new_path((_new_segment(AsPathSegment, (2, asns)),))
        segments = []
        i = 0
        while i < n:
            if i + 2 > n:
                raise AsPathError("truncated segment header")
            stype = data[i]
            count = data[i + 1]
            end = i + 2 + count * size
            if not 1 <= stype <= 4:
                raise AsPathError(f"segment type {stype} is undefined")
            if count == 0:
                raise AsPathError("zero-length segment")
            if end > n:
                raise AsPathError("segment overruns the attribute")
            asns = struct.unpack(f">{count}{code}", data[i + 2 : end])
            segments.append(_new_segment(AsPathSegment, (stype, asns)))
            i = end
        return _new_path(tuple(segments))

    def __str__(self) -> str:
        parts = []
        for seg in self.segments:
            text = " ".join(map(str, seg.asns))
            if seg.type == _SEQUENCE:
                parts.append(text)
            elif seg.type == _SET:
                parts.append("{" + text + "}")
            elif seg.type == AsPathSegmentType.AS_CONFED_SEQUENCE:
                parts.append("(" + text + ")")
            else:
                parts.append("[" + text + "]")
        return " ".join(parts)


EMPTY_PATH = AsPath()
_new_path = trusted_builder(AsPath)
_new_segment = tuple.__new__  # NamedTuple's own __new__ is a slow Python function


def reconstruct(as_path: AsPath, as4_path: AsPath | None) -> AsPath:
    """Rebuild the real path from AS_PATH and AS4_PATH sent by an OLD speaker
    (RFC 6793 §4.2.3).

    When AS4_PATH is longer than AS_PATH it is ignored; otherwise the leading
    ASNs of AS_PATH that AS4_PATH does not cover are kept and AS4_PATH follows.
    Confederation segments in AS4_PATH are ignored (RFC 6793 §6).
    """
    if as4_path is None:
        return as_path
    as4 = AsPath(tuple(s for s in as4_path.segments if s.type not in _CONFED))

    # Count ASNs as RFC 6793 does: a set is one, confederation segments count too.
    def n_as(path: AsPath) -> int:
        return sum(
            1 if s.type in (_SET, AsPathSegmentType.AS_CONFED_SET) else len(s.asns)
            for s in path.segments
        )

    keep = n_as(as_path) - n_as(as4)
    if keep < 0:
        return as_path
    head: list[AsPathSegment] = []
    for seg in as_path.segments:
        if keep <= 0:
            break
        if seg.type in (_SET, AsPathSegmentType.AS_CONFED_SET):
            head.append(seg)
            keep -= 1
        else:
            take = seg.asns[:keep]
            head.append(AsPathSegment(seg.type, take))
            keep -= len(take)
    merged = head + list(as4.segments)
    # Join a trailing head sequence with a leading AS4 sequence when they fit one segment.
    if (
        len(head) >= 1
        and as4.segments
        and head[-1].type == _SEQUENCE
        and as4.segments[0].type == _SEQUENCE
        and len(head[-1].asns) + len(as4.segments[0].asns) <= MAX_SEGMENT
    ):
        joined = AsPathSegment(_SEQUENCE, head[-1].asns + as4.segments[0].asns)
        merged = [*head[:-1], joined, *as4.segments[1:]]
    return AsPath(tuple(merged))


def to_two_octet(as_path: AsPath) -> tuple[AsPath, AsPath | None]:
    """AS_PATH and AS4_PATH to send to an OLD speaker (RFC 6793 §4.2.2).

    The AS_PATH keeps the real values (the 2-octet encoder writes AS_TRANS for
    the large ones); AS4_PATH is sent only when some ASN needs 4 octets, and
    never carries confederation segments.
    """
    if not as_path.needs_four_octets():
        return as_path, None
    return as_path, AsPath(tuple(s for s in as_path.segments if s.type not in _CONFED))

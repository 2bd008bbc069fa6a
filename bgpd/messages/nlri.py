"""Prefixes in their packed wire form, and the NLRI lists that carry them.

RFC 4271 §4.3 encodes a prefix as a length in bits followed by just enough octets
to hold that many bits.  That form is compact, hashable and canonical once the
trailing pad bits are zero, so it is the project's prefix representation
everywhere (RIB keys, kernel requests): a ``Prefix`` is ``bytes`` such as
``b"\\x18\\x0a\\x01\\x02"`` for 10.1.2.0/24.  The address family travels beside it.

RFC 7911 §3 puts a 4-octet Path Identifier in front of each prefix when ADD-PATH is
negotiated for the family and direction; those are kept in a parallel tuple.
"""

from __future__ import annotations

import ipaddress
import re
import struct

from .codes import Afi

Prefix = bytes

#: Octets that follow the length octet, per prefix length in bits; lengths past 128
#: map to a huge value so the overrun check below also rejects them.
_OCTETS = [(bits + 7) >> 3 for bits in range(129)] + [1 << 30] * 127
#: Mask of the pad bits in the last octet, per prefix length.
_PAD = [(0xFF >> (bits & 7)) if bits & 7 else 0 for bits in range(256)]
_MAX_BITS: dict[int, int] = {Afi.IPV4: 32, Afi.IPV6: 128}
_ADDR_LEN: dict[int, int] = {Afi.IPV4: 4, Afi.IPV6: 16}


def _splitter(limit: int, with_id: bool) -> re.Pattern[bytes]:
    """A regex matching one canonical prefix (or path id + prefix) of up to ``limit`` bits.

    Each alternative is a length octet followed by exactly the octets it needs, the
    last one drawn from the values whose pad bits are zero; so ``findall`` splits a
    whole NLRI field in C, and the matches tile the field exactly when it is well
    formed and canonical.  Common lengths come first: only one branch can match at
    a position, so order affects speed only.
    """
    common = [24, 22, 23, 16, 20, 21, 19, 18, 17, 48, 64, 32, 56, 40, 128, 44, 36]
    order = list(dict.fromkeys([b for b in common if b <= limit] + list(range(limit + 1))))
    alternatives = []
    for bits in order:
        octets = (bits + 7) >> 3
        head = re.escape(bytes([bits]))
        pad = (0xFF >> (bits & 7)) if bits & 7 else 0
        if octets == 0:
            alternatives.append(head)
        elif pad:
            allowed = b"".join(re.escape(bytes([v])) for v in range(256) if not v & pad)
            alternatives.append(head + b"." * (octets - 1) + b"[" + allowed + b"]")
        else:
            alternatives.append(head + b"." * octets)
    body = b"(?:" + b"|".join(alternatives) + b")"
    return re.compile(b"(....)(" + body + b")" if with_id else body, re.S)


_SPLIT = {limit: _splitter(limit, False) for limit in (32, 128)}
_SPLIT_ID = {limit: _splitter(limit, True) for limit in (32, 128)}


class NlriError(ValueError):
    """An NLRI field that cannot be parsed; the caller decides the RFC 7606 action."""


def max_bits(afi: int) -> int:
    """Longest prefix length valid for ``afi``."""
    return _MAX_BITS[afi]


def _canonical(data: bytes, start: int, end: int) -> bytes:
    """The prefix with its pad bits cleared (RFC 4271 §4.3: their value is irrelevant)."""
    raw = bytearray(data[start:end])
    raw[-1] &= 0xFF ^ _PAD[raw[0]]
    return bytes(raw)


def decode_prefixes(data: bytes, bits_limit: int) -> list[Prefix]:
    """Split an NLRI field into packed prefixes (RFC 4271 §4.3)."""
    found: list[Prefix] = _SPLIT[bits_limit].findall(data)
    # The matches tile the field exactly when nothing was skipped.
    if len(b"".join(found)) == len(data):
        return found
    return _decode_slowly(data, bits_limit)


def _decode_slowly(data: bytes, bits_limit: int) -> list[Prefix]:
    """The same split, one prefix at a time: clears pad bits, or says what is wrong."""
    out: list[Prefix] = []
    i = 0
    n = len(data)
    while i < n:
        bits = data[i]
        end = i + 1 + _OCTETS[bits]
        if end > n or bits > bits_limit:
            raise NlriError(f"prefix length {bits} at offset {i} overruns or exceeds {bits_limit}")
        if _PAD[bits] and data[end - 1] & _PAD[bits]:
            out.append(_canonical(data, i, end))
        else:
            out.append(data[i:end])
        i = end
    return out


def decode_prefixes_with_ids(data: bytes, bits_limit: int) -> tuple[list[Prefix], list[int]]:
    """Split an ADD-PATH NLRI field into prefixes and Path Identifiers (RFC 7911 §3)."""
    found: list[tuple[bytes, bytes]] = _SPLIT_ID[bits_limit].findall(data)
    if sum(4 + len(p) for _i, p in found) == len(data):
        return [p for _i, p in found], [int.from_bytes(i, "big") for i, _p in found]
    out: list[Prefix] = []
    ids: list[int] = []
    i = 0
    n = len(data)
    while i < n:
        if i + 5 > n:
            raise NlriError(f"path identifier at offset {i} overruns the field")
        ids.append(int.from_bytes(data[i : i + 4], "big"))
        out += _decode_slowly(data[i + 4 : i + 5 + _OCTETS[data[i + 4]]], bits_limit)
        i += 5 + _OCTETS[data[i + 4]]
    return out, ids


def encode_prefixes(prefixes: tuple[Prefix, ...], path_ids: tuple[int, ...] = ()) -> bytes:
    """The NLRI field for ``prefixes``, with Path Identifiers when given (RFC 7911 §3)."""
    if not path_ids:
        return b"".join(prefixes)
    pack = struct.Struct(">I").pack
    return b"".join([pack(pid) + p for pid, p in zip(path_ids, prefixes, strict=True)])


def is_valid_prefix(prefix: Prefix, afi: int) -> bool:
    """True for a canonical packed prefix of ``afi``."""
    limit = _MAX_BITS.get(afi)
    if not prefix or limit is None:
        return False
    bits = prefix[0]
    return (
        bits <= limit
        and len(prefix) == 1 + _OCTETS[bits]
        and not (_PAD[bits] and prefix[-1] & _PAD[bits])
    )


def prefix_from_text(text: str) -> tuple[Afi, Prefix]:
    """Parse ``"10.0.0.0/8"`` or ``"2001:db8::/32"`` into (AFI, packed prefix).

    Host bits set beyond the length are an error, as in ``ipaddress``.
    """
    net = ipaddress.ip_network(text, strict=True)
    bits = net.prefixlen
    afi = Afi.IPV4 if net.version == 4 else Afi.IPV6
    return afi, bytes([bits]) + net.network_address.packed[: _OCTETS[bits]]


def prefix_to_text(prefix: Prefix, afi: int) -> str:
    """Format a packed prefix as ``address/length``."""
    bits = prefix[0]
    size = _ADDR_LEN[afi]
    packed = prefix[1:].ljust(size, b"\0")
    address = ipaddress.IPv4Address(packed) if size == 4 else ipaddress.IPv6Address(packed)
    return f"{address}/{bits}"


def prefix_network(prefix: Prefix, afi: int) -> bytes:
    """The full-width network address of a packed prefix (for netlink and display)."""
    return prefix[1:].ljust(_ADDR_LEN[afi], b"\0")

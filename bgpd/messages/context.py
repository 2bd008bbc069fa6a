"""What a session negotiated, as far as the wire format depends on it.

The OPEN exchange decides how later messages are laid out: 2- or 4-octet AS
numbers in AS_PATH and AGGREGATOR (RFC 6793), path identifiers in front of NLRI
per family and direction (RFC 7911), and the maximum message length (RFC 8654).
Decoding reads the receive side, encoding the send side.

``SessionContext()`` with no arguments describes a modern peer: 4-octet AS, no
ADD-PATH, 4096-byte messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codes import MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN, Family

#: Decoded attribute sets are cached under their raw octets.  Past this many octets
#: of keys the cache starts afresh: memory stays bounded (a few tens of MB per
#: session) without the cost of LRU bookkeeping.  Longer keys are not cached.
ATTRIBUTE_CACHE_BYTES = 16 << 20
ATTRIBUTE_CACHE_MAX_KEY = 1024


class AttributeCache:
    """Raw attribute octets -> decoded block, bounded by the octets of its keys."""

    __slots__ = ("entries", "octets")

    def __init__(self) -> None:
        self.entries: dict[bytes, Any] = {}
        self.octets = 0

    def get(self, key: bytes) -> Any:
        return self.entries.get(key)

    def put(self, key: bytes, value: Any) -> None:
        if len(key) > ATTRIBUTE_CACHE_MAX_KEY:
            return
        if self.octets + len(key) > ATTRIBUTE_CACHE_BYTES:
            self.entries.clear()
            self.octets = 0
        self.entries[key] = value
        self.octets += len(key)


@dataclass(frozen=True, slots=True)
class SessionContext:
    """Negotiated wire parameters (RFC 6793 §3, RFC 7911 §4, RFC 8654 §3)."""

    four_octet_as: bool = True
    add_path_receive: frozenset[Family] = frozenset()
    add_path_send: frozenset[Family] = frozenset()
    extended_message: bool = False
    # Decoded path attributes keyed by their raw octets: identical bytes give the
    # identical (shared) object, and repeated attribute sets decode in one lookup.
    # init=False: a context made with dataclasses.replace() (say, another AS width)
    # gets its own cache instead of sharing one decoded under other rules.
    attribute_cache: AttributeCache = field(
        default_factory=AttributeCache, init=False, compare=False, repr=False, hash=False
    )

    @property
    def max_message_length(self) -> int:
        """Largest message this session may carry (RFC 8654 §4)."""
        return MAX_EXTENDED_MESSAGE_LEN if self.extended_message else MAX_MESSAGE_LEN

    def receive_path_id(self, family: Family) -> bool:
        """True when NLRI of ``family`` from the peer carry a Path Identifier (RFC 7911 §3)."""
        return family in self.add_path_receive

    def send_path_id(self, family: Family) -> bool:
        """True when NLRI of ``family`` we send carry a Path Identifier (RFC 7911 §3)."""
        return family in self.add_path_send

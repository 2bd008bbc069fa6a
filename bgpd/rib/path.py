"""Candidate paths in the Loc-RIB and the peers they come from.

A ``Path`` is what the decision process compares: the attributes after import
policy, the next hop, and the ``Source`` (the peer, or ``local`` for routes this
speaker originates).  Paths are immutable and shared: every prefix of one UPDATE
that import policy leaves alone points at the same ``Path`` object, so a full
table costs one object per attribute set, not one per prefix (DESIGN.md,
"intern path attributes").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

from bgpd.messages import Family, PathAttributes, Prefix

#: A path's place in the Loc-RIB entry: (source name, ADD-PATH path identifier).
PathKey = tuple[str, int]

LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a path was learned (RFC 4271 §9.1.2.2 d-f, RFC 4456 §9).

    ``address`` is the peer's transport address as an integer (IPv4-mapped
    addresses already reduced to IPv4) for the last tie-break; ``router_id`` its
    BGP Identifier; ``client`` marks a route-reflector client (RFC 4456 §6).
    """

    name: str
    local_as: int
    peer_as: int
    router_id: int
    address: int = 0
    client: bool = False

    @property
    def ibgp(self) -> bool:
        return self.peer_as == self.local_as

    @property
    def local(self) -> bool:
        return self.name == LOCAL

    @classmethod
    def peer(
        cls, address: str, local_as: int, peer_as: int, router_id: int, client: bool = False
    ) -> Source:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return cls(str(ip), local_as, peer_as, router_id, int(ip), client)

    @classmethod
    def origin(cls, local_as: int, router_id: int) -> Source:
        """This speaker, for the routes it originates."""
        return cls(LOCAL, local_as, local_as, router_id)


@dataclass(frozen=True, slots=True)
class Path:
    """One candidate route: attributes, next hop (4, 16 or 32 octets, or empty for
    a locally originated route whose next hop is "self") and source."""

    attributes: PathAttributes
    next_hop: bytes
    source: Source


class BestChange(NamedTuple):
    """The Loc-RIB's choice for a prefix changed: ``best`` None means unreachable.
    ``multipath`` holds the ECMP set (best first) when multipath is on, else
    just ``(best,)``."""

    family: Family
    prefix: Prefix
    best: Path | None
    multipath: tuple[Path, ...]

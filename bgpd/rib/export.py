"""From the Loc-RIB's best path to what one peer is sent (RFC 4271 §9.1.3, §5.1).

In order, for each best path and each peer:

1. Never back to the peer it came from.
2. Well-known communities (RFC 1997): NO_ADVERTISE goes to no one; NO_EXPORT
   and NO_EXPORT_SUBCONFED stay inside the AS.
3. iBGP split horizon (§9.2): a route learned over iBGP is not sent to another
   iBGP peer, unless this speaker reflects it (RFC 4456 §6, the ``Reflection``
   hook).
4. RFC 8212: nothing goes to an eBGP peer without an export policy, unless
   ``require_ebgp_policy`` is off.
5. The export policy.
6. Attributes for the peer:
   - towards eBGP: our AS prepended (§5.1.2), LOCAL_PREF dropped (§5.1.5), a MED
     learned from another AS dropped (§5.1.4), ORIGINATOR_ID and CLUSTER_LIST
     dropped (RFC 4456 §8 applies inside the AS only);
   - towards iBGP: LOCAL_PREF always present (100 unless set); reflected routes
     get ORIGINATOR_ID and CLUSTER_LIST from the hook.
   - NEXT_HOP (§5.1.3, Calico's ``nextHopMode``): ``SELF`` always puts our
     address; ``KEEP`` never changes it; ``AUTO`` keeps it towards iBGP and
     sets ours towards eBGP (Calico's ``keepOriginalNextHop`` is ``KEEP`` for
     eBGP).  A locally originated route without a next hop always gets ours.

The result is an ``Advert``: attributes and next hop, interned per kind of peer
(``AdvertCache``) so that peers receiving the same thing share one object (and
one encoding).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from bgpd.messages import AsPath, Family, PathAttributes, Prefix, WellKnownCommunity

from .decision import DEFAULT_LOCAL_PREF
from .path import Path, Source
from .policy import Policy
from .reflection import Reflection

# Plain ints: comparing every community with an enum member costs a Python call.
_NO_ADVERTISE = int(WellKnownCommunity.NO_ADVERTISE)
_NO_EXPORT = frozenset(
    {int(WellKnownCommunity.NO_EXPORT), int(WellKnownCommunity.NO_EXPORT_SUBCONFED)}
)
_EMPTY_PATH = AsPath()


class NextHopMode(enum.Enum):
    AUTO = "Auto"
    SELF = "Self"
    KEEP = "Keep"


class Advert:
    """What one peer is told about a prefix.  ``attributes`` carry no NEXT_HOP:
    the packer puts ``next_hop`` in NEXT_HOP or MP_REACH_NLRI by family.

    Immutable by convention.  The hash is computed once: the encoder keys its
    shared encodings by advert, and hashing the attributes walks every field."""

    __slots__ = ("_hash", "attributes", "next_hop")

    def __init__(self, attributes: PathAttributes, next_hop: bytes) -> None:
        self.attributes = attributes
        self.next_hop = next_hop
        self._hash = hash((attributes, next_hop))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Advert):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.next_hop == other.next_hop
            and self.attributes == other.attributes
        )

    def __repr__(self) -> str:
        return f"Advert({self.attributes!r}, {self.next_hop!r})"


@dataclass(frozen=True, slots=True)
class ExportTarget:
    """A peer as export sees it."""

    name: str
    local_as: int
    peer_as: int
    #: Our address on this session, per family (4, 16 or 32 octets).
    next_hop_self: Mapping[Family, bytes] = field(default_factory=dict)
    next_hop_mode: NextHopMode = NextHopMode.AUTO
    policy: Policy | None = None
    require_ebgp_policy: bool = True
    client: bool = False
    reflection: Reflection | None = None

    @property
    def ibgp(self) -> bool:
        return self.peer_as == self.local_as


class AdvertCache:
    """Adverts shared by every exporter of one speaker.

    What a peer is sent for a path depends on the path's attributes (after
    export policy), the next hop, where the path came from, and the kind of
    peer (iBGP or eBGP, our AS, reflection); not on which peer of that kind it
    is.  Fifty reflector clients therefore cost one rewrite per path, and they
    share one ``Advert`` object, so the packer and the encoder meet the same
    object fifty times."""

    LIMIT = 65_536  # a bound, not a cache policy: adverts are rebuilt on demand

    def __init__(self) -> None:
        # The values keep the keyed attributes and source alive, so ids stay valid.
        self._map: dict[tuple[object, ...], tuple[Advert, PathAttributes, Source]] = {}

    def get(self, key: tuple[object, ...]) -> Advert | None:
        found = self._map.get(key)
        return None if found is None else found[0]

    def put(
        self, key: tuple[object, ...], advert: Advert, attrs: PathAttributes, source: Source
    ) -> None:
        if len(self._map) >= self.LIMIT:
            self._map.clear()
        self._map[key] = (advert, attrs, source)


class Exporter:
    """Export for one peer; rewritten attribute sets are shared through ``cache``."""

    def __init__(self, target: ExportTarget, cache: AdvertCache | None = None) -> None:
        self.target = target
        self._cache = cache if cache is not None else AdvertCache()
        # The part of the target the rewrite depends on (see ``_rewrite``).
        self._kind = (target.ibgp, target.local_as, id(target.reflection))
        self._reflection = target.reflection  # keeps the id in _kind valid
        # Without prefix rules the advert depends on the path alone (``uniform``),
        # and the prefixes of one UPDATE share their path: remember the last one.
        self.uniform = target.policy is None or not target.policy.rules
        self._last: tuple[Family, Path, Advert | None] | None = None

    def advert(self, family: Family, prefix: Prefix, path: Path) -> Advert | None:
        """What to send for ``path`` as the best route to ``prefix``, or None."""
        last = self._last
        if last is not None and last[1] is path and last[0] == family:
            return last[2]
        advert = self._advert(family, prefix, path)
        if self.uniform:
            self._last = (family, path, advert)
        return advert

    def _advert(self, family: Family, prefix: Prefix, path: Path) -> Advert | None:
        t = self.target
        source = path.source
        if source.name == t.name:
            return None
        attrs = path.attributes
        communities = attrs.communities
        if communities:
            if _NO_ADVERTISE in communities:
                return None
            if not t.ibgp and not _NO_EXPORT.isdisjoint(communities):
                return None
        if t.ibgp and source.ibgp and not source.local and not self._reflects(path):
            return None
        if t.policy is None:
            if t.require_ebgp_policy and not t.ibgp:
                return None
        else:
            evaluated = t.policy.evaluate(family, prefix, attrs, t.name, not source.local)
            if evaluated is None:
                return None
            attrs = evaluated
        hop = self._next_hop(family, path)
        if hop is None:
            return None
        return self._intern(attrs, hop, path)

    def _reflects(self, path: Path) -> bool:
        """iBGP to iBGP only through a reflector (§9.2, RFC 4456 §6)."""
        t = self.target
        return t.reflection is not None and t.reflection.may_reflect(path.source, t.client)

    def _next_hop(self, family: Family, path: Path) -> bytes | None:
        t = self.target
        mode = t.next_hop_mode
        ours = t.next_hop_self.get(family)
        if not path.next_hop:
            return ours
        if mode is NextHopMode.SELF or (mode is NextHopMode.AUTO and not t.ibgp):
            return ours
        return path.next_hop

    def _intern(self, attrs: PathAttributes, hop: bytes, path: Path) -> Advert:
        source = path.source
        key = (id(attrs), hop, id(source), self._kind)
        found = self._cache.get(key)
        if found is None:
            found = Advert(self._rewrite(attrs, path), hop)
            self._cache.put(key, found, attrs, source)
        return found

    def _rewrite(self, attrs: PathAttributes, path: Path) -> PathAttributes:
        t = self.target
        source = path.source
        if t.ibgp:
            changes: dict[str, object] = {}
            if attrs.local_pref is None:
                changes["local_pref"] = DEFAULT_LOCAL_PREF
            if attrs.as_path is None:
                changes["as_path"] = _EMPTY_PATH
            if attrs.next_hop is not None:
                changes["next_hop"] = None  # the packer writes the advert's own
            if changes:
                attrs = attrs.replace(**changes)
            if source.ibgp and not source.local and t.reflection is not None:
                attrs = t.reflection.reflected(attrs, source)
            return attrs
        return attrs.replace(
            as_path=(attrs.as_path or _EMPTY_PATH).prepend(t.local_as),
            local_pref=None,
            med=attrs.med if source.local else None,
            originator_id=None,
            cluster_list=None,
            next_hop=None,
        )

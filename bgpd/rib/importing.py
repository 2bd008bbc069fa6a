"""From a peer's Adj-RIB-In to a Loc-RIB candidate: the checks and import policy.

In order, for each route a peer announces:

1. eBGP sanity (RFC 4271 §6.3, RFC 7606 §7.2): the leftmost AS of the AS_PATH
   must be the peer's AS, or the route is treated as withdrawn.
2. Attributes that must not cross an AS boundary are dropped when the route comes
   from eBGP: LOCAL_PREF (RFC 4271 §5.1.5), ORIGINATOR_ID and CLUSTER_LIST (RFC
   7606 §7.9, §7.10).
3. AS-path loop detection (§9.1.2): our AS may appear at most
   ``allowed_local_as`` times (Calico's ``numAllowedLocalASNumbers``, BIRD's
   ``allow local as``; 0 by default).
4. Reflection loops (RFC 4456 §8): our router ID as ORIGINATOR_ID (every
   speaker checks that) or, on a reflector, our cluster ID in CLUSTER_LIST.
5. RFC 8212: with ``require_ebgp_policy`` (the default) an eBGP route is
   rejected unless an import policy is configured for the peer.
6. The import policy.

The result shares the UPDATE's ``Path`` object when nothing changed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgpd.messages import AS_TRANS, Family, PathAttributes, Prefix
from bgpd.messages.aspath import reconstruct

from .adj_in import Route
from .path import Path, Source
from .policy import Policy
from .reflection import Reflection


@dataclass(frozen=True, slots=True)
class ImportRules:
    """How routes from one peer are admitted."""

    local_id: int = 0
    policy: Policy | None = None
    allowed_local_as: int = 0
    require_ebgp_policy: bool = True
    check_first_as: bool = True
    reflection: Reflection | None = None


class Importer:
    """Turns one peer's routes into Loc-RIB candidates; one per session."""

    def __init__(self, source: Source, rules: ImportRules, four_octet: bool = True) -> None:
        self.source = source
        self.rules = rules
        self.four_octet = four_octet
        # Per Adj-RIB-In route object (one per UPDATE): its Path when policy left
        # the attributes alone, so every prefix of the UPDATE shares it.
        self._last_route: Route | None = None
        self._last_path: Path | None = None
        self._interned: dict[PathAttributes, PathAttributes] = {}
        policy = rules.policy
        #: The result does not depend on the prefix: no policy, or one without rules.
        self.uniform = policy is None or not policy.rules

    def admit(self, family: Family, prefix: Prefix, route: Route) -> Path | None:
        """The candidate for this route, or None when it is filtered out."""
        if route is self._last_route:
            base = self._last_path
        else:
            base = self._check(route)
            self._last_route, self._last_path = route, base
        if base is None:
            return None
        rules = self.rules
        policy = rules.policy
        if policy is None:
            if rules.require_ebgp_policy and not self.source.ibgp:
                return None
            return base
        attrs = policy.evaluate(family, prefix, base.attributes, self.source.name)
        if attrs is None:
            return None
        if attrs is base.attributes:
            return base
        attrs = self._interned.setdefault(attrs, attrs)
        return Path(attrs, base.next_hop, self.source)

    def _check(self, route: Route) -> Path | None:
        """Steps 1-4, once per UPDATE."""
        attrs = route.attributes
        source = self.source
        rules = self.rules
        if attrs.as4_path is not None or attrs.as4_aggregator is not None:
            attrs = self._as4(attrs)
        path = attrs.as_path
        if not source.ibgp:
            if rules.check_first_as and (path is None or path.first_as() != source.peer_as):
                return None
            if (
                attrs.local_pref is not None
                or attrs.originator_id is not None
                or attrs.cluster_list is not None
            ):
                attrs = attrs.replace(local_pref=None, originator_id=None, cluster_list=None)
        if path is not None and path.count(source.local_as) > rules.allowed_local_as:
            return None
        if attrs.originator_id is not None and attrs.originator_id == rules.local_id:
            return None
        if rules.reflection is not None and rules.reflection.loops(attrs):
            return None
        return Path(attrs, route.next_hop, source)

    def _as4(self, attrs: PathAttributes) -> PathAttributes:
        """RFC 6793 §4.2.3: from an OLD speaker, rebuild the real path; a NEW speaker
        must not send AS4_PATH or AS4_AGGREGATOR, so they are discarded."""
        if self.four_octet or attrs.as_path is None:
            return attrs.replace(as4_path=None, as4_aggregator=None)
        path = reconstruct(attrs.as_path, attrs.as4_path)
        aggregator = attrs.aggregator
        if attrs.as4_aggregator is not None and (aggregator is None or aggregator.asn == AS_TRANS):
            aggregator = attrs.as4_aggregator
        elif attrs.as4_aggregator is not None:
            # §4.2.3: AGGREGATOR names a 2-octet AS, so AS4_PATH is not to be trusted.
            path = attrs.as_path
        return attrs.replace(
            as_path=path, aggregator=aggregator, as4_path=None, as4_aggregator=None
        )

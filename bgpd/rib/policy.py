"""Import and export policy: ordered rules that match and act (BIRD filters, in small).

A ``Policy`` is a list of ``Rule``s tried in order.  A rule matches when every
condition it names holds: the prefix against a CIDR with Calico's operators
(``Equal``, ``NotEqual``, ``In``, ``NotIn``; with a prefix-length range the CIDR
is BIRD's set form ``cidr{min,max}``), the family, the peer the route came from
or goes to, a community the route carries, and whether the route was learned
from a BGP peer at all (Calico's ``source: RemotePeers``).  A matching rule
applies its modifications (add communities, set LOCAL_PREF) and then its
action: ``accept`` or ``reject`` end the evaluation; a rule without an action
falls through to the next.  When no rule decides, the policy's default does.

Calico's BGPFilter maps onto this directly: each filter rule is one ``Rule``
whose action is Accept or Reject; filters of a peer run in order and the
default is accept (§1.9 of CALICO.md).  Interface matches (``interface``)
concern routes learned from the kernel, which this RIB does not hold; a rule
naming one never matches a BGP route, as in BIRD.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bgpd.messages import Family, PathAttributes, Prefix


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"


class Operator(enum.Enum):
    """Calico BGPFilter ``matchOperator`` (BIRD ``=``, ``!=``, ``~``, ``!~``)."""

    EQUAL = "Equal"
    NOT_EQUAL = "NotEqual"
    IN = "In"
    NOT_IN = "NotIn"


def _bits(prefix: Prefix) -> tuple[int, int]:
    """(length, network as an int left-aligned to the octets it has)."""
    return prefix[0], int.from_bytes(prefix[1:], "big") if len(prefix) > 1 else 0


@dataclass(frozen=True, slots=True)
class PrefixMatch:
    """A CIDR condition: ``cidr`` packed as the wire form, with an optional
    prefix-length range (``cidr{min,max}``)."""

    cidr: Prefix
    operator: Operator = Operator.IN
    min_length: int | None = None
    max_length: int | None = None

    def matches(self, prefix: Prefix, width: int) -> bool:
        inside = self._inside(prefix, width)
        if self.min_length is not None or self.max_length is not None:
            lo = self.min_length if self.min_length is not None else self.cidr[0]
            hi = self.max_length if self.max_length is not None else width
            hit = inside and lo <= prefix[0] <= hi
        elif self.operator in (Operator.EQUAL, Operator.NOT_EQUAL):
            hit = prefix == self.cidr
        else:
            hit = inside
        return hit if self.operator in (Operator.EQUAL, Operator.IN) else not hit

    def _inside(self, prefix: Prefix, width: int) -> bool:
        clen, cnet = _bits(self.cidr)
        plen, pnet = _bits(prefix)
        if plen < clen:
            return False
        # Align both to the full address width, then compare the CIDR's bits.
        c = cnet << (width - 8 * (len(self.cidr) - 1))
        p = pnet << (width - 8 * (len(prefix) - 1))
        shift = width - clen
        return (c >> shift) == (p >> shift)


@dataclass(frozen=True, slots=True)
class Rule:
    """Conditions (all must hold; None means any), modifications, action."""

    prefix: PrefixMatch | None = None
    family: Family | None = None
    peers: frozenset[str] | None = None
    community: int | None = None
    from_bgp: bool | None = None
    interface: str | None = None
    add_communities: tuple[int, ...] = ()
    set_local_pref: int | None = None
    action: Verdict | None = None

    def matches(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, peer: str, from_bgp: bool
    ) -> bool:
        if self.family is not None and family != self.family:
            return False
        if self.interface is not None:
            return False
        if self.from_bgp is not None and from_bgp != self.from_bgp:
            return False
        if self.peers is not None and peer not in self.peers:
            return False
        if self.community is not None and self.community not in (attrs.communities or ()):
            return False
        width = 32 if family.afi == 1 else 128
        return self.prefix is None or self.prefix.matches(prefix, width)


@dataclass(frozen=True, slots=True)
class Policy:
    """Ordered rules and the verdict when none decides."""

    rules: tuple[Rule, ...] = ()
    default: Verdict = Verdict.ACCEPT

    def evaluate(
        self,
        family: Family,
        prefix: Prefix,
        attrs: PathAttributes,
        peer: str,
        from_bgp: bool = True,
    ) -> PathAttributes | None:
        """The attributes to use, or None when rejected.  Unchanged attributes are
        returned as the same object, so shared attribute sets stay shared."""
        for rule in self.rules:
            if not rule.matches(family, prefix, attrs, peer, from_bgp):
                continue
            attrs = _modify(attrs, rule)
            if rule.action is Verdict.REJECT:
                return None
            if rule.action is Verdict.ACCEPT:
                return attrs
        return attrs if self.default is Verdict.ACCEPT else None


ACCEPT_ALL = Policy()
REJECT_ALL = Policy(default=Verdict.REJECT)


def _modify(attrs: PathAttributes, rule: Rule) -> PathAttributes:
    changes: dict[str, object] = {}
    if rule.add_communities:
        have = attrs.communities or ()
        extra = tuple(c for c in rule.add_communities if c not in have)
        if extra:
            changes["communities"] = have + extra
    if rule.set_local_pref is not None and attrs.local_pref != rule.set_local_pref:
        changes["local_pref"] = rule.set_local_pref
    return attrs.replace(**changes) if changes else attrs

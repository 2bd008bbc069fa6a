"""Loc-RIB selections into wanted kernel routes (no I/O).

Every change of a unicast prefix's selection (``BestChange``, with its ECMP
set when multipath is on) is planned by ``Encapsulation`` and handed to the
FIB.  Routes this speaker originates are announcements of what the node
already routes itself: they reach the kernel only as the node's own blocks,
which are blackholes and always wanted, whatever the peers say about them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Protocol

from bgpd.messages import IPV4_UNICAST, IPV6_UNICAST, Family, Prefix
from bgpd.messages.nlri import prefix_network
from bgpd.rib import BestChange, LocRib, Path

from .encap import Encapsulation
from .rtnl import Dest, KernelRoute

_FAMILIES: dict[Family, int] = {
    IPV4_UNICAST: int(socket.AF_INET),
    IPV6_UNICAST: int(socket.AF_INET6),
}


class FibSink(Protocol):
    """What takes the wanted routes (``KernelSync``, or a ``Fib`` in tests)."""

    def want(self, route: KernelRoute) -> None: ...

    def unwant(self, key: Dest) -> None: ...


def _gateway(path: Path) -> bytes:
    # An IPv6 next hop may carry a link-local address after the global one
    # (RFC 2545 §3): the kernel route uses the global one.
    hop = path.next_hop
    return hop[:16] if len(hop) == 32 else hop


class FibExport:
    """Feeds one FIB from the Loc-RIB."""

    def __init__(self, sink: FibSink, encap: Encapsulation) -> None:
        self.sink = sink
        self.encap = encap
        self.own: dict[Dest, KernelRoute] = {}
        #: Selected routes that cannot be installed, and why.
        self.unplanned: dict[Dest, str] = {}

    def own_block(self, family: Family, prefix: Prefix) -> None:
        """A block of this node's: ``blackhole`` in the kernel."""
        afi = _FAMILIES[family]
        route = self.encap.blackhole(afi, prefix_network(prefix, family.afi), prefix[0])
        self.own[route.dest] = route
        self.unplanned.pop(route.dest, None)
        self.sink.want(route)

    def drop_own_block(self, family: Family, prefix: Prefix, loc: LocRib) -> None:
        """The block is no longer ours: its blackhole goes, and what the peers
        say about the prefix decides again."""
        afi = _FAMILIES[family]
        key: Dest = (afi, prefix_network(prefix, family.afi), prefix[0])
        if self.own.pop(key, None) is None:
            return
        self.sink.unwant(key)
        self._one(afi, family, prefix, loc.selection(family, prefix))

    def changes(self, changes: Iterable[BestChange]) -> None:
        for c in changes:
            afi = _FAMILIES.get(c.family)
            if afi is not None:
                self._one(afi, c.family, c.prefix, c.multipath if c.best is not None else ())

    def replan(self, loc: LocRib) -> None:
        """Pools, subnets, devices or VTEPs changed: plan every selection again."""
        for family, afi in _FAMILIES.items():
            for prefix, _best, paths in loc.selected(family):
                self._one(afi, family, prefix, paths)

    def _one(self, afi: int, family: Family, prefix: Prefix, paths: tuple[Path, ...]) -> None:
        dst = prefix_network(prefix, family.afi)
        key: Dest = (afi, dst, prefix[0])
        if key in self.own:
            return
        hops = [_gateway(p) for p in paths if not p.source.local and p.next_hop]
        if not hops:
            self.unplanned.pop(key, None)
            self.sink.unwant(key)
            return
        plan = self.encap.plan(afi, dst, prefix[0], hops)
        if plan.route is None:
            self.unplanned[key] = plan.reason
            self.sink.unwant(key)
        else:
            self.unplanned.pop(key, None)
            self.sink.want(plan.route)

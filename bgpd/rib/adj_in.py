"""The routes one peer sent, per family, as received (RFC 4271 §3.2 Adj-RIB-In).

Keyed by (packed prefix, path identifier); the path identifier is 0 unless
ADD-PATH receive was negotiated for the family (RFC 7911 §3).  Routes kept
through a peer's restart carry a stale mark (RFC 4724 §4.2) until the peer
announces them again or the mark's deadline passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from bgpd.messages import IPV4_UNICAST, Family, PathAttributes, Prefix, Update

RouteKey = tuple[Prefix, int]


@dataclass(frozen=True, slots=True)
class Route:
    """One path: its attributes and the next hop as sent (4, 16 or 32 octets)."""

    attributes: PathAttributes
    next_hop: bytes


#: Keys of one family that changed in one way: to ``route``, or withdrawn (None).
ChangeGroup = tuple[Family, list[RouteKey], Route | None]


class RouteChange(NamedTuple):
    """A path that appeared, changed (``route`` set) or went away (``route`` None)."""

    family: Family
    key: RouteKey
    route: Route | None


class AdjRibIn:
    """One peer's Adj-RIB-In."""

    def __init__(self) -> None:
        self.tables: dict[Family, dict[RouteKey, Route]] = {}
        self.stale: dict[Family, set[RouteKey]] = {}
        # RFC 7606 §5.3 / RFC 4760 §7: families whose routes are ignored for the
        # rest of the session after an unparseable MP attribute.
        self.disabled: set[Family] = set()

    def disable(self, family: Family) -> list[RouteChange]:
        """AFI/SAFI disable: withdraw the family and ignore it until ``reset``."""
        self.disabled.add(family)
        return self.clear([family])

    def session_reset(self) -> None:
        """A new session: disabled families are accepted again."""
        self.disabled.clear()

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables.values())

    def routes(self, family: Family) -> dict[RouteKey, Route]:
        return self.tables.get(family, {})

    def apply(self, update: Update) -> list[RouteChange]:
        """Withdrawals first, then announcements (RFC 4271 §9.1, RFC 4760 §3-4)."""
        return [
            RouteChange(family, key, route)
            for family, keys, route in self.apply_grouped(update)
            for key in keys
        ]

    def apply_grouped(self, update: Update) -> list[ChangeGroup]:
        """``apply`` without an object per prefix: (family, changed keys, route or
        None for withdrawn) per part of the UPDATE, in the same order."""
        groups: list[ChangeGroup] = []
        off = self.disabled
        v4 = IPV4_UNICAST not in off
        if update.withdrawn and v4:
            self._withdraw(IPV4_UNICAST, update.withdrawn, update.withdrawn_path_ids, groups)
        u = update.mp_unreach
        if u is not None and u.withdrawn and u.family not in off:
            self._withdraw(u.family, u.withdrawn, u.path_ids, groups)
        attrs = update.attributes
        if update.nlri and attrs.next_hop is not None and v4:
            route = Route(attrs, attrs.next_hop)
            self._announce(IPV4_UNICAST, update.nlri, update.nlri_path_ids, route, groups)
        r = update.mp_reach
        if r is not None and r.nlri and r.family not in off:
            self._announce(r.family, r.nlri, r.path_ids, Route(attrs, r.next_hop), groups)
        return groups

    def mark_stale(self, families: Iterable[Family]) -> int:
        """Mark every route of ``families`` stale; returns how many (RFC 4724 §4.2)."""
        count = 0
        for family in families:
            table = self.tables.get(family)
            if table:
                self.stale.setdefault(family, set()).update(table)
                count += len(table)
        return count

    def sweep_stale(self, families: Iterable[Family] | None = None) -> list[RouteChange]:
        """Delete the routes still stale in ``families`` (all when None)."""
        changes: list[RouteChange] = []
        for family in list(self.stale) if families is None else list(families):
            keys = self.stale.pop(family, set())
            table = self.tables.get(family, {})
            for key in keys:
                if table.pop(key, None) is not None:
                    changes.append(RouteChange(family, key, None))
        return changes

    def clear(self, families: Iterable[Family] | None = None) -> list[RouteChange]:
        """Withdraw everything of ``families`` (all when None)."""
        changes: list[RouteChange] = []
        for family in list(self.tables) if families is None else list(families):
            self.stale.pop(family, None)
            for key in self.tables.pop(family, {}):
                changes.append(RouteChange(family, key, None))
        return changes

    def is_stale(self, family: Family, key: RouteKey) -> bool:
        return key in self.stale.get(family, ())

    def __iter__(self) -> Iterator[tuple[Family, RouteKey, Route]]:
        for family, table in self.tables.items():
            for key, route in table.items():
                yield family, key, route

    def _withdraw(
        self,
        family: Family,
        prefixes: tuple[Prefix, ...],
        path_ids: tuple[int, ...],
        groups: list[ChangeGroup],
    ) -> None:
        table = self.tables.get(family)
        if not table:
            return
        pop = table.pop
        keys = zip(prefixes, path_ids, strict=True) if path_ids else ((p, 0) for p in prefixes)
        gone = [key for key in keys if pop(key, None) is not None]
        if gone:
            stale = self.stale.get(family)
            if stale:
                stale.difference_update(gone)
            groups.append((family, gone, None))

    def _announce(
        self,
        family: Family,
        prefixes: tuple[Prefix, ...],
        path_ids: tuple[int, ...],
        route: Route,
        groups: list[ChangeGroup],
    ) -> None:
        table = self.tables.setdefault(family, {})
        get = table.get
        changed: list[RouteKey] = []
        if path_ids:
            keys = list(zip(prefixes, path_ids, strict=True))
        else:
            keys = [(p, 0) for p in prefixes]
        for key in keys:
            old = get(key)
            if old is None or (old is not route and old != route):
                table[key] = route
                changed.append(key)
        stale = self.stale.get(family)
        if stale:
            stale.difference_update(keys)
        if changed:
            groups.append((family, changed, route))

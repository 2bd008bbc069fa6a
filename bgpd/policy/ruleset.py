"""The nftables table the policy agent owns, held in memory, with a journal of what
changed since the kernel last took it.

The renderer changes the table through this interface only: sets and their
elements, chains (a name and a list of rule texts), and the elements of verdict
maps.  ``script()`` turns the changes since the last ``commit()`` into one
``nft -f`` transaction; ``full_script()`` gives the whole table, replacing
whatever the kernel holds (``add table; delete table; table {...}`` in one
transaction: the table is never seen half-made or absent).

Ordering inside a transaction (nft checks references as it goes):

1. new sets, then new chains (empty);
2. set elements: removals, then additions (a pod that moved address: one batch);
3. chains whose rules changed: flushed and refilled (they may now jump to the
   new chains and match the new sets);
4. verdict-map elements: the old verdict removed, the new one added;
5. chains no longer wanted: flushed, then deleted (nothing refers to them any
   more: steps 3 and 4 rewrote every rule and element that did);
6. sets no longer wanted.

A change undone before commit (an element added then removed, a chain dropped
then wanted again) leaves no trace.  If a transaction fails, the kernel keeps
the old table whole; the caller then loads ``full_script()``, which is always
correct because it is made from the wanted state, not from the journal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Elements per ``add element`` line: nft's parser slows down on huge lines.
_CHUNK = 2000


@dataclass(slots=True)
class SetDef:
    type: str  # nft type: "ipv4_addr", "ipv4_addr . inet_proto . inet_service", ...
    interval: bool = False
    elements: set[str] = field(default_factory=set)

    def declaration(self) -> str:
        flags = " flags interval;" if self.interval else ""
        return f"type {self.type};{flags}"


@dataclass(slots=True)
class MapDef:
    type: str  # "ifname : verdict"
    elements: dict[str, str] = field(default_factory=dict)  # key -> verdict


def _element_list(elements: Iterable[str]) -> list[str]:
    items = sorted(elements)
    return [", ".join(items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK)]


def _quote(key: str) -> str:
    return f'"{key}"'


class Ruleset:
    """One ``inet`` table: named sets, verdict maps, chains; and the base chain
    ``base`` (its ``hook`` line and rules), which never changes after creation."""

    def __init__(
        self, table: str, base: str, hook: str, base_rules: list[str], maps: dict[str, str]
    ) -> None:
        self.table = table
        self.base = base
        self.hook = hook
        self.base_rules = base_rules
        self.sets: dict[str, SetDef] = {}
        self.chains: dict[str, tuple[str, ...]] = {}
        self.maps = {name: MapDef(kind) for name, kind in maps.items()}
        self._reset_journal()

    def _reset_journal(self) -> None:
        self._new_sets: set[str] = set()
        self._dropped_sets: dict[str, SetDef] = {}
        self._added: dict[str, set[str]] = {}
        self._removed: dict[str, set[str]] = {}
        self._new_chains: set[str] = set()
        self._changed_chains: set[str] = set()
        self._dropped_chains: set[str] = set()
        self._map_before: dict[tuple[str, str], str | None] = {}

    # -- sets ----------------------------------------------------------------

    def ensure_set(self, name: str, type_: str, interval: bool = False) -> SetDef:
        found = self.sets.get(name)
        if found is not None:
            return found
        dropped = self._dropped_sets.pop(name, None)
        if dropped is not None:  # dropped and wanted again in one batch: keep it
            self.sets[name] = dropped
            return dropped
        new = self.sets[name] = SetDef(type_, interval)
        self._new_sets.add(name)
        return new

    def drop_set(self, name: str) -> None:
        found = self.sets.pop(name, None)
        if found is None:
            return
        for element in list(found.elements):
            self.remove_element(name, element, found)
        if name in self._new_sets:
            self._new_sets.discard(name)
            self._added.pop(name, None)
            self._removed.pop(name, None)
        else:
            self._dropped_sets[name] = found

    def add_element(self, name: str, element: str) -> None:
        s = self.sets[name]
        if element in s.elements:
            return
        s.elements.add(element)
        removed = self._removed.get(name)
        if removed is not None and element in removed:
            removed.discard(element)
        else:
            self._added.setdefault(name, set()).add(element)

    def add_elements(self, name: str, elements: Iterable[str]) -> None:
        """``add_element`` for many (a new set's members in one step)."""
        s = self.sets.get(name)
        if s is None:
            return
        fresh = set(elements) - s.elements
        if not fresh:
            return
        s.elements |= fresh
        removed = self._removed.get(name)
        if removed:
            back = fresh & removed
            removed -= back
            fresh -= back
        self._added.setdefault(name, set()).update(fresh)

    def remove_element(self, name: str, element: str, s: SetDef | None = None) -> None:
        s = s or self.sets[name]
        if element not in s.elements:
            return
        s.elements.discard(element)
        added = self._added.get(name)
        if added is not None and element in added:
            added.discard(element)
        else:
            self._removed.setdefault(name, set()).add(element)

    def set_elements(self, name: str, elements: set[str]) -> None:
        current = self.sets[name].elements
        for e in current - elements:
            self.remove_element(name, e)
        for e in elements - current:
            self.add_element(name, e)

    # -- chains --------------------------------------------------------------

    def put_chain(self, name: str, rules: Iterable[str]) -> None:
        wanted = tuple(rules)
        if self.chains.get(name) == wanted:
            return
        if name not in self.chains:
            if name in self._dropped_chains:
                self._dropped_chains.discard(name)
            else:
                self._new_chains.add(name)
        self.chains[name] = wanted
        self._changed_chains.add(name)

    def drop_chain(self, name: str) -> None:
        if self.chains.pop(name, None) is None:
            return
        self._changed_chains.discard(name)
        if name in self._new_chains:
            self._new_chains.discard(name)
        else:
            self._dropped_chains.add(name)

    # -- verdict maps --------------------------------------------------------

    def put_map(self, name: str, key: str, verdict: str | None) -> None:
        """Map ``key`` to ``verdict`` (None: remove the key)."""
        elements = self.maps[name].elements
        current = elements.get(key)
        if current == verdict:
            return
        self._map_before.setdefault((name, key), current)
        if verdict is None:
            del elements[key]
        else:
            elements[key] = verdict

    # -- output --------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return bool(
            self._new_sets or self._dropped_sets or any(self._added.values())
            or any(self._removed.values()) or self._changed_chains or self._dropped_chains
            or any(self.maps[m].elements.get(k) != v for (m, k), v in self._map_before.items())
        )  # fmt: skip

    def script(self) -> str:
        """The changes since the last commit, as one nft transaction ("" if none)."""
        t = f"inet {self.table}"
        out: list[str] = []
        for name in sorted(self._new_sets):
            out.append(f"add set {t} {name} {{ {self.sets[name].declaration()} }}")
        for name in sorted(self._new_chains):
            out.append(f"add chain {t} {name}")
        for name, removed in sorted(self._removed.items()):
            if removed and name in self.sets:
                out.extend(
                    f"delete element {t} {name} {{ {chunk} }}" for chunk in _element_list(removed)
                )
        for name, added in sorted(self._added.items()):
            if added and name in self.sets:
                out.extend(
                    f"add element {t} {name} {{ {chunk} }}" for chunk in _element_list(added)
                )
        for name in sorted(self._changed_chains):
            if name not in self._new_chains:
                out.append(f"flush chain {t} {name}")
            out.extend(f"add rule {t} {name} {rule}" for rule in self.chains[name])
        for (m, key), before in sorted(self._map_before.items()):
            after = self.maps[m].elements.get(key)
            if before == after:
                continue
            if before is not None:
                out.append(f"delete element {t} {m} {{ {_quote(key)} }}")
            if after is not None:
                out.append(f"add element {t} {m} {{ {_quote(key)} : {after} }}")
        for name in sorted(self._dropped_chains):
            out.append(f"flush chain {t} {name}")
        for name in sorted(self._dropped_chains):
            out.append(f"delete chain {t} {name}")
        for name in sorted(self._dropped_sets):
            out.append(f"delete set {t} {name}")
        return "".join(line + "\n" for line in out)

    def commit(self) -> None:
        """The kernel has taken ``script()`` (or ``full_script()``)."""
        self._reset_journal()

    def full_script(self) -> str:
        """The whole table, replacing the kernel's copy in one transaction."""
        t = f"inet {self.table}"
        out = [f"add table {t}", f"delete table {t}", f"table {t} {{"]
        for name, s in sorted(self.sets.items()):
            out.append(f"  set {name} {{ {s.declaration()} }}")
        for name, m in sorted(self.maps.items()):
            out.append(f"  map {name} {{ type {m.type}; }}")
        for name in sorted(self.chains):
            out.append(f"  chain {name} {{")
            out.extend(f"    {rule}" for rule in self.chains[name])
            out.append("  }")
        out.append(f"  chain {self.base} {{")
        out.append(f"    {self.hook}")
        out.extend(f"    {rule}" for rule in self.base_rules)
        out.append("  }")
        out.append("}")
        for name, s in sorted(self.sets.items()):
            out.extend(
                f"add element {t} {name} {{ {chunk} }}" for chunk in _element_list(s.elements)
            )
        for name, m in sorted(self.maps.items()):
            items = [f"{_quote(k)} : {v}" for k, v in m.elements.items()]
            out.extend(f"add element {t} {name} {{ {chunk} }}" for chunk in _element_list(items))
        return "".join(line + "\n" for line in out)

    def rule_count(self) -> int:
        return sum(len(rules) for rules in self.chains.values()) + len(self.base_rules)

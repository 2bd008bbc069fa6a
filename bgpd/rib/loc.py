"""The Loc-RIB: every candidate path per prefix and the one selected (RFC 4271 §3.2, §9.1.2).

Each entry keeps its candidates in a dict keyed by ``(source, path id)`` and
remembers the selection; a change to the candidates re-runs the decision process
for that prefix alone and reports a ``BestChange`` only when the selection (best
path or ECMP set) actually moved, which is what export and the kernel act on.

Nearly every prefix of a full table has one candidate, with path id 0, and it
is selected.  Such a prefix stores the ``Path`` itself in the table instead of
an ``Entry`` (with its dict and tuples): about 450 octets less per prefix, and
no decision process to run.  It becomes an ``Entry`` when a second candidate
arrives and goes back when one is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bgpd.messages import Family, Prefix

from .decision import Candidate, DecisionOptions, select, usable
from .path import BestChange, Path, PathKey


class Entry:
    """One prefix: its candidates and the current selection."""

    __slots__ = ("best", "multipath", "paths")

    def __init__(self) -> None:
        self.paths: dict[PathKey, Path] = {}
        self.best: Candidate | None = None
        self.multipath: tuple[Candidate, ...] = ()


class LocRib:
    """Candidates and selections for every family."""

    def __init__(self, options: DecisionOptions | None = None) -> None:
        self.options = options or DecisionOptions()
        #: An ``Entry``, or the ``Path`` alone for a one-path prefix.
        self.tables: dict[Family, dict[Prefix, Entry | Path]] = {}

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables.values())

    def update(
        self, family: Family, prefix: Prefix, key: PathKey, path: Path | None
    ) -> BestChange | None:
        """Add, replace (``path``) or remove (None) one candidate; the new
        selection when it changed."""
        table = self.tables.get(family)
        if table is None:
            table = self.tables[family] = {}
        found = table.get(prefix)
        if found is None:
            if path is None:
                return None
            if key[1] == 0 and key[0] == path.source.name and usable(path, self.options):
                table[prefix] = path
                return BestChange(family, prefix, path, (path,))
            entry = table[prefix] = Entry()
        elif isinstance(found, Path):
            only = found
            if key[1] == 0 and key[0] == only.source.name:  # the same candidate
                if path is None:
                    del table[prefix]
                    return BestChange(family, prefix, None, ())
                if path.source.name == key[0] and usable(path, self.options):
                    table[prefix] = path
                    return None if path is only else BestChange(family, prefix, path, (path,))
            elif path is None:
                return None
            entry = table[prefix] = _expand(only)
        else:
            entry = found
        if path is None:
            if entry.paths.pop(key, None) is None:
                return None
        else:
            entry.paths[key] = path
        return self._reselect(family, prefix, entry, table)

    def update_many(
        self, family: Family, name: str, keys: list[tuple[Prefix, int]], path: Path | None
    ) -> list[BestChange]:
        """``update`` for many prefixes given the same path (one UPDATE's worth)
        by source ``name``: the one-path cases are handled inline."""
        table = self.tables.get(family)
        if table is None:
            table = self.tables[family] = {}
        compact = path is not None and path.source.name == name and usable(path, self.options)
        get = table.get
        # BestChange's own constructor is a Python call; one per prefix of a
        # full table is worth avoiding.
        new = tuple.__new__
        out: list[BestChange] = []
        for prefix, path_id in keys:
            found = get(prefix)
            if path_id == 0:
                if found is None:
                    if path is None:
                        continue
                    if compact:
                        table[prefix] = path
                        out.append(new(BestChange, (family, prefix, path, (path,))))
                        continue
                elif found.__class__ is Path and found.source.name == name:
                    if path is None:
                        del table[prefix]
                        out.append(new(BestChange, (family, prefix, None, ())))
                        continue
                    if compact:
                        if found is not path:
                            table[prefix] = path
                            out.append(new(BestChange, (family, prefix, path, (path,))))
                        continue
            change = self.update(family, prefix, (name, path_id), path)
            if change is not None:
                out.append(change)
        return out

    def reselect(self, which: Callable[[Family, Prefix, Entry], bool]) -> list[BestChange]:
        """Run the decision again where ``which`` says (next-hop reachability or the
        decision options changed)."""
        changes: list[BestChange] = []
        for family, table in self.tables.items():
            for prefix, found in list(table.items()):
                entry = _expand(found) if isinstance(found, Path) else found
                if which(family, prefix, entry):
                    table[prefix] = entry
                    change = self._reselect(family, prefix, entry, table)
                    if change is not None:
                        changes.append(change)
        return changes

    def best(self, family: Family, prefix: Prefix) -> Path | None:
        found = self.tables.get(family, {}).get(prefix)
        if found is None or isinstance(found, Path):
            return found
        best = found.best
        return best[1] if best is not None else None

    def entry(self, family: Family, prefix: Prefix) -> Entry | None:
        """The prefix's candidates and selection (a copy for a one-path prefix)."""
        found = self.tables.get(family, {}).get(prefix)
        if found is not None and isinstance(found, Path):
            return _expand(found)
        return found

    def selection(self, family: Family, prefix: Prefix) -> tuple[Path, ...]:
        """The ECMP set selected for one prefix (empty: none)."""
        found = self.tables.get(family, {}).get(prefix)
        if found is None:
            return ()
        if isinstance(found, Path):
            return (found,)
        return tuple(c[1] for c in found.multipath) if found.best is not None else ()

    def selected(self, family: Family) -> Iterator[tuple[Prefix, Path, tuple[Path, ...]]]:
        """Every prefix with a selection: (prefix, best, ECMP set)."""
        for prefix, found in self.tables.get(family, {}).items():
            if isinstance(found, Path):
                yield prefix, found, (found,)
            elif found.best is not None:
                yield prefix, found.best[1], tuple(c[1] for c in found.multipath)

    def _reselect(
        self, family: Family, prefix: Prefix, entry: Entry, table: dict[Prefix, Entry | Path]
    ) -> BestChange | None:
        paths = entry.paths
        best: Candidate | None
        multipath: tuple[Candidate, ...]
        if len(paths) == 1:  # nearly every prefix of a table from one peer
            only = next(iter(paths.items()))
            ok = usable(only[1], self.options)
            best, multipath = (only, (only,)) if ok else (None, ())
        else:
            best, multipath = select(paths.items(), self.options)
        if not paths:
            del table[prefix]
        elif best is not None and len(paths) == 1 and best[0] == (best[1].source.name, 0):
            table[prefix] = best[1]  # back to the compact form
        old_best, old_multi = entry.best, entry.multipath
        entry.best, entry.multipath = best, multipath
        if best is None:
            if old_best is None:
                return None
            return BestChange(family, prefix, None, ())
        if old_best is not None and old_best[1] is best[1] and _same(old_multi, multipath):
            return None
        return BestChange(family, prefix, best[1], tuple(c[1] for c in multipath))


def _expand(only: Path) -> Entry:
    """The ``Entry`` a compact one-path prefix stands for."""
    entry = Entry()
    key = (only.source.name, 0)
    entry.paths[key] = only
    entry.best = (key, only)
    entry.multipath = (entry.best,)
    return entry


def _same(a: tuple[Candidate, ...], b: tuple[Candidate, ...]) -> bool:
    return len(a) == len(b) and all(x[1] is y[1] for x, y in zip(a, b, strict=True))

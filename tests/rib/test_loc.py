"""The Loc-RIB's bookkeeping: one-path prefixes kept compact, the change
reports, ``entry``/``selected`` views, and re-selection when next hops change."""

from __future__ import annotations

from bgpd.messages import IPV4_UNICAST, PathAttributes, prefix_from_text
from bgpd.rib.decision import DecisionOptions
from bgpd.rib.loc import Entry, LocRib
from bgpd.rib.path import Path, Source

P = prefix_from_text("10.1.0.0/24")[1]
HOP_A, HOP_B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def path(address: str, hop: bytes, local_pref: int = 100) -> Path:
    source = Source.peer(address, 65000, 65000, int(address.rsplit(".", maxsplit=1)[-1]))
    return Path(PathAttributes(origin=0, local_pref=local_pref), hop, source)


def test_one_path_is_stored_compact_and_expands_for_a_second() -> None:
    loc = LocRib(DecisionOptions(multipath=True))
    a = path("10.0.0.1", HOP_A)
    change = loc.update(IPV4_UNICAST, P, ("10.0.0.1", 0), a)
    assert change is not None and change.best is a and change.multipath == (a,)
    assert loc.tables[IPV4_UNICAST][P] is a  # no Entry for a lone path
    b = path("10.0.0.2", HOP_B, local_pref=200)
    change = loc.update(IPV4_UNICAST, P, ("10.0.0.2", 0), b)
    assert change is not None and change.best is b
    assert isinstance(loc.tables[IPV4_UNICAST][P], Entry)
    entry = loc.entry(IPV4_UNICAST, P)
    assert entry is not None and set(entry.paths) == {("10.0.0.1", 0), ("10.0.0.2", 0)}
    # The better one leaves: back to the compact form, and the change says so.
    change = loc.update(IPV4_UNICAST, P, ("10.0.0.2", 0), None)
    assert change is not None and change.best is a
    assert loc.tables[IPV4_UNICAST][P] is a
    view = loc.entry(IPV4_UNICAST, P)
    assert view is not None and view.best == (("10.0.0.1", 0), a)
    assert list(loc.selected(IPV4_UNICAST)) == [(P, a, (a,))]


def test_replacing_and_removing_the_lone_path() -> None:
    loc = LocRib()
    a = path("10.0.0.1", HOP_A)
    loc.update(IPV4_UNICAST, P, ("10.0.0.1", 0), a)
    assert loc.update(IPV4_UNICAST, P, ("10.0.0.1", 0), a) is None  # same object: no change
    a2 = path("10.0.0.1", HOP_B)
    change = loc.update(IPV4_UNICAST, P, ("10.0.0.1", 0), a2)
    assert change is not None and change.best is a2
    assert loc.update(IPV4_UNICAST, P, ("10.0.0.9", 0), None) is None  # not a candidate
    change = loc.update(IPV4_UNICAST, P, ("10.0.0.1", 0), None)
    assert change is not None and change.best is None
    assert len(loc) == 0


def test_unusable_or_add_path_candidates_are_never_compact() -> None:
    loc = LocRib(DecisionOptions(own_addresses=frozenset({HOP_A})))
    assert loc.update(IPV4_UNICAST, P, ("10.0.0.1", 0), path("10.0.0.1", HOP_A)) is None
    assert isinstance(loc.tables[IPV4_UNICAST][P], Entry)
    assert loc.best(IPV4_UNICAST, P) is None
    q = prefix_from_text("10.2.0.0/24")[1]
    b = path("10.0.0.2", HOP_B)
    change = loc.update(IPV4_UNICAST, q, ("10.0.0.2", 7), b)
    assert change is not None and change.best is b
    assert isinstance(loc.tables[IPV4_UNICAST][q], Entry)


def test_reselect_drops_and_restores_paths_whose_next_hop_changes() -> None:
    reachable = {HOP_A: True}
    loc = LocRib(DecisionOptions(usable=lambda hop: reachable.get(hop, False)))
    a = path("10.0.0.1", HOP_A)
    loc.update(IPV4_UNICAST, P, ("10.0.0.1", 0), a)
    reachable[HOP_A] = False
    changes = loc.reselect(lambda family, prefix, entry: True)
    assert [(c.prefix, c.best) for c in changes] == [(P, None)]
    assert loc.best(IPV4_UNICAST, P) is None
    reachable[HOP_A] = True
    changes = loc.reselect(lambda family, prefix, entry: True)
    assert [(c.prefix, c.best) for c in changes] == [(P, a)]
    assert loc.tables[IPV4_UNICAST][P] is a

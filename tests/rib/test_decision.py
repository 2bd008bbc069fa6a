"""Every step of the decision process (RFC 4271 §9.1.2.2, RFC 4456 §9)."""

from __future__ import annotations

import pytest

from bgpd.messages import AsPath, AsPathSegment, PathAttributes
from bgpd.rib.decision import Candidate, DecisionOptions, select
from bgpd.rib.path import Path, Source

LOCAL_AS = 65000


def src(address: str, peer_as: int = LOCAL_AS, rid: int = 1) -> Source:
    return Source.peer(address, LOCAL_AS, peer_as, rid)


def cand(
    address: str,
    *,
    peer_as: int = LOCAL_AS,
    rid: int = 1,
    hop: bytes = b"\x0a\x00\x00\x01",
    path_id: int = 0,
    **attrs: object,
) -> Candidate:
    base: dict[str, object] = {"origin": 0, "as_path": AsPath()}
    base.update(attrs)
    source = src(address, peer_as, rid)
    return (source.name, path_id), Path(PathAttributes(**base), hop, source)  # type: ignore[arg-type]


def best_of(*cands: Candidate, **opts: object) -> str:
    best, _ = select(cands, DecisionOptions(**opts))  # type: ignore[arg-type]
    assert best is not None
    return best[0][0]


def test_single_candidate_is_best() -> None:
    assert best_of(cand("10.0.0.1")) == "10.0.0.1"


def test_higher_local_pref_wins_and_absent_counts_100() -> None:
    assert best_of(cand("10.0.0.1", local_pref=90), cand("10.0.0.2")) == "10.0.0.2"
    assert best_of(cand("10.0.0.1", local_pref=110), cand("10.0.0.2")) == "10.0.0.1"


def test_shorter_as_path_wins_set_counts_one_confed_none() -> None:
    long = AsPath.sequence(1, 2, 3)
    with_set = AsPath((AsPathSegment(1, (4, 5, 6, 7)),))  # AS_SET of four: length 1
    confed = AsPath((AsPathSegment(3, (9, 9, 9)), AsPathSegment(2, (1, 2))))
    assert best_of(cand("10.0.0.1", as_path=long), cand("10.0.0.2", as_path=with_set)) == (
        "10.0.0.2"
    )
    assert best_of(cand("10.0.0.1", as_path=long), cand("10.0.0.2", as_path=confed)) == ("10.0.0.2")


def test_lower_origin_wins() -> None:
    assert best_of(cand("10.0.0.1", origin=2), cand("10.0.0.2", origin=1)) == "10.0.0.2"


def test_med_compared_within_the_same_neighbour_as_only() -> None:
    a = cand("10.0.0.1", peer_as=1, rid=1, as_path=AsPath.sequence(1), med=50)
    b = cand("10.0.0.2", peer_as=1, rid=2, as_path=AsPath.sequence(1), med=10)
    assert best_of(a, b) == "10.0.0.2"
    # Different neighbour ASes: MED is not compared, the router ID decides.
    c = cand("10.0.0.3", peer_as=2, rid=3, as_path=AsPath.sequence(2), med=0)
    a_low = cand("10.0.0.1", peer_as=1, rid=1, as_path=AsPath.sequence(1), med=99)
    assert best_of(a_low, c) == "10.0.0.1"
    assert best_of(a_low, c, always_compare_med=True) == "10.0.0.3"


def test_med_is_not_transitive_elimination_follows_the_rfc() -> None:
    # A(AS1, med 10) beats B(AS1, med 20); C(AS2) is not compared by MED with them.
    a = cand("10.0.0.1", peer_as=1, rid=5, as_path=AsPath.sequence(1), med=10)
    b = cand("10.0.0.2", peer_as=1, rid=1, as_path=AsPath.sequence(1), med=20)
    c = cand("10.0.0.3", peer_as=2, rid=3, as_path=AsPath.sequence(2), med=0)
    # B is removed by A's MED; of A and C the lower router ID (3) wins.
    assert best_of(a, b, c) == "10.0.0.3"
    assert best_of(c, b, a) == "10.0.0.3"


def test_missing_med_counts_as_zero() -> None:
    a = cand("10.0.0.1", peer_as=1, rid=1, as_path=AsPath.sequence(1), med=5)
    b = cand("10.0.0.2", peer_as=1, rid=2, as_path=AsPath.sequence(1))
    assert best_of(a, b) == "10.0.0.2"


def test_ebgp_over_ibgp() -> None:
    i = cand("10.0.0.1", rid=1, as_path=AsPath.sequence(7))
    e = cand("10.0.0.2", peer_as=7, rid=9, as_path=AsPath.sequence(7))
    assert best_of(i, e) == "10.0.0.2"


def test_lowest_router_id_uses_originator_id() -> None:
    a = cand("10.0.0.1", rid=1, originator_id=50)
    b = cand("10.0.0.2", rid=20)
    assert best_of(a, b) == "10.0.0.2"


def test_shorter_cluster_list_then_lowest_peer_address() -> None:
    a = cand("10.0.0.1", rid=1, originator_id=7, cluster_list=(1, 2))
    b = cand("10.0.0.2", rid=2, originator_id=7, cluster_list=(3,))
    assert best_of(a, b) == "10.0.0.2"
    c = cand("10.0.0.9", rid=5)
    d = cand("10.0.0.3", rid=5)
    assert best_of(c, d) == "10.0.0.3"


def test_unusable_next_hops_are_not_candidates() -> None:
    ours = b"\x0a\x00\x00\x63"
    a = cand("10.0.0.1", local_pref=500, hop=ours)
    b = cand("10.0.0.2", hop=b"\x0a\x00\x00\x02")
    assert best_of(a, b, own_addresses=frozenset({ours})) == "10.0.0.2"
    dead = b"\x0a\x00\x00\x02"
    best, ecmp = select([b], DecisionOptions(usable=lambda hop: hop != dead))
    assert best is None and ecmp == ()


def test_locally_originated_wins_over_any_learned_path() -> None:
    local = Source.origin(LOCAL_AS, 1)
    mine = (("local", 0), Path(PathAttributes(origin=2, as_path=AsPath()), b"", local))
    learned = cand("10.0.0.1", local_pref=1000)
    best, _ = select([learned, mine], DecisionOptions())
    assert best is mine


@pytest.mark.parametrize("multipath", [True, False])
def test_multipath_groups_equal_candidates_up_to_the_router_id_step(multipath: bool) -> None:
    a = cand("10.0.0.1", rid=3, hop=b"\x0a\x00\x00\x01")
    b = cand("10.0.0.2", rid=2, hop=b"\x0a\x00\x00\x02")
    c = cand("10.0.0.3", rid=1, hop=b"\x0a\x00\x00\x03", origin=1)  # worse origin
    best, ecmp = select([a, b, c], DecisionOptions(multipath=multipath))
    assert best is b
    assert ecmp == ((b, a) if multipath else (b,))

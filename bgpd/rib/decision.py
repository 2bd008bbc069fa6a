"""The decision process: which candidate path for a prefix is best (RFC 4271 §9.1).

Candidates are first filtered: a path whose next hop is unusable (one of our own
addresses, or one the caller's ``usable`` check refuses, such as an unresolvable
next hop) is not a candidate (§9.1.2).  The survivors go through the tie-breaking
steps of §9.1.2.2 in order, each keeping only the paths that are best at that
step, exactly as the RFC phrases it: elimination rather than a pairwise compare,
because the MED step is not transitive (it only compares paths from the same
neighbouring AS).

0. A locally originated path wins (BIRD's protocol preference, Cisco's weight).
1. Highest degree of preference: LOCAL_PREF (100 when absent) (§9.1.1).
2. Shortest AS_PATH: an AS_SET counts one, confederation segments none (§9.1.2.2 a).
3. Lowest ORIGIN (§9.1.2.2 b).
4. Lowest MED among paths from the same neighbouring AS; a missing MED is 0
   (§9.1.2.2 c).  ``always_compare_med`` compares across all ASes.
5. eBGP-learned over iBGP-learned (§9.1.2.2 d).
   (There is no IGP, so the interior cost step e is skipped.)
   -- the multipath (ECMP) set is what is left here, one path per next hop --
6. Lowest BGP Identifier, using ORIGINATOR_ID when present (§9.1.2.2 f, RFC 4456 §9).
7. Shortest CLUSTER_LIST (RFC 4456 §9).
8. Lowest peer address (§9.1.2.2 g); then lowest path identifier, for ADD-PATH.

A prefix with one candidate skips all of it: that is nearly every prefix of a
full table learned from one peer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .path import Path, PathKey

DEFAULT_LOCAL_PREF = 100

Candidate = tuple[PathKey, Path]


def _always(_next_hop: bytes) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class DecisionOptions:
    """Knobs of the decision process (BIRD: ``med metric``, ``merge paths``)."""

    always_compare_med: bool = False
    multipath: bool = False
    max_paths: int = 16
    #: Our own addresses (4 or 16 octets): a path pointing at us is not a candidate.
    own_addresses: frozenset[bytes] = frozenset()
    #: Whether a next hop can be used (resolution in the kernel's table).
    usable: Callable[[bytes], bool] = field(default=_always, compare=False)


def usable(path: Path, options: DecisionOptions) -> bool:
    """§9.1.2: a path is a candidate only if its NEXT_HOP is resolvable."""
    hop = path.next_hop
    if not hop:  # locally originated: the next hop is us
        return True
    glob = hop[:16] if len(hop) == 32 else hop
    return glob not in options.own_addresses and options.usable(glob)


def select(
    candidates: Iterable[Candidate], options: DecisionOptions
) -> tuple[Candidate | None, tuple[Candidate, ...]]:
    """The best candidate and the ECMP set (best first; just the best unless
    ``options.multipath``)."""
    pool = [c for c in candidates if usable(c[1], options)]
    if not pool:
        return None, ()
    if len(pool) == 1:
        return pool[0], (pool[0],)
    local = [c for c in pool if c[1].source.local]
    if local:
        pool = local
    pool = _keep_max(pool, _local_pref)
    pool = _keep_min(pool, _path_length)
    pool = _keep_min(pool, _origin)
    pool = _med_step(pool, options.always_compare_med)
    pool = _keep_min(pool, _ibgp)
    best = min(pool, key=_final_key)
    if not options.multipath or len(pool) == 1:
        return best, (best,)
    ecmp = [best]
    hops = {best[1].next_hop}
    for c in sorted(pool, key=_final_key):
        if c[1].next_hop not in hops and len(ecmp) < options.max_paths:
            hops.add(c[1].next_hop)
            ecmp.append(c)
    return best, tuple(ecmp)


def _keep_max(pool: list[Candidate], key: Callable[[Candidate], int]) -> list[Candidate]:
    if len(pool) == 1:
        return pool
    top = max(key(c) for c in pool)
    return [c for c in pool if key(c) == top]


def _keep_min(pool: list[Candidate], key: Callable[[Candidate], int]) -> list[Candidate]:
    if len(pool) == 1:
        return pool
    low = min(key(c) for c in pool)
    return [c for c in pool if key(c) == low]


def _local_pref(c: Candidate) -> int:
    lp = c[1].attributes.local_pref
    return DEFAULT_LOCAL_PREF if lp is None else lp


def _path_length(c: Candidate) -> int:
    path = c[1].attributes.as_path
    return 0 if path is None else path.length()


def _origin(c: Candidate) -> int:
    origin = c[1].attributes.origin
    return 2 if origin is None else origin


def _ibgp(c: Candidate) -> int:
    source = c[1].source
    return 1 if source.ibgp and not source.local else 0


def _neighbour_as(c: Candidate) -> int:
    path = c[1].attributes.as_path
    first = path.first_as() if path is not None else None
    return c[1].source.local_as if first is None else first


def _med(c: Candidate) -> int:
    med = c[1].attributes.med
    return 0 if med is None else med


def _med_step(pool: list[Candidate], always: bool) -> list[Candidate]:
    """§9.1.2.2 c: remove a path when another from the same neighbouring AS has a
    lower MED."""
    if len(pool) == 1:
        return pool
    if always:
        return _keep_min(pool, _med)
    lowest: dict[int, int] = {}
    for c in pool:
        n, m = _neighbour_as(c), _med(c)
        if m < lowest.get(n, m + 1):
            lowest[n] = m
    return [c for c in pool if _med(c) == lowest[_neighbour_as(c)]]


def _final_key(c: Candidate) -> tuple[int, int, int, int]:
    (_name, path_id), path = c
    attrs = path.attributes
    rid = attrs.originator_id if attrs.originator_id is not None else path.source.router_id
    clusters = len(attrs.cluster_list) if attrs.cluster_list else 0
    return rid, clusters, path.source.address, path_id

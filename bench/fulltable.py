"""A synthetic stream of UPDATEs shaped like a full IPv4 Internet table.

Prefix lengths follow the public table's mix (about 60% /24, most of the rest
/16 to /23, a few shorter); prefixes are unique.  Attribute sets are drawn
from a pool of tens of thousands of distinct (AS path, origin, MED, communities)
combinations, with a skew so a few sets carry many prefixes and most carry a
handful, as on a real table.  UPDATEs are packed per attribute set up to 4096
octets, as BIRD and GoBGP pack them.  Deterministic for a given seed.
"""

from __future__ import annotations

import random

from bgpd.messages import (
    AsPath,
    PathAttributes,
    SessionContext,
    Update,
    encode_message,
)
from bgpd.messages.nlri import Prefix

LENGTH_MIX = [
    (24, 600),
    (23, 70),
    (22, 110),
    (21, 50),
    (20, 45),
    (19, 35),
    (18, 20),
    (17, 12),
    (16, 30),
    (15, 4),
    (14, 4),
    (13, 3),
    (12, 2),
    (11, 1),
    (10, 1),
    (9, 1),
    (8, 1),
]


def make_prefixes(count: int, rng: random.Random) -> list[Prefix]:
    lengths = [b for b, _w in LENGTH_MIX]
    weights = [w for _b, w in LENGTH_MIX]
    seen: set[Prefix] = set()
    out: list[Prefix] = []
    while len(out) < count:
        bits = rng.choices(lengths, weights)[0]
        addr = rng.randrange(1 << 24, 224 << 24) >> (32 - bits) << (32 - bits)
        p = bytes([bits]) + addr.to_bytes(4, "big")[: (bits + 7) // 8]
        # 127/8 is host scope: BIRD drops such routes as bogus, so they cannot
        # be part of a table every speaker must hold in full.
        if addr >> 24 != 127 and p not in seen:
            seen.add(p)
            out.append(p)
    return out


def make_attribute_sets(count: int, rng: random.Random, next_hop: bytes) -> list[PathAttributes]:
    asns = [rng.randrange(1, 64000) for _ in range(3000)] + [
        rng.randrange(131072, 4200000000) for _ in range(600)
    ]
    out = []
    seen = set()
    while len(out) < count:
        path = (65001, *(rng.choice(asns) for _ in range(rng.randint(1, 7))))
        comms = tuple(
            sorted(rng.sample(range(1 << 16, 1 << 32, 7919), rng.choice([0, 0, 1, 2, 3, 5])))
        )
        med = rng.choice([None, None, 0, 10, 100, rng.randrange(1000)])
        key = (path, comms, med)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            PathAttributes(
                origin=rng.choice([0, 0, 0, 2]),
                as_path=AsPath.sequence(*path),
                next_hop=next_hop,
                med=med,
                communities=comms or None,
            )
        )
    return out


def full_table_updates(
    prefixes: int = 1_000_000, attribute_sets: int = 40_000, seed: int = 179
) -> list[Update]:
    """UPDATE messages announcing ``prefixes`` prefixes over ``attribute_sets`` sets."""
    rng = random.Random(seed)
    pfx = make_prefixes(prefixes, rng)
    sets = make_attribute_sets(attribute_sets, rng, bytes([198, 18, 0, 2]))
    groups: list[list[Prefix]] = [[] for _ in sets]
    # Skewed assignment: a Pareto-like draw over set indices.
    n = len(sets)
    for i, p in enumerate(pfx):
        idx = i if i < n else min(int(rng.paretovariate(0.6)) - 1, n - 1)
        idx = idx if i < n else rng.randrange(n) if rng.random() < 0.7 else idx
        groups[idx].append(p)
    updates = []
    budget = 4096 - 19 - 4 - 200  # header, two length fields, generous attribute room
    for attrs, group in zip(sets, groups, strict=True):
        chunk: list[Prefix] = []
        size = 0
        for p in group:
            if size + len(p) > budget:
                updates.append(Update(attributes=attrs, nlri=tuple(chunk)))
                chunk, size = [], 0
            chunk.append(p)
            size += len(p)
        if chunk:
            updates.append(Update(attributes=attrs, nlri=tuple(chunk)))
    return updates


def full_table_stream(prefixes: int = 1_000_000, attribute_sets: int = 40_000) -> list[bytes]:
    ctx = SessionContext()
    return [encode_message(u, ctx) for u in full_table_updates(prefixes, attribute_sets)]

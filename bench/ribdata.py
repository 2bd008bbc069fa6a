"""UPDATE streams for the RIB benchmarks, built once and kept on disk.

Files live in ``BENCH_CACHE`` (default ``/var/tmp/bgpd-bench``), named by
their parameters; building the million-prefix table takes about ten seconds.

- ``table``: a full-table-shaped IPv4 table (``bench.fulltable``), first AS
  65001, next hop 198.18.0.2, then End-of-RIB.
- ``churn``: every tenth prefix of that table withdrawn, then announced again
  with its old attributes plus the marker community 65001:777, so receivers can
  tell the new state from the old.
- ``ibgp``: a smaller table for an iBGP client at 198.18.0.10 (LOCAL_PREF 100,
  the AS path without our AS), then End-of-RIB.
"""

from __future__ import annotations

import os
from pathlib import Path

from bgpd.messages import SessionContext, Update, encode_message
from bgpd.messages.aspath import AsPath
from bgpd.messages.nlri import Prefix

from .fulltable import full_table_updates

CACHE = Path(os.environ.get("BENCH_CACHE", "/var/tmp/bgpd-bench"))
MARKER = 65001 << 16 | 777
CHURN_EVERY = 10
#: Room for the withdrawn-routes length, attribute length and header.
_BUDGET = 4096 - 19 - 4


def _write(path: Path, updates: list[Update]) -> Path:
    ctx = SessionContext()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for u in updates:
            f.write(encode_message(u, ctx))
    tmp.rename(path)
    return path


def _withdrawals(prefixes: list[Prefix]) -> list[Update]:
    out: list[Update] = []
    chunk: list[Prefix] = []
    size = 0
    for p in prefixes:
        if size + len(p) > _BUDGET:
            out.append(Update(withdrawn=tuple(chunk)))
            chunk, size = [], 0
        chunk.append(p)
        size += len(p)
    if chunk:
        out.append(Update(withdrawn=tuple(chunk)))
    return out


def streams(prefixes: int) -> tuple[Path, Path]:
    """(table, churn) files for a table of ``prefixes``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    table = CACHE / f"table-{prefixes}.bin"
    churn = CACHE / f"churn-{prefixes}.bin"
    if table.exists() and churn.exists():
        return table, churn
    updates = full_table_updates(prefixes, max(10, min(40_000, prefixes // 25)))
    _write(table, [*updates, Update.end_of_rib()])
    withdrawn: list[Prefix] = []
    again: list[Update] = []
    n = 0
    for u in updates:
        picked = []
        for p in u.nlri:
            if n % CHURN_EVERY == 0:
                picked.append(p)
            n += 1
        if picked:
            withdrawn += picked
            comms = (*(u.attributes.communities or ()), MARKER)
            again.append(
                Update(attributes=u.attributes.replace(communities=comms), nlri=tuple(picked))
            )
    _write(churn, [*_withdrawals(withdrawn), *again])
    return table, churn


def churned(prefixes: int) -> int:
    """How many prefixes the churn stream withdraws and announces again."""
    return (prefixes + CHURN_EVERY - 1) // CHURN_EVERY


def ibgp_stream(prefixes: int) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"ibgp-{prefixes}.bin"
    if path.exists():
        return path
    hop = bytes([198, 18, 0, 10])
    out = []
    for u in full_table_updates(prefixes, max(10, prefixes // 25), seed=4456):
        a = u.attributes
        path_asns = a.as_path.segments[0].asns[1:] if a.as_path is not None else ()
        attrs = a.replace(as_path=AsPath.sequence(*path_asns), next_hop=hop, local_pref=100)
        out.append(Update(attributes=attrs, nlri=u.nlri))
    return _write(path, [*out, Update.end_of_rib()])

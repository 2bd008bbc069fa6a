"""How every benchmark reports: a readable table, or JSON lines with BENCH_JSON=1.

One row per metric: ours, the peer's figure measured in the same run (or the
issue's goal where no peer program applies), and ours/peer.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    bench: str
    metric: str
    unit: str
    ours: float
    peer: str
    peer_value: float | None

    @property
    def ratio(self) -> float | None:
        if self.peer_value in (None, 0):
            return None
        return self.ours / self.peer_value  # type: ignore[operator]


def emit(rows: list[Row]) -> None:
    """Print rows as JSON lines (BENCH_JSON=1) or as a table."""
    if os.environ.get("BENCH_JSON") == "1":
        for r in rows:
            out = {
                "bench": r.bench,
                "metric": r.metric,
                "unit": r.unit,
                "ours": round(r.ours, 6),
                "peer": r.peer,
                "peer_value": None if r.peer_value is None else round(r.peer_value, 6),
                "ratio": None if r.ratio is None else round(r.ratio, 4),
            }
            print(json.dumps(out), flush=True)
        return
    head = f"{'bench':<10} {'metric':<34} {'ours':>14} {'peer':<22} {'peer value':>14} {'ratio':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        pv = "-" if r.peer_value is None else f"{r.peer_value:,.1f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        print(
            f"{r.bench:<10} {r.metric + ' (' + r.unit + ')':<34} {r.ours:>14,.1f} "
            f"{r.peer:<22} {pv:>14} {ratio:>8}"
        )
    sys.stdout.flush()

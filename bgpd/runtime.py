"""Process-wide settings for long-running bgpd processes.

CPython's default cyclic GC runs a young-generation pass every 700 container
allocations.  Decoding a full table creates millions of small, long-lived
tuples and objects; with the defaults each is traversed again and again, which
cost a third of decode time when measured (``make bench BENCH=codec``).  Objects
alive at start-up are frozen out of collection and the thresholds raised;
reference counting still frees everything acyclic at once.  A young-generation
pass over 250,000 objects takes some tens of milliseconds: far below any hold
or keepalive time.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (250_000, 50, 1000)


def tune_gc() -> None:
    """Apply the GC settings every bgpd daemon runs with."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

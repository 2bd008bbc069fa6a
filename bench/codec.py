"""Codec throughput on a full-table-shaped stream (issue: decode and encode
at least 1,000,000 IPv4 prefixes per second on one core).

The stream is 1,000,000 prefixes over 40,000 distinct attribute sets (see
``fulltable``).  Decoding starts from a fresh session context, so every attribute
set is really decoded; encoding starts from the decoded objects and builds every
attribute block anew (no cached wire bytes).  Each figure is the best of five
rounds (BENCH_ROUNDS), in CPU time of the one core it runs on, under the GC
settings the daemons use.  No other program decodes BGP in a
comparable way here, so the peer column holds the goal.  BENCH_PROFILE=1 also
prints the top of a cProfile of one decode and one encode pass.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time

from bgpd.messages import SessionContext, Update, decode_message, encode_message
from bgpd.runtime import tune_gc

from .fulltable import full_table_stream
from .report import Row

PREFIXES = int(os.environ.get("BENCH_PREFIXES", "1000000"))
ATTRIBUTE_SETS = int(os.environ.get("BENCH_ATTRIBUTE_SETS", "40000"))
GOAL = 1_000_000.0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def _decode(stream: list[bytes]) -> list[Update]:
    ctx = SessionContext()
    return [decode_message(m, ctx) for m in stream]  # type: ignore[misc]


def _encode(updates: list[Update]) -> list[bytes]:
    ctx = SessionContext()
    return [encode_message(u, ctx) for u in updates]


def _profile(label: str, fn: object, arg: object) -> None:
    prof = cProfile.Profile()
    prof.runcall(fn, arg)  # type: ignore[arg-type]
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(8)
    print(f"--- profile: {label}", file=sys.stderr)
    print(out.getvalue(), file=sys.stderr)


def run() -> list[Row]:
    stream = full_table_stream(PREFIXES, ATTRIBUTE_SETS)
    tune_gc()
    count = 0
    decode_best = encode_best = float("inf")
    decoded: list[Update] = []
    for _ in range(ROUNDS):
        start = time.process_time()
        decoded = _decode(stream)
        decode_best = min(decode_best, time.process_time() - start)
        start = time.process_time()
        encoded = _encode(decoded)
        encode_best = min(encode_best, time.process_time() - start)
        if encoded != stream:
            raise AssertionError("re-encoded stream differs from the original")
        count = sum(len(u.nlri) for u in decoded)
        del encoded
    if os.environ.get("BENCH_PROFILE") == "1":
        _profile("decode", _decode, stream)
        _profile("encode", _encode, decoded)
    return [
        Row("codec", "decode IPv4 prefixes", "prefixes/s", count / decode_best, "goal", GOAL),
        Row("codec", "encode IPv4 prefixes", "prefixes/s", count / encode_best, "goal", GOAL),
        Row("codec", "UPDATE messages", "messages", float(len(stream)), "-", None),
    ]

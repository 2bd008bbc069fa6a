"""Run benchmarks by name: ``python -m bench [name ...]``; no name runs them all."""

from __future__ import annotations

import importlib
import sys

from .report import Row, emit

BENCHMARKS = ["codec", "sessions", "rib", "kernel", "cni", "convergence", "policy", "etcd"]


def main(argv: list[str]) -> int:
    names = [a for a in argv if a] or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {BENCHMARKS}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        rows += module.run()
    emit(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

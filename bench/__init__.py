"""Benchmarks: ``make bench`` runs all, ``make bench BENCH=name`` one."""

"""Benchmarks: each ``bench/bench_*.py`` measures mevstack against its baseline in the same run."""

"""Benchmarks: ``python -m bench NAME [--json]``; each writes JSON under bench/results/."""

"""Generators and doubles shipped for tests and benchmarks (a seeded synthetic event stream). Not
used by any production module.

May import: anything in the project; nothing in production imports it.
"""

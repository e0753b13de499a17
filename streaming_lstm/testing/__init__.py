"""Generators and tools shipped for tests, benchmarks and the docs: a seeded synthetic event
stream, Spark's memory stream, and the generator of the README's Layout section. Not used by any
production module.

May import: anything in the project; nothing in production imports it.
"""

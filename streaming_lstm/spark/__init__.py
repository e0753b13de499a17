"""The engine: the Spark session this project builds (its jars, log settings, Python workers), the
classic / Spark Connect seam (which functions differ between the two and how a model reaches the
tasks), the local Spark Connect server started for ``--remote local``, and the Python worker
daemon local sessions fork their workers from (with the zygote that imports its modules while the
JVM starts).

May import: ``core``, ``local`` (the jar sets).
"""

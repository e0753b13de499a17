"""Spark's Python worker daemon, with TensorFlow imported once before it forks the workers.

Spark starts one daemon per executor (``spark.python.daemon.module``) and forks every Python
worker from it. A worker that trains or scores imports TensorFlow, about 3 s of CPU; forked from a
daemon that has imported it, the worker starts with it in memory, in pages it shares with the
daemon and its siblings; so do Spark's worker module, pandas, Arrow and the training module,
which every worker imports before its first task. Spark's own daemon imports nothing before
forking because a thread started at import does not survive a fork: these imports start none but
numpy's BLAS thread and Arrow's allocator thread (``jemalloc_bg_thd``), whose libraries
reinitialise them in a forked child.
The imports are :func:`streaming_lstm.spark.zygote.preload`'s; where a zygote has done them
already (started beside the JVM), the daemon hands itself over to it instead (zygote.py).
Used for local masters (spark/session.py), where the workers run this interpreter and so have
this package; a cluster's executors keep Spark's daemon.

The imported objects are frozen (``gc.freeze``) before the daemon forks: a reused worker runs a
full ``gc.collect()`` after every task, which over TensorFlow's objects takes ~0.15 s that the
worker's next task waits for (the next stage of the same batch included); frozen, the collector
skips them, and it does not write to the pages the workers share with the daemon.
"""

from __future__ import annotations

import sys

from streaming_lstm.spark import zygote


def main() -> int:
    """Run Spark's daemon loop: in a waiting zygote if there is one, else here after the imports."""
    code = zygote.hand_over()
    if code is not None:
        return code
    zygote.preload()
    return zygote.run_manager()


if __name__ == "__main__":
    sys.exit(main())

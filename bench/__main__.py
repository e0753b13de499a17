"""``python -m bench NAME [options]``: run one benchmark (``python -m bench`` lists them)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "seed-table": "the 2016 seed's experiment (150 Iris rows, 128,256, P = 3/5/15) next to its times",
    "overhead": "trainer latency per micro-batch vs a no-op foreachBatch + plain TF, 50 and 20k rows",
    "throughput": "rows/s and GFLOP/s at 20k-100k-row batches vs single-process and Keras LSTM",
    "time-to-accuracy": "rows and seconds until prequential accuracy reaches 0.95 on Kafka-fed Iris",
    "memory": "peak resident memory of driver, JVM, Python workers and broker during the demo",
    "averaging": "which averaging defaults learn best (prequential accuracy on an Iris replay)",
    "drift": "labels permuted mid-stream: batches to the ADWIN alarm and to recovered accuracy",
    "predict-lag": "from a model version written to the stream predictor scoring with it (p50/p95)",
    "kafka": "the demo on Apache Kafka vs Tansu (wall, memory) and rows/s through each Kafka reader",
    "parse": "Spark's per-batch parse and validation time against features per row (4, 64, 600)",
    "river": "prequential accuracy vs River's online learners (ARF, AMF, SRP, ...) on River's data sets and drift streams",
    "forecast": "one-step prequential MAE of event mode vs River's SNARIMAX and HoltWinters on AirlinePassengers, WaterFlow, TrumpApproval",
    "kernel": "the training kernel against an earlier commit's (--against REV), side by side per shape",
    "scale": "one 3 000-row batch at P = 2, 16, 64 keys: batch time and the driver's peak memory",
    "checkpoint-io": "Spark's per-batch checkpoint writes: default FileContext manager vs local mode's FileSystem one",
    "soak": "a long run of small batches: memory, file descriptors, checkpoint size by part and latency against batches",
    "coldstart": "process start to the first applied batch of 50 Iris rows (train --source file) against one-process fit, cold",
    "pause": "a 50-row batch after a pause past Spark's idle minute, with the Python workers kept alive and without",
    "kafka-wait": "the trainer per Kafka batch with the consumer fetch wait at Kafka's 500 ms default vs the project's 10 ms, both readers",
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help") or sys.argv[1] not in BENCHMARKS:
        print("usage: python -m bench NAME [--json] [options]\n\nbenchmarks:")
        for name, what in BENCHMARKS.items():
            print(f"  {name:<18} {what}")
        return 0 if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help") else 2
    module = importlib.import_module(f"bench.{sys.argv[1].replace('-', '_')}")
    module.main(sys.argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())

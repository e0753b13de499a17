"""What a run leaves on disk: one file-system layer (local paths, or Hadoop's ``FileSystem`` for
``hdfs://``, ``s3a://`` ...), the model store (versions written atomically, the newest read back),
the metrics log (``metrics.jsonl``, its reader and the console line) and TensorBoard event files.

May import: ``core``; ``spark.session`` only to reach Hadoop's ``FileSystem`` through a JVM when a
path is a Hadoop URI and no session is active. No TensorFlow.
"""

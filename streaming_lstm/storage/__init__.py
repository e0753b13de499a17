"""What a run leaves on disk: one file-system layer (local paths, or Hadoop's ``FileSystem`` for
``hdfs://``, ``s3a://`` ...), the model store (versions written atomically, the newest read back),
the metrics log (``metrics.jsonl``, rolled, its reader and the console line), TensorBoard event
files, the dead letters' size cap (``deadletters``) and MLflow tracking of a run (``tracking``).

May import: ``core``. A Hadoop URI is reached through a JVM: the active Spark session's, or else a
bare JVM gateway started by Spark's launcher. No TensorFlow.
"""

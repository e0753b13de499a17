"""Spark's ``MemoryStream``, for tests and benchmarks: rows added from Python form the next
micro-batch, and offsets live in the checkpoint like any source's."""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession


class MemorySource:
    """A thin wrapper over Spark's ``MemoryStream[String]`` (reached through py4j; tests only)."""

    JVM_CLASS = "org.apache.spark.sql.execution.streaming.runtime.MemoryStream"

    def __init__(self, spark: SparkSession) -> None:
        jvm = spark._jvm
        assert jvm is not None
        encoder = jvm.org.apache.spark.sql.Encoders.STRING()
        # py4j reaches the Scala companion object's apply(Encoder, SparkSession).
        self._stream = jvm.org.apache.spark.sql.execution.streaming.runtime.MemoryStream.apply(encoder, spark._jsparkSession)
        self._jvm = jvm
        self._spark = spark

    def add(self, lines: Iterable[str]) -> None:
        """Append rows; they form (part of) the next micro-batch."""
        java_list = self._jvm.java.util.ArrayList()
        for line in lines:
            java_list.add(line)
        seq = self._jvm.scala.jdk.javaapi.CollectionConverters.asScala(java_list).toSeq()
        self._stream.addData(seq)

    def df(self) -> DataFrame:
        return DataFrame(self._stream.toDF(), self._spark)

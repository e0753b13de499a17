# One image for every service of docker-compose.yml: Python 3.11, Java 17, PySpark 4.2 (whose
# bin/spark-class runs the standalone Master and Worker), TensorFlow and this package. The executors
# need the same Python and TensorFlow as the driver; the official apache/spark image ships Python 3.10
# without TensorFlow, so the cluster runs from this image instead.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streaming_lstm ./streaming_lstm
COPY producers ./producers
RUN pip install --no-cache-dir .
COPY conf ./conf
COPY data ./data

ENV SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=python3 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PATH=/usr/local/lib/python3.11/site-packages/pyspark/bin:$PATH

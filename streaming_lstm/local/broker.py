"""Local Kafka brokers for the demo and the tests, and ``streaming-lstm broker``.

Two engines, one interface (``start``, ``stop``, ``bootstrap``, ``description``):

* ``apache-kafka`` (the default): a real Apache Kafka broker in its own JVM, from the jars that
  ``scripts/setup.sh`` fetched (kafka_broker.py). It is what users run in production, keeps its
  data on disk and survives a restart.
* ``tansu``: the Python-packaged Tansu build (tansu.py), for machines without Java jars.

Both listen on loopback only. Users with their own Kafka point ``--bootstrap`` at it instead.
"""

from __future__ import annotations

from streaming_lstm.local.kafka_broker import ApacheKafkaBroker, BrokerError
from streaming_lstm.local.tansu import TansuBroker

ENGINES = ("apache-kafka", "tansu")
Broker = ApacheKafkaBroker | TansuBroker


def make_broker(engine: str = "apache-kafka", port: int = 0, data_dir: str | None = None, *, secure: bool = False) -> Broker:
    """An unstarted broker of ``engine``; ``data_dir`` keeps Apache Kafka's data (Tansu has none);
    ``secure``: Apache Kafka with a SASL_SSL listener (kafka_security.py)."""
    if engine == "apache-kafka":
        return ApacheKafkaBroker(port, data_dir, secure=secure)
    if engine == "tansu":
        if data_dir is not None or secure:
            raise BrokerError("--data-dir and --secure need --engine apache-kafka: the Tansu broker keeps records in memory, on a plain listener")
        return TansuBroker(port)
    raise BrokerError(f"unknown broker engine {engine!r}; choose from {', '.join(ENGINES)}")


def run_forever(engine: str, port: int, data_dir: str | None, secure: bool = False) -> int:
    """``streaming-lstm broker``: run until Ctrl-C or SIGTERM, then stop the broker cleanly."""
    import signal

    broker = make_broker(engine, port, data_dir, secure=secure).start()
    where = f"data in {data_dir}" if data_dir else ("a temporary data directory" if engine == "apache-kafka" else "memory storage")
    log_note = f"; its log: {broker.log_file}"
    print(f"{broker.description} broker on {broker.bootstrap} ({where}){log_note}; Ctrl-C stops it", flush=True)
    if isinstance(broker, ApacheKafkaBroker) and broker.secure is not None:
        props = broker.secure.write_client_properties(broker.data_dir / "client.properties")
        print(f"SASL_SSL ({broker.secure.user}, SCRAM-SHA-512): clients pass --kafka-properties {props} (mode 0600)", flush=True)

    def _terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        assert broker.process is not None
        code = broker.process.wait()
        print(f"the broker exited with code {code}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("stopping the broker", flush=True)
        return 0
    finally:
        broker.stop()

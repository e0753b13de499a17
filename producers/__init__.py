"""Replay producers: rows (``replay``) and events (``event_replay``) from a file into a socket or
Kafka, at a rate, shuffled or looped, with corrupt rows on purpose (``streaming-lstm produce``,
``python -m producers.replay``).

May import: ``streaming_lstm.core``, ``streaming_lstm.parse``, ``streaming_lstm.kafka``.
"""

"""``python -m producers.replay``: kept for existing command lines; the replay producer lives in
:mod:`streaming_lstm.replay` (``streaming-lstm produce``)."""

from __future__ import annotations

import sys

from streaming_lstm.replay import KafkaSink, ReplayStats, SocketSink, build_parser, corrupt, main, read_rows, replay, schedule

__all__ = ["KafkaSink", "ReplayStats", "SocketSink", "build_parser", "corrupt", "main", "read_rows", "replay", "schedule"]

if __name__ == "__main__":
    sys.exit(main())

"""The ``streaming-lstm`` console script, and the file spark-submit runs
(``spark-submit ... streaming_lstm/cli.py train ...``). The command line itself is in
:mod:`streaming_lstm.commands`."""

from __future__ import annotations

import sys

from streaming_lstm.commands.main import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())

"""streaming-lstm: learn a from-scratch TensorFlow LSTM online with Spark Structured Streaming."""

import os as _os

__version__ = "0.1.0"

# Set before anything imports TensorFlow, in the driver and in every Spark Python worker (they import
# this package to run a task): TF's C++ start-up chatter stays quiet, and oneDNN's custom ops stay off
# (measured: no speed difference here; they print an absl warning per process and change float
# rounding between runs). A user's own setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

"""streaming-lstm: learn a from-scratch TensorFlow LSTM online with Spark Structured Streaming."""

__version__ = "0.1.0"

"""The model and its mathematics, with no engine attached: the configuration (types, rules,
loading), the LSTM (``model``), its weights and their schema, the running normaliser, training as
a pure function of (weights, rows, config) and the compiled model it runs (``compiled``), the
server optimisers, the warm-up schedule, seeds,
ADWIN drift detection, window formation for event streams, the rehearsal buffer, forecasting
changes and the forecast gain (``change``, ``gain``), what a training task returns
(``results``) and the fault points the fault tests arm.

May import: nothing else of this project; numpy and TensorFlow, never Spark or Kafka.
"""

"""The streaming trainer and the streaming predictor: the ``foreachBatch`` handler (``handler``),
routing a batch's rows to balanced training keys (``routing``), the task bodies that run in Spark's
Python workers (``executor``), the training built into the query's own plan (``planned``), the
driver state that applies each batch id exactly once (``state``), sources, the query's lifecycle
(``runner``), the Python workers (or the driver's model) warmed at start and kept across pauses
(``keepwarm``), the trainer's halves under
Spark Connect (``remote``), the event-window operator (``window_state``) and streaming predict
(``predictor``) with its sinks and replay record (``prediction_sinks``).

May import: ``core``, ``storage``, ``parse``, ``kafka``, ``spark``. Never ``commands`` or ``local``.
"""

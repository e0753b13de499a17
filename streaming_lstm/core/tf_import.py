"""TensorFlow, imported without the Keras it loads eagerly: ``from streaming_lstm.core.tf_import import tf``.

``import tensorflow`` ends by importing Keras 3's optimizers (its ``__init__`` does it eagerly so
that they register with the SavedModel loader), which imports all of Keras and matplotlib's
pyplot: about a quarter of the import's time (``python -X importtime -c "import tensorflow"``
shows it under ``keras._tf_keras``; docs/benchmarks.md has the figures). This package builds its LSTM, optimisers and exports
from TensorFlow's own ops and never calls Keras at run time, yet every Python worker, ``fit``,
``predict`` and ``export`` pays that import before its first step. Here Keras's modules are
refused while TensorFlow's ``__init__`` runs (TensorFlow catches the ImportError and carries on);
``tf.keras`` stays TensorFlow's lazy loader and imports Keras on first use (the parity tests
and ``bench throughput`` use it so).

Where TensorFlow was imported before this module, it is that import, Keras included.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType


class _KerasDeferred(MetaPathFinder):
    """Refuses Keras's submodules (the top-level ``keras`` stays findable: TensorFlow asks
    where it lives to set up ``tf.keras``'s lazy path)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.startswith("keras."):
            raise ImportError(f"{fullname}: deferred while TensorFlow imports (streaming_lstm.core.tf_import)")
        return None


_deferred = _KerasDeferred()
sys.meta_path.insert(0, _deferred)
try:
    import tensorflow as tf
finally:
    sys.meta_path.remove(_deferred)

__all__ = ["tf"]

"""Using a trained model outside the trainer: a TensorFlow SavedModel.

The SavedModel's ``serving_default`` signature takes raw feature rows ``features: (None, F)``
float32 (normalisation is inside, with the statistics saved with the weights) and returns
``probabilities: (None, C)``. ``streaming_lstm.json`` beside it names the features, the classes and
the model version.

The model and ``out`` may be local paths or Hadoop URIs (fs.py). TensorFlow's SavedModel writer
knows only local paths (and gs://), so a non-local ``out`` is written to a local temporary
directory first and copied up through the file-system layer.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from streaming_lstm.fs import filesystem, is_local, join, local_path
from streaming_lstm.store import ModelStore
from streaming_lstm.weights import LSTMConfig


def export_saved_model(model_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Any]:
    import tensorflow as tf

    from streaming_lstm.model import LSTMStack

    saved = ModelStore.load_latest_or_raise(model_path)
    lstm = LSTMConfig.from_app(saved.config)
    shift, div = saved.norm.scale()

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="streaming_lstm")
            self.net = LSTMStack(lstm)
            self.net.assign(saved.weights)
            self.shift = tf.constant(shift, tf.float32)
            self.div = tf.constant(div, tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, lstm.num_features], tf.float32, name="features")])
        def serve(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
            x = (features - self.shift) / self.div  # the trainer's running normalisation
            return {"probabilities": tf.nn.softmax(self.net(x))}

    module = Serving()
    out_loc = os.fspath(out)
    info = {
        "model_version": saved.version,
        "features": list(saved.config.data.features),
        "classes": saved.config.data.class_labels(),
        "label_values": list(saved.config.data.classes),
        "signature": f"serving_default(features: float32[None, {lstm.num_features}]) -> probabilities: float32[None, {lstm.num_classes}]",
    }
    with tempfile.TemporaryDirectory(prefix="streaming-lstm-export-") as tmp:
        target = local_path(out_loc) if is_local(out_loc) else os.path.join(tmp, "model")
        tf.saved_model.save(module, target, signatures={"serving_default": module.serve})
        if not is_local(out_loc):
            filesystem(out_loc).upload_dir(target, out_loc)
    filesystem(out_loc).write_atomic(join(out_loc, "streaming_lstm.json"), (json.dumps(info, indent=1) + "\n").encode())
    return {"out": out_loc, **info}

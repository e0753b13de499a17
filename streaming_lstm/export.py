"""Using a trained model outside the trainer: a TensorFlow SavedModel.

The SavedModel's ``serving_default`` signature takes raw feature rows ``features: (None, F)``
float32 (normalisation is inside, with the statistics saved with the weights) and returns
``probabilities: (None, C)``. ``streaming_lstm.json`` beside it names the features, the classes and
the model version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streaming_lstm.store import ModelStore
from streaming_lstm.weights import LSTMConfig


def export_saved_model(model_path: str | Path, out: str | Path) -> dict[str, Any]:
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
    out_path = Path(out)
    tf.saved_model.save(module, str(out_path), signatures={"serving_default": module.serve})
    info = {
        "model_version": saved.version,
        "features": list(saved.config.data.features),
        "classes": saved.config.data.class_labels(),
        "label_values": list(saved.config.data.classes),
        "signature": f"serving_default(features: float32[None, {lstm.num_features}]) -> probabilities: float32[None, {lstm.num_classes}]",
    }
    (out_path / "streaming_lstm.json").write_text(json.dumps(info, indent=1) + "\n")
    return {"out": str(out_path), **info}

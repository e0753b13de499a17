"""Using a trained model outside the trainer: a TensorFlow SavedModel, and batch predictions.

The SavedModel's ``serving_default`` signature takes raw feature rows ``features: (None, F)``
float32 (normalisation is inside, with the statistics saved with the weights) and returns
``probabilities: (None, C)``. ``streaming_lstm.json`` beside it names the features, the classes and
the model version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from streaming_lstm import train
from streaming_lstm.data import load_csv
from streaming_lstm.standalone import class_names, load_model
from streaming_lstm.store import SavedModel
from streaming_lstm.weights import LSTMConfig


def export_saved_model(model_path: str | Path, out: str | Path) -> dict[str, Any]:
    import tensorflow as tf

    from streaming_lstm.model import LSTMStack

    saved = load_model(model_path)
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
        "classes": class_names(saved.config),
        "label_values": list(saved.config.data.classes),
        "signature": f"serving_default(features: float32[None, {lstm.num_features}]) -> probabilities: float32[None, {lstm.num_classes}]",
    }
    (out_path / "streaming_lstm.json").write_text(json.dumps(info, indent=1) + "\n")
    return {"out": str(out_path), **info}


def predict_rows(saved: SavedModel, x_raw: np.ndarray) -> np.ndarray:
    spec = train.TrainSpec.from_app(saved.config)
    return train.predict(saved.weights, saved.norm.transform(x_raw), spec, saved.config.train.tf_threads)


def predict_csv(model_path: str | Path, data_path: str | Path) -> Iterator[dict[str, Any]]:
    """One JSON-ready record per valid row of ``data_path``: class, probabilities, model version.

    The file is read with the model's own column layout; a label column, if present, is ignored
    for prediction and echoed as ``label``. Invalid rows are skipped and counted by ``load_csv``.
    """
    saved = load_model(model_path)
    data = load_csv(data_path, saved.config.data)
    probs = predict_rows(saved, data.x)
    names = class_names(saved.config)
    for i, p in enumerate(probs):
        yield {
            "row": i,
            "class": names[int(p.argmax())],
            "probabilities": [round(float(v), 6) for v in p],
            "label": names[int(data.y[i])],
            "model_version": saved.version,
        }

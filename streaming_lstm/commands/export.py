"""Using a trained model outside the trainer: a TensorFlow SavedModel.

The SavedModel's ``serving_default`` signature takes raw feature rows ``features: (None, F)``
float32 (normalisation is inside, with the statistics saved with the weights) and returns
``probabilities: (None, C)``. An event-mode model takes a window instead, ``window: (None, T, F)``
(an entity's last T events, their feature columns in order; ``data.known`` columns read
``horizon`` events ahead, as windows.window_arrays builds it), and returns ``forecast: (None, C)``
in the targets' own units (the next ``horizon`` values of each target, horizon-major), or
``probabilities``. ``streaming_lstm.json`` beside it names the features, the classes or targets
and the model version.

The model and ``out`` may be local paths or Hadoop URIs (fs.py). TensorFlow's SavedModel writer
knows only local paths (and gs://), so a non-local ``out`` is written to a local temporary
directory first and copied up through the file-system layer.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

from streaming_lstm.commands.common import json_parent
from streaming_lstm.commands.output import print_result
from streaming_lstm.core.config import ConfigError
from streaming_lstm.core.weights import LSTMConfig
from streaming_lstm.storage.fs import filesystem, is_local, join, local_path
from streaming_lstm.storage.store import ModelStore, SavedModel


def export_saved_model(model_path: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False) -> dict[str, Any]:
    """The newest model of ``model_path`` as a SavedModel in ``out``, which must be new or empty
    unless ``force`` (a SavedModel is not mixed into a directory of other files by accident)."""
    saved = ModelStore.load_latest_or_raise(model_path)  # both checks before TensorFlow loads
    names = filesystem(os.fspath(out)).list_names(os.fspath(out))
    if names and not force:
        shown = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
        raise ConfigError(f"--out {os.fspath(out)}: not empty ({shown}); choose a new directory, or add --force to write the SavedModel into it")
    from streaming_lstm.core.tf_import import tf

    module, info = serving_module(saved)
    out_loc = os.fspath(out)
    with tempfile.TemporaryDirectory(prefix="streaming-lstm-export-") as tmp:
        target = local_path(out_loc) if is_local(out_loc) else os.path.join(tmp, "model")
        tf.saved_model.save(module, target, signatures={"serving_default": module.serve})
        if not is_local(out_loc):
            filesystem(out_loc).upload_dir(target, out_loc)
    filesystem(out_loc).write_atomic(join(out_loc, "streaming_lstm.json"), (json.dumps(info, indent=1) + "\n").encode())
    return {"out": out_loc, **info}


def window_inputs(raw: Any, lstm: LSTMConfig, change_from: tuple[int, ...]) -> Any:
    """change.window_inputs in TensorFlow: with data.forecast_change, each feature's earlier steps
    relative to its last one; ``raw`` (B, T*F)."""
    if not change_from:
        return raw
    from streaming_lstm.core.tf_import import tf

    f = lstm.features_per_step
    last = raw[:, -f:]  # (B, F)
    return tf.concat([raw[:, :-f] - tf.tile(last, [1, lstm.timesteps - 1]), last], axis=1)


def serving_module(saved: SavedModel) -> tuple[Any, dict[str, Any]]:
    """A ``tf.Module`` that serves ``saved`` (``serve``: the signature; ``__call__``: the output
    tensor alone, which MLflow's TensorFlow flavour calls), and what it takes and gives."""
    from streaming_lstm.core.model import LSTMStack
    from streaming_lstm.core.tf_import import tf

    lstm = LSTMConfig.from_app(saved.config)
    shift, div = saved.norm.scale()
    nf, events = lstm.num_features, saved.config.data.mode == "events"
    output = "forecast" if lstm.forecast else "probabilities"
    change_from = saved.config.change_columns()  # data.forecast_change: the inputs holding the last values
    served = saved.served_gain()
    gain = served if served is not None else [1.0] * lstm.num_classes
    if events:
        spec = tf.TensorSpec([None, lstm.timesteps, lstm.features_per_step], tf.float32, name="window")
        takes = f"window: float32[None, {lstm.timesteps}, {lstm.features_per_step}]"
    else:
        spec = tf.TensorSpec([None, nf], tf.float32, name="features")
        takes = f"features: float32[None, {nf}]"

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="streaming_lstm")
            self.net = LSTMStack(lstm)
            self.net.assign(saved.weights)
            self.shift = tf.constant(shift[:nf], tf.float32)
            self.div = tf.constant(div[:nf], tf.float32)
            self.y_shift = tf.constant(shift[nf:], tf.float32)  # forecast targets' statistics
            self.y_div = tf.constant(div[nf:], tf.float32)
            self.gain = tf.constant(gain, tf.float32)  # (C,) the forecast gain (gain.py); 1 without one

        @tf.function(input_signature=[spec])
        def serve(self, rows: tf.Tensor) -> dict[str, tf.Tensor]:
            raw = tf.reshape(rows, (-1, nf))  # (B, T*F)
            out = self.net((window_inputs(raw, lstm, change_from) - self.shift) / self.div)  # (B, C), inputs in the trainer's running normalisation
            if not lstm.forecast:
                return {output: tf.nn.softmax(out)}
            if not change_from:
                return {output: out * self.y_div + self.y_shift}
            base = tf.gather(raw, list(change_from), axis=1)  # (B, C): the last values
            return {output: base + self.gain * (out * self.y_div + self.y_shift)}

        @tf.function(input_signature=[spec])
        def __call__(self, rows: tf.Tensor) -> tf.Tensor:
            return self.serve(rows)[output]  # (B, C)

    d = saved.config.data
    forecast = {"targets": list(d.targets), "horizon": d.horizon, "known_ahead": list(d.known)}
    info = {
        "model_version": saved.version,
        "features": list(d.features),
        **(forecast if lstm.forecast else {"classes": d.class_labels(), "label_values": list(d.classes)}),
        "signature": f"serving_default({takes}) -> {output}: float32[None, {lstm.num_classes}]",
    }
    return Serving(), info


def register(model_path: str, name: str, setting: str) -> dict[str, Any]:
    """Log the newest model with MLflow's TensorFlow flavour, in the checkpoint's MLflow run when it
    has one (else a new run), and register it as a new version of ``name``, tagged with the
    checkpoint's model version and rows seen. ``models:/NAME/V`` then loads with ``mlflow.pyfunc``
    and predicts from float32 feature rows (N, F) (event models: windows (N, T, F))."""
    import mlflow
    import numpy as np

    from streaming_lstm.storage import tracking

    saved = ModelStore.load_latest_or_raise(model_path)
    checkpoint = os.fspath(model_path)
    mlflow_client = tracking.client(setting, checkpoint)
    mlflow.set_tracking_uri(tracking.tracking_uri(setting, checkpoint))
    run_file = join(checkpoint, tracking.RUN_FILE)
    fs = filesystem(run_file)
    run_id = json.loads(fs.read_bytes(run_file))["run_id"] if fs.exists(run_file) else None
    experiment = tracking.experiment_id(mlflow_client, saved.config.mlflow.experiment, checkpoint, setting)
    module, info = serving_module(saved)
    lstm = LSTMConfig.from_app(saved.config)
    shape = (1, lstm.timesteps, lstm.features_per_step) if saved.config.data.mode == "events" else (1, lstm.num_features)
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment):
        logged = mlflow.tensorflow.log_model(module, name="model", registered_model_name=name, input_example=np.zeros(shape, np.float32))
    version = str(logged.registered_model_version)
    tags = {"streaming_lstm.model_version": saved.version, "streaming_lstm.rows_seen": saved.meta.get("rows_seen", 0)}
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, version, key, str(value))
    return {
        "registered_model": name,
        "registered_version": version,
        "model_uri": f"models:/{name}/{version}",
        "tracking_uri": mlflow.get_tracking_uri(),
        **info,
    }


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        parents=[json_parent()],
        help="write the newest model as a TensorFlow SavedModel",
        description=(
            "Export the newest version of a trainer checkpoint (or model directory) as a SavedModel whose serving "
            "signature takes raw feature rows and returns class probabilities (forecasts in event mode)."
        ),
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="trainer checkpoint or model directory")
    p.add_argument("--out", required=True, metavar="PATH", help="SavedModel directory to write: new or empty")
    p.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    p.add_argument("--mlflow-register", metavar="NAME", help="also log the model with MLflow's TensorFlow flavour and register it as a new version of NAME")
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="MLflow tracking URI for --mlflow-register: 'local' (SQLite in the checkpoint; the default) or any URI (default $MLFLOW_TRACKING_URI)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.mlflow and not args.mlflow_register:
        raise ConfigError("export --mlflow URI goes with --mlflow-register NAME")
    r = export_saved_model(args.checkpoint, args.out, force=args.force)
    text = f"model version {r['model_version']} exported as a SavedModel to {r['out']}\n  {r['signature']}"
    if args.mlflow_register:
        reg = register(args.checkpoint, args.mlflow_register, args.mlflow or os.environ.get("MLFLOW_TRACKING_URI") or "local")
        r = {**r, **{k: reg[k] for k in ("registered_model", "registered_version", "model_uri", "tracking_uri")}}
        text += f"\n  registered in MLflow as {r['model_uri']} ({r['tracking_uri']})"
    print_result(r, args.json, text)
    return 0

"""The LSTM's shape config and its named weights: numpy only, so the Spark driver never imports TF.

The network itself is in model.py. Weights are a plain ``dict[str, np.ndarray]`` of float32 in schema order, so they
cross process boundaries as bytes (``.npz`` without pickle) and average like vectors.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streaming_lstm.core.config import AppConfig, ModelConfig

Weights = dict[str, np.ndarray]
Schema = list[tuple[str, tuple[int, ...]]]


class WeightsError(ValueError):
    """Weights bytes or arrays that do not match the model's schema; the message names the tensor."""


@dataclass(frozen=True)
class LSTMConfig:
    """Everything that fixes the shapes of the weights."""

    timesteps: int
    features_per_step: int
    hidden: tuple[int, ...]
    num_classes: int  # the head's outputs: classes, or forecast values (task "forecast")
    seed: int = 42
    task: str = "classify"

    @classmethod
    def from_app(cls, cfg: AppConfig) -> LSTMConfig:
        """The network shape of an application config (its model section, task and outputs)."""
        return cls.from_model(cfg.model, cfg.data.outputs(), cfg.data.task)

    @classmethod
    def from_model(cls, m: ModelConfig, num_classes: int, task: str = "classify") -> LSTMConfig:
        return cls(m.timesteps, m.features_per_step, tuple(m.hidden), num_classes, m.seed, task)

    @property
    def num_features(self) -> int:
        return self.timesteps * self.features_per_step

    def describe(self) -> str:
        """The shape in a user's words: ``4 timesteps x 1 feature, layers 64, 3 classes, seed 42``."""
        plural = "" if self.features_per_step == 1 else "s"
        outputs = f"{self.num_classes} forecast values" if self.forecast else f"{self.num_classes} classes"
        return f"{self.timesteps} timesteps x {self.features_per_step} feature{plural}, layers {','.join(map(str, self.hidden))}, {outputs}, seed {self.seed}"

    @property
    def forecast(self) -> bool:
        return self.task == "forecast"

    @property
    def num_stats(self) -> int:
        """Columns the normaliser keeps statistics of: the features, then (forecast) the targets,
        which are normalised by their own running statistics too."""
        return self.num_features + (self.num_classes if self.forecast else 0)


def schema(cfg: LSTMConfig) -> Schema:
    """Names and shapes of all weights, in a stable order."""
    out: Schema = []
    fan_in = cfg.features_per_step
    for layer, hidden in enumerate(cfg.hidden):
        out.append((f"lstm_{layer}/kernel", (fan_in, 4 * hidden)))  # W
        out.append((f"lstm_{layer}/recurrent_kernel", (hidden, 4 * hidden)))  # U
        out.append((f"lstm_{layer}/bias", (4 * hidden,)))  # b
        fan_in = hidden
    out.append(("head/kernel", (fan_in, cfg.num_classes)))
    out.append(("head/bias", (cfg.num_classes,)))
    return out


def init_weights(cfg: LSTMConfig, seed: int | None = None) -> Weights:
    """Glorot-uniform kernels, zero biases except the forget gate's (1.0), from a numpy seed."""
    rng = np.random.default_rng(cfg.seed if seed is None else seed)
    weights: Weights = {}
    for name, shape in schema(cfg):
        if name.endswith("bias"):
            w = np.zeros(shape, np.float32)
            if name.startswith("lstm_"):
                hidden = shape[0] // 4
                w[0:hidden] = 1.0  # forget gate first: remember by default
        else:
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            w = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        weights[name] = w
    return weights


def check_weights(weights: Mapping[str, np.ndarray], cfg: LSTMConfig) -> Weights:
    """Return ``weights`` in schema order as float32, or raise :class:`WeightsError` naming the tensor."""
    expected = schema(cfg)
    names = {n for n, _ in expected}
    extra = sorted(set(weights) - names)
    if extra:
        raise WeightsError(f"unexpected tensor '{extra[0]}' (the model has {len(expected)} tensors)")
    out: Weights = {}
    for name, shape in expected:
        if name not in weights:
            raise WeightsError(f"missing tensor '{name}' with shape {shape}")
        arr = np.asarray(weights[name])
        if arr.shape != shape:
            raise WeightsError(f"tensor '{name}' has shape {arr.shape}, the model expects {shape}")
        if arr.dtype != np.float32:
            if not np.issubdtype(arr.dtype, np.floating):
                raise WeightsError(f"tensor '{name}' has dtype {arr.dtype}, expected float32")
            arr = arr.astype(np.float32)
        out[name] = arr
    return out


def weights_to_bytes(weights: Mapping[str, np.ndarray]) -> bytes:
    """Serialise named arrays as an uncompressed ``.npz`` (no pickle inside)."""
    buf = io.BytesIO()
    arrays = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    np.savez(buf, allow_pickle=False, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    return buf.getvalue()


def arrays_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Read named arrays from ``.npz`` bytes, refusing pickled objects with a clear error."""
    if not data.startswith(b"PK"):
        kind = "a pickle" if data[:1] == b"\x80" else "not an .npz archive"
        raise WeightsError(f"not a valid weights file ({kind}); weights files are .npz and are never unpickled")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise WeightsError("refusing pickled data in a weights file (object arrays are never loaded)") from None
        raise WeightsError(f"not a valid weights file: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"not a valid weights file: {exc}") from None


def weights_from_bytes(data: bytes, cfg: LSTMConfig) -> Weights:
    return check_weights(arrays_from_bytes(data), cfg)


def flatten(weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """All weights as one float64 vector, schema order (for averaging and norms)."""
    return np.concatenate([np.asarray(w, np.float64).ravel() for w in weights.values()])


def unflatten(vector: np.ndarray, like: Mapping[str, np.ndarray]) -> Weights:
    out: Weights = {}
    pos = 0
    for name, w in like.items():
        out[name] = vector[pos : pos + w.size].reshape(w.shape).astype(np.float32)
        pos += w.size
    return out


def all_finite(weights: Mapping[str, np.ndarray]) -> bool:
    return all(bool(np.isfinite(w).all()) for w in weights.values())

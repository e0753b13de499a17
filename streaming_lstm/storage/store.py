"""A model directory: numbered versions of weights, normaliser statistics and metadata.

Layout of ``DIR`` (the same for ``fit --out DIR`` and the trainer's ``CHECKPOINT/model``)::

    v0000000007.npz    arrays: "model/<tensor>", "next/<tensor>" (optional), "norm/count|mean|m2",
                       "server/m|v|rounds" (optional: the server optimiser's state, server_opt.py),
                       "drift/window|detections" (optional: the drift detector's window, drift.py),
                       "rehearsal/x|y" (optional: the trainer's rehearsal buffer, rehearsal.py),
                       "gain/cross|power|windows" (optional: the forecast gain's sums, gain.py)
    v0000000007.json   metadata: config, version, last applied batch id, rows seen, sha256 of the npz

``DIR`` is a local path or any Hadoop-compatible URI (``hdfs://``, ``s3a://`` ...; fs.py).

Contract: a version exists once its JSON exists. Both files are written to a temporary name,
synced and renamed (npz first, JSON last), and the directory is fsynced, so a crash at any moment
leaves either the previous newest version or the new one, never a torn file under a final name.
The JSON carries the npz's SHA-256; :meth:`ModelStore.load_latest` checks it and falls back to the
previous version, with a warning, if the newest is corrupt. On object stores, which have no atomic
rename, the contract holds the same way: version files are immutable (a version number is written
once), an object appears only whole, the JSON is written last and names the npz's hash, so a
missing or half-copied npz is a corrupt version that is skipped. Files are created readable by
their owner only (where the file system has permissions). Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streaming_lstm.core import faults
from streaming_lstm.core.config import AppConfig, ConfigError
from streaming_lstm.core.config_load import from_dict
from streaming_lstm.core.gain import ForecastGain
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.rehearsal import Rehearsal
from streaming_lstm.core.weights import LSTMConfig, Weights, WeightsError, arrays_from_bytes, check_weights, weights_to_bytes
from streaming_lstm.storage.fs import basename, filesystem, join

log = logging.getLogger(__name__)
FORMAT = "streaming-lstm/1"
_NAME = re.compile(r"^v(\d{10})\.json$")


def pack_model(
    weights: Mapping[str, np.ndarray],
    norm: NormStats,
    next_weights: Mapping[str, np.ndarray] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    rehearsal: Rehearsal | None = None,
) -> dict[str, np.ndarray]:
    """The named arrays of a model: ``model/<tensor>``, optional ``next/<tensor>``, ``norm/...``,
    the trainer's other state in ``extra``, already prefixed (``server/...`` from
    ServerOptimizer.to_arrays, ``drift/...`` from Adwin.to_arrays, ``gain/...`` from
    ForecastGain.to_arrays), optional ``rehearsal/x|y`` (the
    rows the next batch replays).

    The one layout for model files and for the weights the trainer broadcasts to its tasks.
    """
    arrays = {f"model/{k}": v for k, v in weights.items()}
    if next_weights is not None:
        arrays.update({f"next/{k}": v for k, v in next_weights.items()})
    arrays.update(norm.to_arrays())
    arrays.update(extra or {})
    arrays.update(rehearsal.to_arrays() if rehearsal is not None else {})
    return arrays


def unpack_model(arrays: Mapping[str, np.ndarray], lstm: LSTMConfig) -> tuple[Weights, Weights | None, NormStats]:
    """(weights, next weights or None, normaliser) from :func:`pack_model`'s arrays, checked."""
    weights = check_weights({k[6:]: v for k, v in arrays.items() if k.startswith("model/")}, lstm)
    nxt = {k[5:]: v for k, v in arrays.items() if k.startswith("next/")}
    return weights, check_weights(nxt, lstm) if nxt else None, NormStats.from_arrays(arrays, lstm.num_stats)


class ModelStoreError(RuntimeError):
    """No loadable model in a directory; the message says where and why."""


@dataclass
class SavedModel:
    """One loaded version."""

    version: int
    config: AppConfig
    weights: Weights  # the model (the running average)
    next_weights: Weights | None  # what the next batch trains from, when it differs
    norm: NormStats
    meta: dict[str, Any]
    server: dict[str, np.ndarray] = field(default_factory=dict)  # the server optimiser's state
    drift: dict[str, np.ndarray] = field(default_factory=dict)  # the drift detector's window
    rehearsal: Rehearsal | None = None  # the rows the next batch replays (rehearsal.py)
    gain: ForecastGain | None = None  # the forecast gain's sums (gain.py); None: forecasts use the network's change as it is

    def served_gain(self) -> np.ndarray | None:
        """The gain the model's forecasts apply (gain.py), or None (the network's change as it is)."""
        return self.gain.value() if self.gain is not None else None


def ensure_private_dir(location: str | os.PathLike[str]) -> str:
    """Create a directory (0700 where permissions exist) and return it as a string."""
    loc = os.fspath(location)
    filesystem(loc).mkdirs(loc)
    return loc


class ModelStore:
    """Versioned, atomically written model files in one directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = os.fspath(directory)
        self.fs = filesystem(self.dir)

    @classmethod
    def resolve(cls, path: str | os.PathLike[str]) -> ModelStore:
        """A model directory, or a trainer checkpoint directory holding one under ``model/``."""
        store = cls(path)
        if not store.versions() and store.fs.is_dir(join(store.dir, "model")):
            return cls(join(store.dir, "model"))
        return store

    @classmethod
    def load_latest_or_raise(cls, path: str | os.PathLike[str]) -> SavedModel:
        """The newest loadable version in a model or checkpoint directory, or FileNotFoundError."""
        saved = cls.resolve(path).load_latest()
        if saved is None:
            raise FileNotFoundError(f"no model found in {path} (expected v*.json files, or a checkpoint with model/)")
        return saved

    def versions(self) -> list[int]:
        return sorted(int(m.group(1)) for f in self.fs.list_names(self.dir) if (m := _NAME.match(f)))

    def paths(self, version: int) -> tuple[str, str]:
        stem = f"v{version:010d}"
        return join(self.dir, f"{stem}.npz"), join(self.dir, f"{stem}.json")

    def save(
        self,
        version: int,
        config: AppConfig,
        weights: Mapping[str, np.ndarray],
        norm: NormStats,
        meta: Mapping[str, Any],
        next_weights: Mapping[str, np.ndarray] | None = None,
        keep: int = 5,
        extra: Mapping[str, np.ndarray] | None = None,
        rehearsal: Rehearsal | None = None,
    ) -> str:
        """Write version ``version`` atomically, then delete all but the newest ``keep``."""
        ensure_private_dir(self.dir)
        blob = weights_to_bytes(pack_model(weights, norm, next_weights, extra, rehearsal))
        npz_path, json_path = self.paths(version)
        record = {
            "format": FORMAT,
            "version": version,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "config": config.to_dict(),
            **meta,
        }
        self.fs.write_atomic(npz_path, blob)
        faults.hit("mid_save", int(meta.get("batch_id", -1)))
        self.fs.write_atomic(json_path, json.dumps(record, indent=1, sort_keys=True).encode())
        self.fs.sync_dir(self.dir)
        for old in self.versions()[:-keep]:
            for p in self.paths(old)[::-1]:  # JSON first: the version stops existing at once
                self.fs.delete(p)
        return json_path

    def load(self, version: int) -> SavedModel:
        npz_path, json_path = self.paths(version)
        try:
            meta = json.loads(self.fs.read_bytes(json_path))
            if meta.get("format") != FORMAT:
                raise ModelStoreError(f"{json_path}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
            blob = self.fs.read_bytes(npz_path)
            if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
                raise ModelStoreError(f"{npz_path}: checksum does not match {basename(json_path)} (truncated or modified)")
            config = from_dict(meta["config"])
            arrays = arrays_from_bytes(blob)
            weights, nxt, norm = unpack_model(arrays, LSTMConfig.from_app(config))
            rehearsal = Rehearsal.from_arrays(arrays)
            gain = ForecastGain.from_arrays(arrays)
        except ModelStoreError:
            raise
        except (OSError, ValueError, KeyError, TypeError, WeightsError) as exc:
            raise ModelStoreError(f"{json_path[: -len('.json')]}: cannot load version {version}: {exc}") from None
        server = {k: v for k, v in arrays.items() if k.startswith("server/")}
        drift = {k: v for k, v in arrays.items() if k.startswith("drift/")}
        return SavedModel(version, config, weights, nxt, norm, meta, server, drift, rehearsal, gain)

    def load_latest(self) -> SavedModel | None:
        """The newest loadable version; ``None`` if the directory holds no version at all.

        A corrupt newest version is skipped with a warning naming it. If versions exist but none
        loads, :class:`ModelStoreError` is raised: the caller must never start from random weights
        believing it resumed.
        """
        versions = self.versions()
        errors: list[str] = []
        for version in reversed(versions):
            try:
                saved = self.load(version)
            except ModelStoreError as exc:
                log.warning("skipping model version %d: %s", version, exc)
                errors.append(str(exc))
                continue
            if errors:
                log.warning("fell back to model version %d in %s", version, self.dir)
            return saved
        if versions:
            raise ModelStoreError(f"no loadable model version in {self.dir}: " + "; ".join(errors))
        return None


def shape_mismatch(saved: LSTMConfig, wanted: LSTMConfig, where: str) -> str | None:
    """Why a configuration cannot continue the model saved in ``where`` (None if it can: the same
    shapes and seed), in the user's words."""
    if saved == wanted:
        return None
    return f"the model in {where} has {saved.describe()}; the configuration asks for {wanted.describe()}"


def check_compatible(model_dir: str, cfg: AppConfig, flag: str) -> None:
    """Refuse a model directory whose newest model has other shapes than ``cfg`` (ConfigError naming
    both and what to do), before anything is trained or started."""
    saved = ModelStore(model_dir).load_latest()
    if saved is None:
        return
    why = shape_mismatch(LSTMConfig.from_app(saved.config), LSTMConfig.from_app(cfg), model_dir)
    if why:
        raise ConfigError(f"{flag}: {why}; use another {flag}, or the configuration the model was trained with")

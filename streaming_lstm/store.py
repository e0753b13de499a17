"""A model directory: numbered versions of weights, normaliser statistics and metadata.

Layout of ``DIR`` (the same for ``fit --out DIR`` and the trainer's ``CHECKPOINT/model``)::

    v0000000007.npz    arrays: "model/<tensor>", "next/<tensor>" (optional), "norm/count|mean|m2"
    v0000000007.json   metadata: config, version, last applied batch id, rows seen, sha256 of the npz

Contract: a version exists once its JSON exists. Both files are written to a temporary name,
fsynced and renamed (npz first, JSON last), and the directory is fsynced, so a crash at any moment
leaves either the previous newest version or the new one, never a torn file under a final name.
The JSON carries the npz's SHA-256; :meth:`ModelStore.load_latest` checks it and falls back to the
previous version, with a warning, if the newest is corrupt. Files are created readable by their
owner only. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streaming_lstm import faults
from streaming_lstm.config import AppConfig, from_dict
from streaming_lstm.normalizer import NormStats
from streaming_lstm.weights import LSTMConfig, Weights, WeightsError, arrays_from_bytes, check_weights, weights_to_bytes

log = logging.getLogger(__name__)
FORMAT = "streaming-lstm/1"
_NAME = re.compile(r"^v(\d{10})\.json$")


def pack_model(weights: Mapping[str, np.ndarray], norm: NormStats, next_weights: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The named arrays of a model: ``model/<tensor>``, optional ``next/<tensor>``, ``norm/...``.

    The one layout for model files and for the weights the trainer broadcasts to its tasks.
    """
    arrays = {f"model/{k}": v for k, v in weights.items()}
    if next_weights is not None:
        arrays.update({f"next/{k}": v for k, v in next_weights.items()})
    arrays.update(norm.to_arrays())
    return arrays


def unpack_model(arrays: Mapping[str, np.ndarray], lstm: LSTMConfig) -> tuple[Weights, Weights | None, NormStats]:
    """(weights, next weights or None, normaliser) from :func:`pack_model`'s arrays, checked."""
    weights = check_weights({k[6:]: v for k, v in arrays.items() if k.startswith("model/")}, lstm)
    nxt = {k[5:]: v for k, v in arrays.items() if k.startswith("next/")}
    return weights, check_weights(nxt, lstm) if nxt else None, NormStats.from_arrays(arrays, lstm.num_features)


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


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


class ModelStore:
    """Versioned, atomically written model files in one directory."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    @classmethod
    def resolve(cls, path: str | Path) -> ModelStore:
        """A model directory, or a trainer checkpoint directory holding one under ``model/``."""
        p = Path(path)
        if not any(p.glob("v*.json")) and (p / "model").is_dir():
            p = p / "model"
        return cls(p)

    @classmethod
    def load_latest_or_raise(cls, path: str | Path) -> SavedModel:
        """The newest loadable version in a model or checkpoint directory, or FileNotFoundError."""
        saved = cls.resolve(path).load_latest()
        if saved is None:
            raise FileNotFoundError(f"no model found in {path} (expected v*.json files, or a checkpoint with model/)")
        return saved

    def versions(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        return sorted(int(m.group(1)) for f in os.listdir(self.dir) if (m := _NAME.match(f)))

    def _paths(self, version: int) -> tuple[Path, Path]:
        stem = f"v{version:010d}"
        return self.dir / f"{stem}.npz", self.dir / f"{stem}.json"

    def save(
        self,
        version: int,
        config: AppConfig,
        weights: Mapping[str, np.ndarray],
        norm: NormStats,
        meta: Mapping[str, Any],
        next_weights: Mapping[str, np.ndarray] | None = None,
        keep: int = 5,
    ) -> Path:
        """Write version ``version`` atomically, then delete all but the newest ``keep``."""
        ensure_private_dir(self.dir)
        blob = weights_to_bytes(pack_model(weights, norm, next_weights))
        npz_path, json_path = self._paths(version)
        record = {
            "format": FORMAT,
            "version": version,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "config": config.to_dict(),
            **meta,
        }
        _write_atomic(npz_path, blob)
        faults.hit("mid_save", int(meta.get("batch_id", -1)))
        _write_atomic(json_path, json.dumps(record, indent=1, sort_keys=True).encode())
        _fsync_dir(self.dir)
        for old in self.versions()[:-keep]:
            for p in self._paths(old)[::-1]:  # JSON first: the version stops existing at once
                p.unlink(missing_ok=True)
        return json_path

    def load(self, version: int) -> SavedModel:
        npz_path, json_path = self._paths(version)
        try:
            meta = json.loads(json_path.read_bytes())
            if meta.get("format") != FORMAT:
                raise ModelStoreError(f"{json_path}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
            blob = npz_path.read_bytes()
            if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
                raise ModelStoreError(f"{npz_path}: checksum does not match {json_path.name} (truncated or modified)")
            config = from_dict(meta["config"])
            weights, nxt, norm = unpack_model(arrays_from_bytes(blob), LSTMConfig.from_app(config))
        except ModelStoreError:
            raise
        except (OSError, ValueError, KeyError, TypeError, WeightsError) as exc:
            raise ModelStoreError(f"{json_path.with_suffix('')}: cannot load version {version}: {exc}") from None
        return SavedModel(version, config, weights, nxt, norm, meta)

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

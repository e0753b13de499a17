from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.weights import LSTMConfig, init_weights
from streaming_lstm.storage.store import ModelStore, ModelStoreError

ROOT = Path(__file__).resolve().parent.parent
CFG = load_config(ROOT / "conf" / "iris.toml", {"model.hidden": "4"})
LSTM = LSTMConfig.from_app(CFG)


def save(store: ModelStore, version: int, keep: int = 5) -> dict[str, np.ndarray]:
    w = init_weights(LSTM, seed=version)
    store.save(version, CFG, w, NormStats.of(np.ones((3, 4)) * version), {"batch_id": version}, keep=keep)
    return w


def test_round_trip_keep_last_k_and_owner_only(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "m")
    for v in range(1, 8):
        w = save(store, v, keep=3)
    assert store.versions() == [5, 6, 7]
    saved = store.load_latest()
    assert saved is not None and saved.version == 7 and saved.meta["batch_id"] == 7
    np.testing.assert_array_equal(saved.weights["head/kernel"], w["head/kernel"])
    assert saved.norm.count == 3
    for f in (tmp_path / "m").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o700
    assert not list((tmp_path / "m").glob(".*tmp*"))


def test_corrupt_newest_falls_back_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ModelStore(tmp_path)
    save(store, 1)
    save(store, 2)
    npz = tmp_path / "v0000000002.npz"
    npz.write_bytes(npz.read_bytes()[:50])  # truncated
    saved = store.load_latest()
    assert saved is not None and saved.version == 1
    assert "skipping model version 2" in caplog.text and "checksum" in caplog.text


def test_nothing_loadable_is_an_error_not_random_weights(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    save(store, 1)
    (tmp_path / "v0000000001.json").write_text("{not json")
    with pytest.raises(ModelStoreError, match="no loadable model version"):
        store.load_latest()
    assert ModelStore(tmp_path / "empty").load_latest() is None


def test_a_pickle_in_a_model_file_is_refused(tmp_path: Path) -> None:
    import hashlib
    import pickle

    store = ModelStore(tmp_path)
    save(store, 1)
    evil = pickle.dumps({"model/head/bias": np.zeros(3)})
    (tmp_path / "v0000000001.npz").write_bytes(evil)
    meta = json.loads((tmp_path / "v0000000001.json").read_text())
    meta["sha256"] = hashlib.sha256(evil).hexdigest()  # even with a matching checksum
    (tmp_path / "v0000000001.json").write_text(json.dumps(meta))
    with pytest.raises(ModelStoreError, match="never unpickled"):
        store.load(1)


def test_resolve_accepts_a_checkpoint_directory(tmp_path: Path) -> None:
    save(ModelStore(tmp_path / "model"), 1)
    assert ModelStore.resolve(tmp_path).dir == str(tmp_path / "model")

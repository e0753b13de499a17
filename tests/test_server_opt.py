"""Server optimisers against the formulas of Reddi et al. 2021 (Algorithm 2) and Hsu et al. 2019,
written out here element by element; their state survives a restart (deterministic replay)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streaming_lstm.core.config import ConfigError
from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.server_opt import ServerOptimizer
from streaming_lstm.core.weights import LSTMConfig, flatten, init_weights, unflatten
from streaming_lstm.storage.store import ModelStore
from streaming_lstm.trainer.state import TrainerState, Update

ROOT = Path(__file__).resolve().parent.parent


def reference(kind: str, xs: list[list[float]], bars: list[list[float]], lr: float, b1: float, b2: float, tau: float) -> list[list[float]]:
    """The papers' updates with Python floats, one coordinate at a time; xs[0] is the start."""
    x = [float(a) for a in xs[0]]
    m = [0.0] * len(x)
    v = [tau * tau] * len(x)
    out = []
    for bar in bars:
        for i in range(len(x)):
            d = float(bar[i]) - x[i]
            if kind == "momentum":
                m[i] = b1 * m[i] + d
                x[i] = x[i] + lr * m[i]
                continue
            m[i] = b1 * m[i] + (1 - b1) * d
            if kind == "adam":
                v[i] = b2 * v[i] + (1 - b2) * d * d
            else:  # yogi
                s = (v[i] > d * d) - (v[i] < d * d)
                v[i] = v[i] - (1 - b2) * d * d * s
            x[i] = x[i] + lr * m[i] / (math.sqrt(v[i]) + tau)
        out.append(list(x))
    return out


@pytest.mark.parametrize("kind", ["momentum", "adam", "yogi"])
def test_each_round_equals_the_papers_formula(kind: str) -> None:
    rng = np.random.default_rng(7)
    x0 = rng.normal(size=6)
    bars = [x0 + rng.normal(scale=0.1, size=6) * (r + 1) for r in range(5)]
    opt = ServerOptimizer(kind, lr=0.3, beta1=0.8, beta2=0.95, tau=1e-3)
    x, got = x0, []
    for bar in bars:
        x = opt.step(x, bar)
        got.append(x)
    want = reference(kind, [list(x0)], [list(b) for b in bars], 0.3, 0.8, 0.95, 1e-3)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-12, atol=1e-15)
    assert opt.rounds == 5


def test_momentum_without_momentum_and_unit_rate_is_plain_averaging() -> None:
    opt = ServerOptimizer("momentum", lr=1.0, beta1=0.0, beta2=0.99, tau=1e-3)
    x, bar = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    np.testing.assert_array_equal(opt.step(x, bar), bar)


def test_yogi_and_adam_differ_only_in_the_second_moment() -> None:
    x, bar = np.zeros(1), np.ones(1)
    adam, yogi = ServerOptimizer("adam", 1.0, 0.9, 0.99, 1e-3), ServerOptimizer("yogi", 1.0, 0.9, 0.99, 1e-3)
    adam.step(x, bar)
    yogi.step(x, bar)
    # First round from v = tau^2 < delta^2: Yogi grows v by (1 - b2) delta^2, as Adam does, without
    # Adam's shrinking of the old v.
    assert yogi.v is not None and adam.v is not None
    assert yogi.v[0] == pytest.approx(1e-6 + 0.01) and adam.v[0] == pytest.approx(0.99e-6 + 0.01)


def test_unknown_optimizer_and_bad_rates_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"stream\.server_optimizer"):
        load_config(ROOT / "conf" / "iris.toml", {"stream.server_optimizer": "sgd"})
    with pytest.raises(ConfigError, match=r"stream\.server_beta1"):
        load_config(ROOT / "conf" / "iris.toml", {"stream.server_beta1": 1.0})


def test_state_uses_the_optimizer_and_a_restart_replays_the_same_weights(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.server_optimizer": "adam", "stream.server_learning_rate": 0.05})
    lstm = LSTMConfig.from_app(cfg)
    rng = np.random.default_rng(1)

    def batch(state: TrainerState) -> list[Update]:
        start = flatten(state.training_weights())
        return [
            Update(10 + k, unflatten(start + rng.normal(scale=0.01, size=start.size), state.weights), NormStats.empty(lstm.num_features), k) for k in range(2)
        ]

    # The state's first round is the optimiser's first step from the starting weights.
    state = TrainerState.open(cfg, ModelStore(tmp_path / "a"))
    start = flatten(state.training_weights())
    updates = batch(state)
    state.apply(0, updates)
    bar = sum(u.rows * flatten(u.weights) for u in updates) / sum(u.rows for u in updates)
    opt = ServerOptimizer("adam", 0.05, cfg.stream.server_beta1, cfg.stream.server_beta2, cfg.stream.server_tau)
    np.testing.assert_allclose(flatten(state.next_weights), opt.step(start, bar), atol=1e-6)

    # Continuing in one process vs reopening from the store after each batch: the same weights.
    rng = np.random.default_rng(2)
    later = [batch(state) for _ in range(3)]  # drawn relative to the same starting point each time
    for i, ups in enumerate(later, start=1):
        state.apply(i, ups)
    reopened = TrainerState.open(cfg, ModelStore(tmp_path / "b"))
    reopened.apply(0, updates)
    for i, ups in enumerate(later, start=1):
        reopened = TrainerState.open(cfg, ModelStore(tmp_path / "b"))
        assert reopened.server is not None and reopened.server.rounds == i
        reopened.apply(i, ups)
    for k in state.weights:
        np.testing.assert_array_equal(state.weights[k], reopened.weights[k])
        np.testing.assert_array_equal(state.next_weights[k], reopened.next_weights[k])
    saved = ModelStore(tmp_path / "b").load_latest()
    assert saved is not None and set(saved.server) == {"server/m", "server/v", "server/rounds"}
    assert init_weights(lstm)["head/kernel"].shape == saved.weights["head/kernel"].shape

"""Server-side optimisers over the averaged update, as federated learning runs them.

Reddi et al. 2021, "Adaptive Federated Optimization" (ICLR), Algorithm 2, and Hsu et al. 2019
(FedAvgM). Each micro-batch is one round: the batch's tasks (the "clients") start from the server
model ``x`` and the driver aggregates their results into ``x_bar`` (state.aggregate). Plain
averaging (FedAvg) takes ``x <- x_bar``. With the round's update ``delta = x_bar - x``:

    momentum (FedAvgM):  m <- beta1 * m + delta                       x <- x + lr * m
    adam     (FedAdam):  m <- beta1 * m + (1 - beta1) * delta
                         v <- beta2 * v + (1 - beta2) * delta^2        x <- x + lr * m / (sqrt(v) + tau)
    yogi     (FedYogi):  m as adam
                         v <- v - (1 - beta2) * delta^2 * sign(v - delta^2)
                                                                       x <- x + lr * m / (sqrt(v) + tau)

``v`` starts at ``tau**2`` and ``m`` at 0 (the paper's initialisation; no bias correction, as in the
paper). ``momentum`` with ``beta1 = 0`` and ``lr = 1`` is FedAvg exactly.

The state (``m``, ``v``, the round count) is part of every model version (store.py, arrays
``server/*``), so a restart resumes the same sequence and a replayed batch reproduces the same
weights: exactly-once and deterministic replay hold with any optimiser. Vectors are float64, the
precision the driver averages in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streaming_lstm.core.config import SERVER_OPTIMIZERS, StreamConfig

OPTIMIZERS = SERVER_OPTIMIZERS


@dataclass
class ServerOptimizer:
    """One server optimiser and its state; :meth:`step` is one round."""

    kind: str
    lr: float
    beta1: float
    beta2: float
    tau: float
    m: np.ndarray | None = None
    v: np.ndarray | None = None
    rounds: int = 0

    @classmethod
    def from_config(cls, s: StreamConfig) -> ServerOptimizer | None:
        """The configured optimiser, or None for plain averaging (``server_optimizer = "none"``)."""
        if s.server_optimizer == "none":
            return None
        return cls(s.server_optimizer, s.server_learning_rate, s.server_beta1, s.server_beta2, s.server_tau)

    def step(self, x: np.ndarray, x_bar: np.ndarray) -> np.ndarray:
        """The new server model from the model the round started from and the round's aggregate."""
        delta = x_bar - x  # (D,)
        if self.m is None:
            self.m = np.zeros_like(x)
            self.v = np.full_like(x, self.tau**2)
        assert self.v is not None
        self.rounds += 1
        if self.kind == "momentum":
            self.m = self.beta1 * self.m + delta
            return x + self.lr * self.m
        self.m = self.beta1 * self.m + (1 - self.beta1) * delta
        sq = delta * delta
        if self.kind == "adam":
            self.v = self.beta2 * self.v + (1 - self.beta2) * sq
        elif self.kind == "yogi":
            self.v = self.v - (1 - self.beta2) * sq * np.sign(self.v - sq)
        else:
            raise ValueError(f"stream.server_optimizer: unknown optimiser {self.kind!r}; choose from {', '.join(OPTIMIZERS)}")
        return x + self.lr * self.m / (np.sqrt(self.v) + self.tau)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays for a model version (empty before the first round)."""
        if self.m is None or self.v is None:
            return {}
        return {"server/m": self.m, "server/v": self.v, "server/rounds": np.array([self.rounds], np.int64)}

    def load_arrays(self, arrays: Mapping[str, np.ndarray], size: int) -> None:
        """Restore the state saved by :meth:`to_arrays`; a missing state (a version written without
        this optimiser) starts fresh, a state of the wrong size is an error."""
        if "server/m" not in arrays:
            return
        m, v = np.asarray(arrays["server/m"], np.float64), np.asarray(arrays["server/v"], np.float64)
        if m.shape != (size,) or v.shape != (size,):
            raise ValueError(f"server optimiser state has {m.shape[0]} values, the model has {size}")
        self.m, self.v, self.rounds = m, v, int(np.asarray(arrays["server/rounds"]).reshape(-1)[0])

"""forecast: one-step-ahead prequential MAE of event mode next to River's forecasters, per series.

Series (River's wheel ships them): AirlinePassengers (144 monthly totals), WaterFlow (1 268 hourly
readings, timestamps with UTC offsets, made UTC here) and TrumpApproval (1 001 daily approval
figures with five polls beside each). Every forecaster sees the same points in the same order and
is scored on the same ones: each point from the ``timesteps``-th on (the first point the LSTM's
first window can forecast), before it learns from it.

* streaming-lstm: the real trainer, event mode (``streaming-lstm init-config --events`` for a
  single series, which learns changes from the last value (``data.forecast_change``), plus
  :data:`SERIES`' per-series settings: window length, events per batch and no entity TTL, since a
  month between events is not a silent entity; the forecast gain's value at the end is
  ``streaming_lstm_final_gain``), and once more forecasting levels
  (``data.forecast_change = false``, ``streaming_lstm_level_mae``), through the file source,
  ``--batch`` events per micro-batch, ``processAllAvailable`` after each. Its figures are the sums
  the trainer records per batch (metrics.jsonl): MAE, and the naive forecast's MAE on its windows.
* River (row by row: ``forecast(horizon=1)`` then ``learn_one``): ``time_series.SNARIMAX`` and
  ``time_series.HoltWinters`` in a small grid (:func:`river_models`); the best of it per series.
* naive: the last value.
* hindsight linear (a bound, not a forecaster): the least-absolute-deviations linear forecast of
  each point's change from the window's last ``timesteps - 1`` changes, every other column's last
  change and its gap to the series, fit once on all scored points (:func:`hindsight_linear`). It
  sees the future it is scored on, so no linear forecaster that learns as it goes can expect to
  beat it; where it hardly beats the naive forecast, nothing linear does.

``--runs N`` runs the LSTM N times per series (its figures: the run with the median MAE; all N
in ``streaming_lstm_mae_runs``). ``--json`` prints one object per series with ``streaming_lstm_mae``, ``river_best_mae``,
``river_best_model`` and ``naive_mae``. Writes bench/results/forecast.json and forecast.png.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, FileFeed, panels, setting, write
from bench.common import parser as bench_parser

DEEP_RIVER_LSTM_MAE = {"AirlinePassengers": 295.1}  # deep-river's published LSTM figure (its documentation's forecasting example)


@dataclass(frozen=True)
class Series:
    timesteps: int  # events per window: one season where the series has one
    batch: int  # events per micro-batch
    season: int  # 0: none
    dataset: str  # river.datasets class name
    known: bool = False  # the other columns are known at the point forecast (data.known; River's exogenous x)


SERIES = {
    "AirlinePassengers": Series(timesteps=12, batch=6, season=12, dataset="AirlinePassengers"),
    "WaterFlow": Series(timesteps=24, batch=24, season=24, dataset="WaterFlow"),
    "TrumpApproval": Series(timesteps=16, batch=20, season=0, dataset="TrumpApproval", known=True),
}


def load(name: str) -> tuple[list[str], list[float], list[dict[str, float]]]:
    """The series as (ISO UTC times, values, other numeric columns per point)."""
    from river import datasets

    times, values, extra = [], [], []
    for x, y in getattr(datasets, SERIES[name].dataset)():
        stamp = next((v for v in x.values() if isinstance(v, dt.datetime)), None)
        if stamp is None:  # TrumpApproval: a proleptic Gregorian ordinal
            stamp = dt.datetime.fromordinal(int(x["ordinal_date"]))
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
        times.append(stamp.isoformat() + "Z")
        values.append(float(y))
        extra.append({k: float(v) for k, v in x.items() if isinstance(v, int | float) and k != "ordinal_date"})
    return times, values, extra


KNOWN = " + known"  # the suffix of the forecasters that read the point's other columns (River's exogenous x)


def river_models(season: int, known: bool = False) -> dict[str, Callable[[], Any]]:
    """A small grid of River's forecasters per series; the best of it is "River's best" (chosen
    after the fact, in River's favour): SNARIMAX and HoltWinters as River's documentation sets them
    for AirlinePassengers, with each series' season, where it has one; everywhere a non-seasonal
    SNARIMAX, Holt's linear trend and simple exponential smoothing. Where the series' other columns
    are known at the point forecast (``known``), also a SNARIMAX whose regressor reads them
    (standardised, as SNARIMAX's exogenous ``x``) beside its lags."""
    from river import linear_model, optim, preprocessing, time_series

    models: dict[str, Callable[[], Any]] = {
        "SNARIMAX(3,1,1)": lambda: time_series.SNARIMAX(p=3, d=1, q=1),
        "Holt": lambda: time_series.HoltWinters(alpha=0.5, beta=0.1),
        "exponential smoothing": lambda: time_series.HoltWinters(alpha=0.8),
    }

    def regressor(intercept_lr: float) -> Any:  # standardised inputs, as River's documentation sets it
        return preprocessing.StandardScaler() | linear_model.LinearRegression(optimizer=optim.SGD(0.01), intercept_lr=intercept_lr)

    if season:
        models["seasonal SNARIMAX"] = lambda: time_series.SNARIMAX(p=season, d=1, q=season, m=season, sd=1, regressor=regressor(0.3))
        models["HoltWinters"] = lambda: time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.6, seasonality=season, multiplicative=True)
    if known:
        models["SNARIMAX(3,1,1)" + KNOWN] = lambda: time_series.SNARIMAX(p=3, d=1, q=1, regressor=regressor(0.1))
    return models


def run_river(make: Callable[[], Any], values: list[float], first: int, xs: list[dict[str, float]] | None = None) -> dict[str, Any]:
    """Row-by-row one-step forecasts from point ``first`` on; a forecaster not ready yet (or
    failing) gives the last value there, counted in ``fallbacks``. ``xs``: each point's other
    columns, known at its forecast (given to the forecast and to learning as River's ``x``)."""
    model, errors, fallbacks = make(), [], 0
    started = time.perf_counter()
    for i, y in enumerate(values):
        x = xs[i] if xs is not None else None
        if i >= first:
            try:
                guess = float(model.forecast(horizon=1, xs=[x] if x is not None else None)[0])
                if not np.isfinite(guess):
                    raise ValueError(guess)
            except (ValueError, ZeroDivisionError, IndexError, TypeError):
                guess, fallbacks = values[i - 1], fallbacks + 1
            errors.append(abs(guess - y))
        model.learn_one(y, x) if x is not None else model.learn_one(y)
    return {"mae": float(np.mean(errors)), "fallbacks": fallbacks, "seconds": time.perf_counter() - started, "abs_errors": errors}


def hindsight_linear(values: list[float], extra: list[dict[str, float]], first: int, timesteps: int, known: bool = False) -> float:
    """MAE of the least-absolute-deviations linear forecast of y_i - y_{i-1}, i >= ``first``, fit
    with hindsight on all those points (iteratively reweighted least squares). Its inputs at i: the
    last ``timesteps - 1`` changes of y, each other column's last change and its gap to y (with
    ``known`` their change to point i and their gap there to y_{i-1}), and a constant."""
    y = np.asarray(values, float)
    other = np.array([[e[c] for c in sorted(extra[0])] for e in extra], float)  # (N, C), C may be 0
    change = np.diff(y)  # change[i - 1] = y_i - y_{i-1}
    at = 0 if known else 1  # the other columns' point read: i (known at i's forecast) or i - 1
    rows = [[*change[i - timesteps : i - 1][::-1], *(other[i - at] - other[i - at - 1]), *(other[i - at] - y[i - 1]), 1.0] for i in range(first, len(y))]
    a, b = np.array(rows), change[first - 1 :]
    coef: np.ndarray = np.linalg.lstsq(a, b, rcond=None)[0]
    for _ in range(100):  # IRLS: weights 1/|residual| turn least squares into least absolute deviations
        w = 1 / np.sqrt(np.maximum(np.abs(b - a @ coef), 1e-6))
        coef = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)[0]
    return float(np.abs(b - a @ coef).mean())


def write_csv(name: str, times: list[str], values: list[float], extra: list[dict[str, float]], path: Path) -> list[str]:
    columns = ["time", "value", *extra[0]]
    lines = [",".join([t, repr(v), *(repr(e[c]) for c in extra[0])]) for t, v, e in zip(times, values, extra, strict=True)]
    path.write_text(",".join(columns) + "\n" + "\n".join(lines) + "\n")
    return lines


def run_lstm(spark: Any, name: str, csv: Path, lines: list[str], workdir: Path, extra: dict[str, Any], known: list[str]) -> dict[str, Any]:
    """Event mode through the real trainer, ``batch`` events per file, in order; ``extra``:
    configuration overrides on top of init-config's proposal and :data:`SERIES`'; ``known``: the
    columns init-config is told are known ahead (``--known``)."""
    from streaming_lstm.commands.init_config import propose_events, to_toml
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import file_source

    s = SERIES[name]
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "conf.toml"
    conf.write_text(to_toml(propose_events(csv, "time", ["value"], None, s.timesteps, known), str(csv)))
    overrides = {"stream.trigger": "0s", "stream.tensorboard": False, "data.entity_ttl": "0s", "data.allowed_lateness": "1000d", **extra}
    cfg = load_config(conf, overrides)
    feed = FileFeed(workdir / "in")
    trainer = StreamingTrainer(spark, cfg, workdir / "ck")
    trainer.warm_up()
    started = time.perf_counter()
    query = start_query(trainer, file_source(spark, feed.dir, cfg))
    try:
        for i in range(0, len(lines), s.batch):
            feed.batch(lines[i : i + s.batch])
            query.processAllAvailable()
    finally:
        query.stop()
    hist = [m for m in trainer.history if m.get("forecast_values")]
    values = sum(int(m["forecast_values"]) for m in hist)
    gain = trainer.state.gain
    return {
        "gain": gain.value().tolist() if gain is not None else None,
        "mae": sum(m["prequential_abs_sum"] for m in hist) / values,
        "naive_mae": sum(m["naive_abs_sum"] for m in hist) / values,
        "forecasts": values,
        "seconds": time.perf_counter() - started,
        "curve": {"values": [int(m["forecast_values"]) for m in hist], "abs_sum": [m["prequential_abs_sum"] for m in hist]},
    }


def one_series(spark: Any, name: str, workdir: Path, say: Callable[..., None], settings: dict[str, Any], runs: int = 1) -> dict[str, Any]:
    """The series' row of the results: the LSTM ``runs`` times (its figures those of the run with
    the median MAE; ``streaming_lstm_mae_runs`` all of them), once forecasting levels and once
    without the columns known ahead where it has them, River's grid, the naive forecast, the bound."""
    s = SERIES[name]
    times, values, extra = load(name)
    lines = write_csv(name, times, values, extra, workdir / f"{name}.csv")
    known = sorted(extra[0]) if s.known else []
    csv = workdir / f"{name}.csv"
    repeats = sorted((run_lstm(spark, name, csv, lines, workdir / f"{name}-{k}", settings, known) for k in range(runs)), key=lambda r: r["mae"])
    lstm = repeats[len(repeats) // 2]
    level = run_lstm(spark, name, csv, lines, workdir / f"{name}-level", {**settings, "data.forecast_change": False}, known)
    unknown = run_lstm(spark, name, csv, lines, workdir / f"{name}-unknown", settings, []) if known else None
    first = len(values) - lstm["forecasts"]  # the points the LSTM forecast: the last `forecasts` of them
    assert first == s.timesteps, f"{name}: the LSTM forecast {lstm['forecasts']} points, expected {len(values) - s.timesteps}"
    river = {model: run_river(make, values, first, extra if model.endswith(KNOWN) else None) for model, make in river_models(s.season, s.known).items()}
    naive_errors = np.abs(np.diff(values)[first - 1 :])  # |y_i - y_{i-1}| from point `first` on
    naive = float(naive_errors.mean())
    best = min(river, key=lambda m: river[m]["mae"])
    row = {
        "points": len(values),
        "scored_points": len(values) - first,
        "timesteps": s.timesteps,
        "events_per_batch": s.batch,
        "streaming_lstm_mae": lstm["mae"],
        "streaming_lstm_mae_runs": [r["mae"] for r in repeats],
        "streaming_lstm_naive_mae": lstm["naive_mae"],
        "streaming_lstm_level_mae": level["mae"],
        "streaming_lstm_final_gain": lstm["gain"],
        "river_best_mae": river[best]["mae"],
        "river_best_model": best,
        "naive_mae": naive,
        "hindsight_linear_mae": hindsight_linear(values, extra, first, s.timesteps, s.known),
        "known": known,
        "streaming_lstm_without_known_mae": unknown["mae"] if unknown else None,
        "hindsight_linear_without_known_mae": hindsight_linear(values, extra, first, s.timesteps) if known else None,
        "streaming_lstm_skill": 1 - lstm["mae"] / naive,
        "river": {m: {k: v for k, v in r.items() if k != "abs_errors"} for m, r in river.items()},
        "deep_river_lstm_mae": DEEP_RIVER_LSTM_MAE.get(name),
        "lstm_seconds": lstm["seconds"],
        "curves": {
            "lstm": lstm["curve"],
            "lstm_level": level["curve"],
            **({"lstm_without_known": unknown["curve"]} if unknown else {}),
            **{m: r["abs_errors"] for m, r in river.items()},
            "naive": naive_errors.tolist(),
        },
    }
    maes = row["streaming_lstm_mae_runs"]
    say(
        f"{name}: streaming-lstm MAE {row['streaming_lstm_mae']:.3f} (runs {min(maes):.3f}-{max(maes):.3f}; "
        f"skill {row['streaming_lstm_skill']:+.2f}; "
        f"levels, data.forecast_change = false: {level['mae']:.3f}) | "
        f"River best {best} {row['river_best_mae']:.3f} | naive {naive:.3f} | hindsight linear {row['hindsight_linear_mae']:.3f}",
        flush=True,
    )
    return row


def plot(payload: dict[str, Any], out: Path) -> Path:
    """Cumulative MAE against points forecast, per series and forecaster; the y axis up to twice the
    naive forecast's largest MAE so far after its first tenth (a diverging forecaster leaves the
    panel rather than flattening the others)."""
    series = payload["series"]
    plt, fig, axes = panels(len(series), 2.8)
    lstm_curves = (("lstm", "streaming-lstm (changes)"), ("lstm_without_known", "streaming-lstm without data.known"), ("lstm_level", "streaming-lstm (levels)"))
    for ax, (name, row) in zip(axes[:, 0], series.items(), strict=True):
        curves = row["curves"]
        for key, label in lstm_curves:
            if key not in curves:
                continue
            n = np.cumsum(curves[key]["values"])
            ax.plot(n, np.cumsum(curves[key]["abs_sum"]) / n, label=label, lw=1.4)
        for label in (*row["river"], "naive"):
            errs = np.array(curves[label], float)
            ax.plot(np.arange(1, len(errs) + 1), np.cumsum(errs) / np.arange(1, len(errs) + 1), label=label, lw=1)
        naive = np.array(curves["naive"], float)
        naive_so_far = np.cumsum(naive) / np.arange(1, len(naive) + 1)
        ax.set_ylim(0, 2 * float(naive_so_far[len(naive) // 10 :].max()))
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("MAE so far")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("points forecast")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("forecast", __doc__)
    p.add_argument("--series", default=",".join(SERIES), help=f"which series (default: {','.join(SERIES)})")
    p.add_argument("--runs", type=int, default=1, help="runs of the LSTM per series (its figures: the median run's; default 1)")
    p.add_argument("--out", default="forecast", metavar="NAME", help="write bench/results/NAME.json and NAME.png (default: forecast)")
    p.add_argument("--set", action="append", default=[], type=setting, metavar="KEY=VALUE", help="a configuration override for both LSTM runs")
    args = p.parse_args(argv)
    names = [n for n in args.series.split(",") if n]
    unknown = [n for n in names if n not in SERIES]
    if unknown:
        p.error(f"--series {unknown[0]!r}: choose from {', '.join(SERIES)}")
    if args.runs < 1:
        p.error(f"--runs {args.runs}: must be >= 1")
    say = (lambda *_a, **_k: None) if args.json else print

    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark.session import get_session

    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}))
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: one_series(spark, name, Path(tmp), say, dict(args.set), args.runs) for name in names}
    summary = {n: {k: r[k] for k in ("streaming_lstm_mae", "river_best_mae", "river_best_model", "naive_mae")} for n, r in rows.items()}
    payload: dict[str, Any] = {"series": rows, "summary": summary, "settings": dict(args.set)}
    payload["lstm_at_or_below_river_best"] = sum(r["streaming_lstm_mae"] <= r["river_best_mae"] for r in rows.values())
    payload["median_skill"] = statistics.median(r["streaming_lstm_skill"] for r in rows.values())
    path = write(args.out, payload)
    png = plot(payload, RESULTS / f"{args.out}.png")
    if args.json:
        print(json.dumps([{"series": n, **payload["summary"][n]} for n in names]))
    else:
        print(f"wrote {path} and {png}")
    return payload


if __name__ == "__main__":
    main()

"""``streaming-lstm report``: PNG charts and a markdown summary of a trainer's metrics.jsonl.

The checkpoint and the output directory may be local paths or Hadoop URIs (fs.py): charts are
rendered in memory and written through the file-system layer.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

from streaming_lstm.commands import forecast_report
from streaming_lstm.commands.common import json_parent
from streaming_lstm.commands.output import print_result
from streaming_lstm.storage.fs import basename, filesystem, join
from streaming_lstm.storage.metrics import forecast_last, prequential_last, read_metrics


def write_report(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, data: str | None = None) -> dict[str, Any]:
    """Charts and a summary; a forecasting run (event mode) charts MAE against the naive forecast
    instead of accuracy, and with ``data`` (an event file) forecasts against actual values too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = read_metrics(checkpoint)
    out_dir = os.fspath(out) if out else join(checkpoint, "report")
    fs = filesystem(out_dir)
    if fs.exists(out_dir) and not fs.is_dir(out_dir):
        raise ValueError(f"--out {out_dir} is a file: report writes a directory (charts and summary.md)")
    fs.mkdirs(out_dir)
    save = forecast_report.saver(plt, fs, out_dir)
    forecasting = "prequential_mae" in metrics[-1]
    rows_seen = np.cumsum([m["rows_valid"] for m in metrics])
    drift_at = [int(r) for r, m in zip(rows_seen, metrics, strict=True) if m.get("drift")]
    if forecasting:
        save(forecast_report.error_chart(plt, metrics, rows_seen), "prequential.png")
    else:
        acc, loss = [m["prequential_accuracy"] for m in metrics], [m["prequential_loss"] for m in metrics]
        save(_accuracy_chart(plt, rows_seen, acc, loss, drift_at), "prequential.png")
    extra: dict[str, Any] = {}
    if data is not None:
        fig, extra["forecast_vs_actual"] = forecast_report.forecast_chart(plt, os.fspath(checkpoint), data)
        save(fig, "forecast.png")
    save(_latency_chart(plt, metrics), "latency.png")
    save(_rows_chart(plt, metrics), "rows.png")
    charts = ["prequential.png", *(["forecast.png"] if data is not None else []), "latency.png", "rows.png"]
    quality, quality_md = _quality(metrics, int(rows_seen[-1]), forecasting)
    latency = [m["latency_s"] for m in metrics]
    summary = {
        "batches": len(metrics),
        "rows_trained": int(rows_seen[-1]),
        "rows_dead_lettered": int(sum(m["rows_dead"] for m in metrics)),
        **quality,
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p95_s": float(np.percentile(latency, 95)),
        "model_version": metrics[-1]["version"],
        "drift_alarms": len(drift_at),
        **extra,
        "charts": [join(out_dir, n) for n in charts],
    }
    md = _markdown(basename(checkpoint), summary, metrics, quality_md, charts, forecasting) + mlflow_note(os.fspath(checkpoint), summary)
    fs.write_atomic(join(out_dir, "summary.md"), md.encode())
    summary["summary"] = join(out_dir, "summary.md")
    return summary


def mlflow_note(checkpoint: str, summary: dict[str, Any]) -> str:
    """Where the run is in MLflow (``--mlflow``) and how to open its UI on the local store; adds
    ``mlflow_run_id`` to ``summary``. Empty when the run was not tracked."""
    from streaming_lstm.storage.tracking import RUN_FILE

    path = join(checkpoint, RUN_FILE)
    fs = filesystem(path)
    if not fs.exists(path):
        return ""
    summary["mlflow_run_id"] = json.loads(fs.read_bytes(path))["run_id"]
    note = f"\n## MLflow\n\nRun `{summary['mlflow_run_id']}`."
    db = join(checkpoint, "mlflow", "mlflow.db")
    if fs.exists(db):
        note += f" Its local store opens with `mlflow ui --backend-store-uri sqlite:///{os.path.abspath(db)}` (the UI is in the full `mlflow` package)."
    return note + "\n"


def _quality(metrics: list[Any], windows: int, forecasting: bool) -> tuple[dict[str, Any], list[str]]:
    """The learning figure of the run's end, as summary keys and as markdown table rows."""
    if forecasting:
        last = forecast_last(metrics, windows // 5)
        quality = {"prequential_mae_last_fifth": last["prequential_mae"], "naive_mae_last_fifth": last["naive_mae"], "skill_last_fifth": last["skill"]}
        return quality, [
            f"| prequential MAE, last fifth of the windows | {last['prequential_mae']:.4g} (naive {last['naive_mae']:.4g}) |",
            f"| skill (1 - MAE / naive MAE), last fifth | {last['skill']:+.3f} |",
        ]
    accuracy = prequential_last(metrics)
    return {"prequential_accuracy_last_150": accuracy}, [f"| prequential accuracy, last 150 rows | {accuracy:.3f} |"]


def _markdown(name: str, summary: dict[str, Any], metrics: list[Any], quality_md: list[str], charts: list[str], forecasting: bool) -> str:
    return "\n".join(
        [
            f"# Training report: {name}",
            "",
            "| | |",
            "|---|---|",
            f"| batches | {summary['batches']} (ids {metrics[0]['batch_id']}..{metrics[-1]['batch_id']}) |",
            f"| {'windows' if forecasting else 'rows'} trained | {summary['rows_trained']} |",
            f"| rows dead-lettered | {summary['rows_dead_lettered']} |",
            *quality_md,
            f"| batch latency p50 / p95 | {summary['latency_p50_s']:.2f} s / {summary['latency_p95_s']:.2f} s |",
            f"| model version | {summary['model_version']} |",
            f"| drift alarms | {summary['drift_alarms']} |",
            "",
            *[x for n in charts[1:-2] for x in (f"![{n[:-4]}]({n})", "")],
            "![prequential](prequential.png)",
            "",
            "![latency](latency.png)",
            "",
            "![rows](rows.png)",
            "",
        ]
    )


def _latency_chart(plt: Any, metrics: list[Any]) -> Any:
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot([m["batch_id"] for m in metrics], [m["latency_s"] for m in metrics], marker="o", ms=3, color="tab:green")
    ax.set_xlabel("batch id")
    ax.set_ylabel("batch latency (s)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title("Micro-batch latency (parse, train, aggregate, save)")
    fig.tight_layout()
    return fig


def _rows_chart(plt: Any, metrics: list[Any]) -> Any:
    """Trained and dead-lettered rows per batch, stacked; the legend sits outside the plot, where
    it covers no bar."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(9, 3.5))
    batch = [m["batch_id"] for m in metrics]
    valid, dead = [m["rows_valid"] for m in metrics], [m["rows_dead"] for m in metrics]
    ax.bar(batch, valid, color="tab:blue", label="trained")
    ax.bar(batch, dead, bottom=valid, color="tab:gray", label="dead-lettered")
    ax.set_xlabel("batch id")
    ax.set_ylabel("rows per batch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("Rows per micro-batch")
    fig.tight_layout()
    return fig


def _accuracy_chart(plt: Any, rows_seen: np.ndarray, acc: list[float], loss: list[float], drift_at: list[int]) -> Any:
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    ax1.plot(rows_seen, acc, marker="o", ms=3, color="tab:blue")
    ax1.set_ylabel("prequential accuracy")
    ax1.set_ylim(0, 1.02)
    ax1.grid(alpha=0.3)
    ax1.set_title("Test-then-train: every row scored before the model learns from it")
    ax2.plot(rows_seen, loss, marker="o", ms=3, color="tab:red")
    ax2.set_ylabel("prequential loss (cross-entropy)")
    ax2.set_xlabel("rows seen")
    ax2.grid(alpha=0.3)
    for x in drift_at:
        for ax in (ax1, ax2):
            ax.axvline(x, color="tab:orange", ls="--", lw=1)
    if drift_at:
        ax1.text(drift_at[0], 0.05, " drift alarm", color="tab:orange")
    fig.tight_layout()
    return fig


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        parents=[json_parent()],
        help="PNG charts and a markdown summary of a training run",
        description=(
            "Read CHECKPOINT/metrics.jsonl and write prequential accuracy and loss against rows seen, batch "
            "latency and rows per batch as PNG charts, with a markdown summary."
        ),
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="the trainer checkpoint whose metrics.jsonl to read")
    p.add_argument("--out", metavar="DIR", help="where to write (default CHECKPOINT/report)")
    p.add_argument("--data", metavar="CSV", help="event mode: an event file; also chart the model's forecasts against its actual values")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    r = write_report(args.checkpoint, args.out, args.data)
    quality = (
        f"skill (last fifth of the windows) {r['skill_last_fifth']:+.3f}"
        if "skill_last_fifth" in r
        else f"prequential accuracy (last 150 rows) {r['prequential_accuracy_last_150']:.3f}"
    )
    text = (
        f"{r['batches']} batches, {r['rows_trained']} rows trained, {r['rows_dead_lettered']} dead-lettered; {quality}; "
        f"latency p50 {r['latency_p50_s']:.2f} s, p95 {r['latency_p95_s']:.2f} s; {r['drift_alarms']} drift alarms\n"
        f"wrote {r['summary']} and " + ", ".join(r["charts"])
    )
    print_result(r, args.json, text)
    return 0

"""``streaming-lstm report``: PNG charts and a markdown summary of a trainer's metrics.jsonl.

The checkpoint and the output directory may be local paths or Hadoop URIs (fs.py): charts are
rendered in memory and written through the file-system layer.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from streaming_lstm.fs import basename, filesystem, join
from streaming_lstm.metrics import prequential_last, read_metrics


def write_report(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metrics = read_metrics(checkpoint)
    out_dir = os.fspath(out) if out else join(checkpoint, "report")
    fs = filesystem(out_dir)
    fs.mkdirs(out_dir)

    def save(fig: Any, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        fs.write_atomic(join(out_dir, name), buf.getvalue())

    rows_seen = np.cumsum([m["rows_valid"] for m in metrics])
    batch = [m["batch_id"] for m in metrics]
    acc = [m["prequential_accuracy"] for m in metrics]
    loss = [m["prequential_loss"] for m in metrics]
    latency = [m["latency_s"] for m in metrics]
    drift_at = [int(r) for r, m in zip(rows_seen, metrics, strict=True) if m.get("drift")]

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
    save(fig, "prequential.png")

    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(batch, latency, marker="o", ms=3, color="tab:green")
    ax.set_xlabel("batch id")
    ax.set_ylabel("batch latency (s)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title("Micro-batch latency (parse, train, aggregate, save)")
    fig.tight_layout()
    save(fig, "latency.png")

    fig, ax = plt.subplots(figsize=(9, 3.5))
    valid = [m["rows_valid"] for m in metrics]
    dead = [m["rows_dead"] for m in metrics]
    ax.bar(batch, valid, color="tab:blue", label="trained")
    ax.bar(batch, dead, bottom=valid, color="tab:gray", label="dead-lettered")
    ax.set_xlabel("batch id")
    ax.set_ylabel("rows per batch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("Rows per micro-batch")
    fig.tight_layout()
    save(fig, "rows.png")

    summary = {
        "batches": len(metrics),
        "rows_trained": int(rows_seen[-1]),
        "rows_dead_lettered": int(sum(dead)),
        "prequential_accuracy_last_150": prequential_last(metrics),
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p95_s": float(np.percentile(latency, 95)),
        "model_version": metrics[-1]["version"],
        "drift_alarms": len(drift_at),
        "charts": [join(out_dir, n) for n in ("prequential.png", "latency.png", "rows.png")],
    }
    md = [
        f"# Training report: {basename(checkpoint)}",
        "",
        "| | |",
        "|---|---|",
        f"| batches | {summary['batches']} (ids {batch[0]}..{batch[-1]}) |",
        f"| rows trained | {summary['rows_trained']} |",
        f"| rows dead-lettered | {summary['rows_dead_lettered']} |",
        f"| prequential accuracy, last 150 rows | {summary['prequential_accuracy_last_150']:.3f} |",
        f"| batch latency p50 / p95 | {summary['latency_p50_s']:.2f} s / {summary['latency_p95_s']:.2f} s |",
        f"| model version | {summary['model_version']} |",
        f"| drift alarms | {summary['drift_alarms']} |",
        "",
        "![prequential](prequential.png)",
        "",
        "![latency](latency.png)",
        "",
        "![rows](rows.png)",
        "",
    ]
    fs.write_atomic(join(out_dir, "summary.md"), "\n".join(md).encode())
    summary["summary"] = join(out_dir, "summary.md")
    return summary

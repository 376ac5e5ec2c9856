"""Each request's latency against its send time, coloured by outcome: what a live run felt like."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qosbatch.core.requests import LATE, ON_TIME, REJECTED, RecordTable
from qosbatch.viz import save_figure


def plot_latencies(records: RecordTable, path: str | Path, title: str = "") -> Path:
    """Served requests as dots (latency in ms), rejections as crosses at their answer time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    t = records.arrival_s
    latency_ms = (records.completion_s - records.arrival_s) * 1e3
    budget_ms = (records.deadline_s - records.arrival_s) * 1e3
    for code, label, style in (
        (ON_TIME, "on time", dict(color="C2", marker=".", s=6)),
        (LATE, "late", dict(color="C3", marker=".", s=10)),
        (REJECTED, "rejected", dict(color="C7", marker="x", s=12)),
    ):
        sel = records.outcome == code
        if np.any(sel):
            ax.scatter(t[sel], latency_ms[sel], label=f"{label} ({int(sel.sum())})", **style)
    if len(records):  # budgets differ per request (network-delay SLOs): a mark each
        ax.scatter(t, budget_ms, color="gray", marker="_", s=10, lw=0.8, label="its budget")
    ax.set(xlabel="send time (s)", ylabel="latency (ms)", title=title)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)

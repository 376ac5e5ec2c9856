"""Predicted mean latency against arrival rate, with simulated points beside it when given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qosbatch.queueing import ServiceTime, solve
from qosbatch.viz import save_figure


def plot_latency_vs_rate(
    service: ServiceTime,
    a: int,
    b: int,
    capacity: int,
    rate: float,
    path: str | Path,
    title: str = "",
    simulated: Sequence[tuple[float, float]] = (),
) -> Path:
    """Model curve from 5% to 120% of saturation; ``simulated``: (rate, mean latency s) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saturation = b / service.mean_s(b)
    rates = np.linspace(0.05, 1.2, 60) * saturation
    results = [solve(float(r), a, b, capacity, service) for r in rates]
    fig, (ax, ax_block) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.plot(rates, [r.mean_latency * 1e3 for r in results], label="M/G(a,b)/1/N model")
    if simulated:
        sim_r, sim_lat = zip(*simulated, strict=True)
        ax.scatter(
            sim_r, np.array(sim_lat) * 1e3, color="C1", zorder=3, label="simulator (same a, b, N)"
        )
    ax.axvline(rate, color="gray", ls=":", label=f"--rate {rate:g}/s")
    ax.set(xlabel="arrival rate (req/s)", ylabel="mean latency (ms)", yscale="log",
           title=f"a={a}, b={b}, N={capacity}")  # fmt: skip
    ax_block.plot(rates, [r.blocking_probability for r in results], color="C2")
    ax_block.set(xlabel="arrival rate (req/s)", ylabel="blocking probability", title="Blocking")
    for axis in (ax, ax_block):
        axis.axvline(saturation, color="C3", ls="--", alpha=0.5, label="saturation b/s(b)")
        axis.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)

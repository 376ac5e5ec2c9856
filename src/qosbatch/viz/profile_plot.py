"""Latency and throughput against batch size, one colour per core count, fits drawn over points."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qosbatch.core.profile import Profile
from qosbatch.latency import latency_model
from qosbatch.viz import save_figure

_STYLES = {"amdahl": "-", "density": "--"}


def plot_profile(profile: Profile, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_tput) = plt.subplots(1, 2, figsize=(11, 4.2))
    models = {
        k: latency_model(profile, k) for k in (profile.fit or {}).get("models", {"amdahl": 0})
    }
    grid = np.linspace(1, max(profile.batch_sizes), 200)
    for i, cores in enumerate(profile.core_counts):
        color = f"C{i}"
        pts = sorted((m for m in profile.measurements if m.cores == cores), key=lambda m: m.batch)
        for holdout in (False, True):
            sel = [m for m in pts if m.holdout == holdout]
            if not sel:
                continue
            b = np.array([m.batch for m in sel])
            ms = np.array([m.median_ms for m in sel])
            kw = {"facecolors": "none"} if holdout else {}
            label = f"{cores} core{'s' * (cores > 1)}" + (" (held out)" if holdout else "")
            ax_lat.scatter(b, ms, color=color, label=label, zorder=3, **kw)
            ax_tput.scatter(b, b / ms * 1e3, color=color, zorder=3, **kw)
        for kind, model in models.items():
            pred_ms = model.predict_s(grid, cores) * 1e3
            ax_lat.plot(grid, pred_ms, _STYLES.get(kind, ":"), color=color, alpha=0.7)
            ax_tput.plot(grid, grid / pred_ms * 1e3, _STYLES.get(kind, ":"), color=color, alpha=0.7)
    for kind in models:
        ax_lat.plot([], [], _STYLES.get(kind, ":"), color="gray", label=f"fit: {kind}")
    ax_lat.set(xlabel="batch size", ylabel="batch latency (ms)", title="Latency")
    ax_tput.set(xlabel="batch size", ylabel="samples / s", title="Throughput")
    ax_lat.legend(fontsize=8)
    for ax in (ax_lat, ax_tput):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{profile.model.name} on {profile.node.cpu_model} ({profile.model.backend})")
    return save_figure(fig, path)

"""The comparison's tables and plot, from its JSON alone: every figure with its interval.

Capacities are nominal loads (load factor x the model's limit, in req/s), never a
trace's realised rate. "qosbatch / best peer" divides qosbatch's mean capacity by
the best peer's (the control, ``qosbatch-dynamic``, is ours, not a peer); the
intervals say whether the difference is more than the repeats' spread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.peers.rounds import Interval, capacity, crossing, t_interval

TITLES = {
    "a": "(a) Poisson, fixed SLO",
    "b": "(b) bursty MMPP 1:8, network-delay SLOs",
    "c": "(c) overload: goodput past the limit",
}


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def by_load(report: dict[str, Any], scenario: str) -> dict[str, dict[float, list[dict[str, Any]]]]:
    """Runs of one scenario: system -> load factor -> its repeats."""
    out: dict[str, dict[float, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in report["runs"]:
        if run["scenario"] == scenario:
            out[run["system"]][run["factor"]].append(run)
    return out


def attainment(runs: list[dict[str, Any]]) -> Interval:
    """The repeats' attainment at one load: mean and interval, within [0, 1]."""
    return t_interval([r["attainment"] for r in runs], lo=0.0, hi=1.0)


def capacities(report: dict[str, Any], scenario: str) -> dict[str, tuple[Interval, str]]:
    """Each system's capacity at the target, in req/s, over its repeats."""
    out = {}
    limit, target = report["limit"], report["target"]
    for system, loads in by_load(report, scenario).items():
        repeats: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for factor, runs in loads.items():
            for run in runs:
                repeats[run["repeat"]].append((factor * limit, run["attainment"]))
        crossings = [crossing(*zip(*pts, strict=True), target) for pts in repeats.values()]
        out[system] = capacity(crossings)
    return out


def goodputs(report: dict[str, Any]) -> dict[str, dict[float, Interval]]:
    """(c): on-time answers per second of each run's trace, per system and load."""
    return {
        system: {
            f: t_interval([r["on_time"] / r["duration_s"] for r in runs], lo=0.0)
            for f, runs in loads.items()
        }
        for system, loads in by_load(report, "c").items()
    }


def _ratio_lines(caps: dict[str, tuple[Interval, str]]) -> list[str]:
    ours = caps.get("qosbatch")
    peers = {s: c for s, c in caps.items() if not s.startswith("qosbatch")}
    if not ours or not peers:
        return []
    best = max(peers, key=lambda s: peers[s][0].mean)
    ratio = ours[0].mean / peers[best][0].mean if peers[best][0].mean > 0 else math.nan
    apart = "do not overlap" if not ours[0].overlaps(peers[best][0]) else "overlap"
    lines = [f"qosbatch (`slo`) / best peer ({best}): **{ratio:.2f}x**; the 95% intervals {apart}."]
    if "qosbatch-dynamic" in caps:
        dyn = caps["qosbatch-dynamic"][0]
        lines.append(
            f"qosbatch (`slo`) / the control (`dynamic` on qosbatch's front end): "
            f"{ours[0].mean / dyn.mean:.2f}x; control / best peer: "
            f"{dyn.mean / peers[best][0].mean:.2f}x."
            if dyn.mean > 0 and peers[best][0].mean > 0
            else "the control passed no load of the ladder."
        )
    return lines


def _chosen(report: dict[str, Any], scenario: str) -> dict[str, str]:
    out = {}
    for o in report["tuning"].get(scenario, []):
        knobs = (o.get("chosen") or {}).get("knobs") or {}
        out[o["system"]] = ", ".join(f"{k}={v}" for k, v in knobs.items()) or "-"
    return out


def _tried(setting: dict[str, Any]) -> str:
    """A setting's coarse capacity, or why it has none."""
    if setting["error"]:
        return setting["error"]
    if setting["factor"] > 0:
        return f"{setting['factor']:.3f}"
    points = setting["points"]
    if len(points) == 1 and not points[0]["passed"]:
        return f"failed x{points[0]['factor']:.3f}, where an earlier setting passed: not searched"
    return "passed no load tried"


def table(report: dict[str, Any]) -> str:
    m, limit = report["machine"], report["limit"]
    lines = [
        f"# Side by side on {report['model']}: capacity at {report['target']:.0%} attainment, live",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {m['date']}. Servers pinned to CPU "
        f"{report['server_cpus']}, the load generator to CPU {report['client_cpus']}. "
        f"ONNX Runtime, one thread, the same model file for every system.",
        f"Limit (the profile's best b / s(b), in process): **{limit:.1f} req/s** at batch "
        f"{report['best_batch']}. SLO {report['slo_ms']:g} ms. Budget: "
        f"{report['budget']['repeats']} interleaved rounds x {report['budget']['points']} loads.",
        "",
        "Command: `" + report["command"] + "`",
        "",
    ]
    if report.get("smoke"):
        lines += ["**A smoke run of the harness (seconds-long runs): not a measurement.**", ""]
    for key in ("a", "b"):
        if key not in report["tuning"]:
            continue
        caps, chosen = capacities(report, key), _chosen(report, key)
        loads = by_load(report, key)
        factors = sorted({f for s in loads.values() for f in s})
        lines += [
            f"## {TITLES[key]}", "", f"Workload at load factor 1: `{report['specs'][key]}`", "",
            "| system | tuned setting | capacity (req/s) [95% CI] | "
            + " | ".join(f"{f * limit:.0f}/s" for f in factors) + " |",
            "|---|---|---|" + "---|" * len(factors),
        ]  # fmt: skip
        for system, (cap, note) in caps.items():
            cells = [attainment(loads[system].get(f, [])).text() for f in factors]
            noted = f" ({note})" if note else ""
            lines.append(
                f"| {system} | {chosen.get(system, '-')} | {cap.text('.1f')}{noted} | "
                + " | ".join(cells)
                + " |"
            )
        lines += ["", "Cells: attainment, mean [95% CI] over the rounds.", ""]
        lines += [*_ratio_lines(caps), ""]
    if report.get("overload"):
        gp = goodputs(report)
        lines += [
            f"## {TITLES['c']}", "",
            "Poisson at multiples of the limit, (a)'s SLO and tuned settings. On-time answers per "
            "second, mean [95% CI]; in brackets after it, the fraction of the limit.", "",
            "| system | "
            + " | ".join(f"{f:g}x ({f * limit:.0f}/s)" for f in report["overload"])
            + " |",
            "|---|" + "---|" * len(report["overload"]),
        ]  # fmt: skip
        for system, loads in gp.items():
            cells = [
                f"{loads[f].text('.1f')} ({loads[f].mean / limit:.2f})" if f in loads else "-"
                for f in report["overload"]
            ]
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Tuning (coarse capacity of every setting, x the limit)", ""]
    for key, outcomes in report["tuning"].items():
        for o in outcomes:
            tried = "; ".join(
                ", ".join(f"{k}={v}" for k, v in s["knobs"].items()) + ": " + _tried(s)
                for s in o["tuning"]
            )
            lines.append(f"- ({key}) {o['system']}: {tried}")
    lines += ["", "## Versions", ""] + [f"- {n}: {v}" for n, v in report["versions"].items()]
    lines += ["", f"Traces: {len(report.get('digests', {}))} files, SHA-256 in the JSON."]
    for err in report.get("errors", []):
        lines.append(f"- error: {err}")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qosbatch.viz import save_figure

    keys = [k for k in ("a", "b") if k in report["tuning"]] + (
        ["c"] if report.get("overload") else []
    )
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.3), squeeze=False)
    limit = report["limit"]
    for ax, key in zip(axes[0], keys, strict=True):
        values = goodputs(report) if key == "c" else None
        for system, loads in by_load(report, key).items():
            fs = sorted(loads)
            if values is not None:
                iv = [values[system][f] for f in fs]
            else:
                iv = [attainment(loads[f]) for f in fs]
            mean = [i.mean for i in iv]
            err = [
                [i.mean - i.lo if i.n > 1 else 0 for i in iv],
                [i.hi - i.mean if i.n > 1 else 0 for i in iv],
            ]
            ax.errorbar(
                [f * limit for f in fs], mean, yerr=err, marker="o", capsize=3, label=system
            )
        if key == "c":
            ax.axhline(limit, color="grey", ls=":", lw=1, label="limit")
            ax.set_ylabel("on-time answers/s")
        else:
            ax.axhline(report["target"], color="grey", ls=":", lw=1)
            ax.set_ylabel("attainment")
        ax.set_xlabel("offered load, nominal (req/s)")
        ax.set_title(TITLES[key], fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{report['model']}: mean and 95% CI over {report['budget']['repeats']} rounds", fontsize=10
    )
    save_figure(fig, path)


def write_report(report: dict[str, Any], stem: Path) -> str:
    """``stem``.md and ``stem``.png; returns the markdown."""
    md = table(report)
    stem.with_suffix(".md").write_text(md)
    if report["runs"]:
        plot(report, stem.with_suffix(".png"))
    return md


def main(argv: list[str] | None = None) -> int:
    """Render results again from their JSON: ``python -m benchmarks.peers.report F.json``."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m benchmarks.peers.report")
    ap.add_argument("json", type=Path, nargs="+", help="peers-<model>.json files")
    for path in ap.parse_args(argv).json:
        write_report(json.loads(path.read_text()), path.with_suffix(""))
        print(f"wrote {path.with_suffix('.md')} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Offline batch jobs: the planner's choice, the runner's outputs, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qosbatch.core.errors import UserError
from qosbatch.core.profile import save_profile
from qosbatch.jobs.inputs import open_input
from qosbatch.jobs.layout import open_output
from qosbatch.jobs.plan import plan_job, plan_local
from qosbatch.jobs.runner import QuietReporter, RunSettings, run_local
from qosbatch.jobs.units import parse_duration_s, parse_money
from qosbatch.models.backends import make_backend
from qosbatch.models.loading import resolve_model
from qosbatch.planner.catalogue import Catalogue, NodeType
from qosbatch.planner.service import ModelService
from tests.conftest import assert_one_line_error, make_profile, run_cli

SLOW_MODEL = """
import os, time, torch

class Slow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(8, 3)

    def forward(self, x):
        time.sleep(float(os.environ.get("SLOW_S", "0")))
        return self.lin(x)

def build():
    return Slow()
"""


def law(b, c):
    return (0.010 * b + 0.004) / c + 0.001 * b + 0.002


def service(max_cores=8, name="synthetic"):
    return ModelService.from_profile(
        make_profile(law, name=name), max_cores=max_cores, max_batch=32
    )


def catalogue(*types):
    return Catalogue(tuple(types), reserved_memory_gib=0.0)


def node(name, cores, price, max_nodes=None, per_core=None):
    return NodeType(name, cores, 16.0, price, gflops_per_core=per_core, max_nodes=max_nodes)


# --- planner --------------------------------------------------------------------------


def test_plan_picks_the_cheapest_configuration_that_meets_the_deadline():
    cat = catalogue(node("dear", 2, 0.30), node("cheap", 2, 0.10), node("big", 8, 0.60))
    plan = plan_job(200_000, service(), cat, deadline_s=3600.0)
    assert plan.best.node_type.name == "cheap"
    assert plan.best.guarded_s <= 3600.0
    assert all(plan.best.cost <= c.cost for c in plan.alternatives)
    assert {c.node_type.name for c in plan.alternatives} == {"dear", "big"}
    # Batching wins on this law (fixed cost per batch), one core per worker too.
    assert plan.best.batch == 32 and plan.best.cores == 1 and plan.best.workers_per_node == 2


def test_plan_takes_the_dearer_type_when_the_cheap_one_is_capped():
    cat = catalogue(node("cheap", 2, 0.10, max_nodes=1), node("dear", 2, 0.30))
    relaxed = plan_job(200_000, service(), cat, deadline_s=4 * 3600.0)
    assert relaxed.best.node_type.name == "cheap"
    tight = plan_job(200_000, service(), cat, deadline_s=600.0)
    assert tight.best.node_type.name == "dear" and tight.best.nodes > 1
    assert tight.best.guarded_s <= 600.0
    one_fewer = plan_job(
        200_000, service(), catalogue(node("dear", 2, 0.3, tight.best.nodes - 1)), deadline_s=1e9
    ).best
    assert one_fewer.nodes == 1  # sanity: the cap binds only where nodes are needed


def test_faster_node_type_is_predicted_by_flops_p_over_c():
    svc = service()
    per_core = svc.node.gflops(1)  # as fast per core as the profiled node
    slow = plan_job(10_000, svc, catalogue(node("x", 2, 0.1, per_core=per_core)), 1e6).best
    fast = plan_job(10_000, svc, catalogue(node("x", 2, 0.1, per_core=2 * per_core)), 1e6).best
    assert fast.batch_s == pytest.approx(slow.batch_s / 2, rel=1e-6)


def test_impossible_deadline_says_by_how_much_it_misses():
    cat = catalogue(node("only", 2, 0.1, max_nodes=1))
    with pytest.raises(UserError, match=r"deadline 1m00s is missed by \d+m\d+s: the fastest"):
        plan_job(200_000, service(), cat, deadline_s=60.0)


def test_impossible_budget_says_by_how_much_it_misses():
    cat = catalogue(node("only", 2, 0.1))
    plan = plan_job(200_000, service(), cat, deadline_s=3600.0)
    with pytest.raises(UserError, match=r"budget \$0\.0100 is missed by \$0\.\d+"):
        plan_job(200_000, service(), cat, deadline_s=3600.0, budget=0.01)
    assert (
        plan_job(200_000, service(), cat, 3600.0, budget=plan.best.guarded_cost).best == plan.best
    )


def test_local_plan_uses_fewest_core_seconds_that_meet_the_deadline():
    svc = service(max_cores=2)
    fastest, ok = plan_local(20_000, svc, 2, None)
    assert ok and fastest.cores == 2
    loose, ok = plan_local(20_000, svc, 2, deadline_s=fastest.guarded_s * 3)
    assert ok and loose.cores == 1  # law: 2 cores are not twice as fast, so 1 is cheaper
    _, ok = plan_local(20_000, svc, 2, deadline_s=fastest.guarded_s / 2)
    assert not ok


@pytest.mark.parametrize(
    ("text", "seconds"), [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("30", 30)]
)
def test_deadlines_parse(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["soon", "2 hours", "-1h", "0s", "1h x"])
def test_bad_deadlines_are_refused(text):
    with pytest.raises(UserError, match="--deadline"):
        parse_duration_s(text)


def test_budgets_parse_in_the_catalogue_currency():
    assert parse_money("5usd", "USD") == parse_money("$5", "USD") == 5.0
    with pytest.raises(UserError, match="prices in USD, not EUR"):
        parse_money("5eur", "USD")


def test_job_plan_command(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5000, 784), dtype=np.float32))
    save_profile(make_profile(law, name="mlp"), tmp_path / "p.json")
    args = ("job", "plan", tmp_path / "x.npy", "--model", "mlp", "--profile", tmp_path / "p.json")
    done = run_cli(*args, "--deadline", "1h")
    assert done.exit_code == 0, done.output
    assert "c6i" in done.output and "next best" in done.output
    assert_one_line_error(run_cli(*args, "--deadline", "1s"), "deadline 1.0 s is missed by")
    assert_one_line_error(run_cli(*args, "--deadline", "soon"), "--deadline")


# --- runner ---------------------------------------------------------------------------


def _run(tmp_path, x, out, batch=7, part=16, model="small-cnn", **kw):
    np.save(tmp_path / "x.npy", x)
    return run_cli(
        "job",
        "run",
        tmp_path / "x.npy",
        "--model",
        model,
        "-o",
        out,
        "--batch-size",
        batch,
        "--cores",
        1,
        "--part-size",
        part,
        *kw.get("extra", ()),
    )


def test_run_writes_outputs_in_input_order_equal_to_a_direct_call(tmp_path):
    x = np.random.default_rng(1).standard_normal((53, 3, 32, 32), dtype=np.float32)
    done = _run(tmp_path, x, tmp_path / "out")
    assert done.exit_code == 0, done.output
    out = np.load(tmp_path / "out" / "outputs.npy")
    direct = make_backend(resolve_model("small-cnn")).run(x)
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-6)
    summary = json.loads((tmp_path / "out" / "job.json").read_text())
    assert summary["samples"] == 53 and summary["samples_this_run"] == 53
    assert summary["core_seconds"] > 0 and summary["cost"] > 0
    again = _run(tmp_path, x, tmp_path / "out")  # complete: nothing redone
    assert again.exit_code == 0 and "already complete" in again.output


def test_folder_input_reads_files_in_name_order(tmp_path):
    rng = np.random.default_rng(2)
    parts = [rng.standard_normal((n, 784), dtype=np.float32) for n in (5, 9, 4)]
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", parts[0])
    np.savez(folder / "b.npz", first=parts[1], second=parts[2])
    job_input = open_input(folder)
    assert job_input.n == 18
    np.testing.assert_array_equal(job_input.read(3, 16), np.concatenate(parts)[3:16])
    done = run_cli(
        "job",
        "run",
        folder,
        "--model",
        "mlp",
        "-o",
        tmp_path / "out",
        "--batch-size",
        4,
        "--cores",
        1,
    )
    assert done.exit_code == 0, done.output
    direct = make_backend(resolve_model("mlp")).run(np.concatenate(parts))
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "outputs.npy"), direct, rtol=1e-5, atol=1e-6
    )


def test_shape_mismatch_and_missing_input_are_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 28, 28), dtype=np.float32))
    args = ("job", "run", tmp_path / "x.npy", "--model", "small-cnn", "-o", tmp_path / "o")
    assert_one_line_error(run_cli(*args), "shape 3x28x28", "takes 3x32x32")
    missing = run_cli("job", "run", tmp_path / "none.npy", "--model", "mlp", "-o", tmp_path / "o")
    assert_one_line_error(missing, "input not found")
    assert not (tmp_path / "o").exists()


def test_foreign_corrupt_or_other_job_output_is_refused(tmp_path):
    x = np.zeros((20, 784), dtype=np.float32)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert_one_line_error(_run(tmp_path, x, foreign, model="mlp"), "not a qosbatch job")
    assert (foreign / "notes.txt").read_text() == "mine"
    assert _run(tmp_path, x, tmp_path / "out", model="mlp").exit_code == 0
    other = _run(tmp_path, np.ones((21, 784), dtype=np.float32), tmp_path / "out", model="mlp")
    assert_one_line_error(other, "holds another job")
    (tmp_path / "out" / "manifest.json").write_text("{not json")
    assert_one_line_error(_run(tmp_path, x, tmp_path / "out", model="mlp"), "is corrupt")


def test_full_disk_stops_with_the_parts_kept_and_the_rerun_resumes(tmp_path, monkeypatch):
    import errno

    from qosbatch.jobs import layout

    save, calls = layout._save_atomic, []

    def full_after_two(path, array):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        save(path, array)

    x = np.random.default_rng(6).standard_normal((100, 784), dtype=np.float32)
    monkeypatch.setattr(layout, "_save_atomic", full_after_two)
    full = _run(tmp_path, x, tmp_path / "out", batch=10, part=20, model="mlp")
    assert full.exit_code == 2 and "Traceback" not in full.output  # after the bar: one line
    last = full.stderr.strip().splitlines()[-1]
    assert "No space left on device" in last and "2 of 5 parts (40 samples)" in last
    monkeypatch.setattr(layout, "_save_atomic", save)
    assert _run(tmp_path, x, tmp_path / "out", batch=10, part=20, model="mlp").exit_code == 0
    summary = json.loads((tmp_path / "out" / "job.json").read_text())
    assert summary["resumed_from"] == 40 and summary["samples_this_run"] == 60


def test_drift_from_the_profile_is_reported_and_replanned(tmp_path):
    """A profile 50x too slow: the runner notices, scales, and re-plans (b, k)."""
    x = np.random.default_rng(3).standard_normal((600, 784), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    job_input = open_input(tmp_path / "x.npy")
    svc = ModelService.from_profile(make_profile(lambda b, c: 50 * law(b, c), name="mlp"), 1, 32)
    out = open_output(tmp_path / "out", {"model": "mlp", "backend": "torch", "n": 600}, 100)
    reporter = QuietReporter()
    settings = RunSettings(batch=2, cores=1, max_cores=1, deadline_s=3600.0, drift_seconds=0)
    summary = run_local(
        job_input,
        make_backend(resolve_model("mlp")),
        out,
        settings,
        svc,
        reporter,
        time.perf_counter(),
    )
    assert any("re-planned" in n and "x the predicted time" in n for n in reporter.notes)
    assert summary["replans"] and summary["replans"][0]["ratio"] < 0.8
    direct = make_backend(resolve_model("mlp")).run(x)
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "outputs.npy"), direct, rtol=1e-5, atol=1e-6
    )


def test_drift_watch_reports_a_lasting_drift_once_per_window_and_ignores_noise():
    from qosbatch.jobs.adapt import DriftWatch

    watch = DriftWatch(window=4, min_seconds=0.0, warmup=1)
    times = [3.0] + [1.1, 0.9, 1.15, 0.85, 3.0, 1.1, 0.9, 1.15] * 2
    noise = [watch.observe(m, 1.0) for m in times]
    assert noise == [None] * 17  # the warm-up batch is skipped; an outlier, +-15%: no drift
    slow = [watch.observe(1.5, 1.0) for _ in range(5)]
    assert slow == [None, None, None, 1.5, None]  # then a new window after one skipped


@pytest.mark.slow
def test_resume_after_kill_9_loses_and_repeats_nothing(tmp_path, monkeypatch):
    (tmp_path / "slowmod.py").write_text(SLOW_MODEL)
    x = np.random.default_rng(4).standard_normal((800, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    args = [
        "job",
        "run",
        str(tmp_path / "x.npy"),
        "--model",
        "slowmod:build",
        "--batch-size",
        "4",
        "--cores",
        "1",
        "--part-size",
        "20",
    ]
    exe = Path(sys.executable).with_name("qosbatch")
    child = subprocess.Popen(
        [str(exe), *args, "-o", str(tmp_path / "out")],
        cwd=tmp_path,
        env={**os.environ, "SLOW_S": "0.01"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    manifest = tmp_path / "out" / "manifest.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if manifest.is_file() and json.loads(manifest.read_text() or "{}").get("parts_done"):
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    done_before = json.loads(manifest.read_text())["parts_done"]
    assert 0 < len(done_before) < 40 and not (tmp_path / "out" / "outputs.npy").exists()

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    resumed = run_cli(*args, "-o", tmp_path / "out")
    assert resumed.exit_code == 0, resumed.output
    whole = run_cli(*args, "-o", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    final = json.loads(manifest.read_text())
    assert final["parts_done"] == list(range(40))  # each part once, none missing
    summary = json.loads((tmp_path / "out" / "job.json").read_text())
    assert summary["resumed_from"] == 20 * len(done_before)
    assert summary["samples_this_run"] == 800 - 20 * len(done_before)
    np.testing.assert_array_equal(
        np.load(tmp_path / "out" / "outputs.npy"), np.load(tmp_path / "whole" / "outputs.npy")
    )
    direct = make_backend(resolve_model("slowmod:build", (8,))).run(x)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "outputs.npy"), direct, rtol=1e-5)


@pytest.mark.slow
def test_ray_engine_resumes_the_same_layout_and_matches_the_local_runner(tmp_path):
    """Half the parts done by the local runner, the rest on local Ray (2 CPUs)."""
    pytest.importorskip("ray.data")
    import ray

    x = np.random.default_rng(5).standard_normal((120, 784), dtype=np.float32)
    args = ("--batch-size", 8, "--cores", 1, "--part-size", 24)
    np.save(tmp_path / "x.npy", x)
    local = ("job", "run", tmp_path / "x.npy", "--model", "mlp", *args)
    assert run_cli(*local, "-o", tmp_path / "local").exit_code == 0
    assert run_cli(*local, "-o", tmp_path / "half").exit_code == 0
    manifest = json.loads((tmp_path / "half" / "manifest.json").read_text())
    manifest.update(parts_done=[0, 2], complete=False)
    (tmp_path / "half" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "half" / "outputs.npy").unlink()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        done = run_cli(*local, "-o", tmp_path / "half", "--engine", "ray", "--actors", 2)
    finally:
        ray.shutdown()
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "half" / "job.json").read_text())
    assert summary["engine"] == "ray" and summary["samples_this_run"] == 120 - 48
    assert json.loads((tmp_path / "half" / "manifest.json").read_text())["parts_done"] == [
        0,
        1,
        2,
        3,
        4,
    ]
    np.testing.assert_allclose(
        np.load(tmp_path / "half" / "outputs.npy"),
        np.load(tmp_path / "local" / "outputs.npy"),
        rtol=1e-5,
        atol=1e-6,
    )

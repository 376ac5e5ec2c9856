import pytest

from qosbatch.core.profile import load_profile, save_profile
from qosbatch.models.loading import resolve_model
from qosbatch.profiling.pinning import available_cores
from qosbatch.profiling.profiler import ProfileRequest, holdout_sizes, run_profile
from qosbatch.profiling.runner import RunSettings

FAST = RunSettings(warmup=1, repeats=3, max_seconds=2.0)


def test_holdout_sizes_are_the_midpoints_between_measured_sizes():
    assert holdout_sizes([1, 2, 4, 8, 16, 32]) == [3, 6, 12, 24]
    assert holdout_sizes([1, 2, 3, 4, 6, 8]) == [5, 7]
    assert holdout_sizes([4]) == []


@pytest.mark.slow
def test_real_mlp_profile_predicts_its_held_out_points(tmp_path):
    cores = [1, 2] if len(available_cores()) >= 2 else [1]
    sizes = [16, 32, 64, 128, 256]
    held = holdout_sizes(sizes)
    request = ProfileRequest(resolve_model("mlp"), sizes, cores, held, FAST)
    seen = []
    prof = run_profile(request, seen.append)

    assert not prof.partial
    assert len(prof.measurements) == len(seen) == len(cores) * (len(sizes) + len(held))
    assert {m.batch for m in prof.measurements if m.holdout} == set(held)
    assert all(m.median_ms > 0 and m.repeats >= 3 and m.peak_memory_bytes >= 0 for m in seen)
    assert prof.model.flops_per_sample == pytest.approx(2 * (784 * 1024 + 1024 * 1024 + 10240))
    assert set(prof.node.compute_gflops) == set(cores)
    # Held-out points were not fitted on, yet both models predict them: on a quiet
    # machine within 2-3%; the bound leaves room for a noisy shared CI machine.
    for kind in ("amdahl", "density"):
        held_err = prof.fit["models"][kind]["heldout"]
        assert held_err["points"] == len(cores) * len(held)
        assert held_err["mape_pct"] < 15, (kind, held_err)

    path = tmp_path / "mlp.json"
    save_profile(prof, path)
    again = load_profile(path)
    assert again.measurements == prof.measurements
    assert again.model == prof.model


@pytest.mark.slow
def test_interrupted_profile_keeps_what_it_measured_marked_partial():
    request = ProfileRequest(resolve_model("mlp"), [1, 2, 4], [1], [], FAST)

    def interrupt(_point):
        raise KeyboardInterrupt

    prof = run_profile(request, interrupt)
    assert prof.partial
    assert prof.settings["stopped"] == "interrupted"
    assert len(prof.measurements) == 1


@pytest.mark.slow
def test_a_failing_model_stops_with_the_reason_and_no_points():
    # The wrong input shape makes every forward pass fail inside the child.
    request = ProfileRequest(resolve_model("mlp", (5,)), [1, 2], [1], [], FAST)
    prof = run_profile(request)
    assert prof.partial
    assert prof.measurements == []
    assert "1-core run failed" in prof.settings["stopped"]


@pytest.mark.slow
def test_onnx_backend_profiles_from_one_shared_export():
    settings = RunSettings(warmup=1, repeats=3, max_seconds=2.0, backend="onnx")
    request = ProfileRequest(resolve_model("small-cnn"), [1, 4], [1], [], settings)
    prof = run_profile(request)
    assert not prof.partial, prof.settings.get("stopped")
    assert prof.model.backend == "onnx"
    assert prof.model.flops_per_sample and prof.model.flops_per_sample > 0
    assert [m.batch for m in prof.measurements] == [1, 4]

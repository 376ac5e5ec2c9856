import json
import re

import pytest

from conftest import assert_one_line_error, make_profile
from conftest import run_cli as run
from qosbatch.core.profile import NodeInfo, save_node, save_profile
from qosbatch.profiling.pinning import available_cores


@pytest.fixture
def profile_file(tmp_path, amdahl_law):
    path = tmp_path / "p.json"
    save_profile(make_profile(amdahl_law), path)
    return path


def test_models_lists_the_zoo_with_flops():
    result = run("models")
    assert result.exit_code == 0
    for name in ("alexnet", "resnet18", "resnet50", "mobilenet", "mlp", "small-cnn"):
        assert name in result.output
    assert "1.428" in result.output  # AlexNet GFLOP per sample


def test_predict_prints_latency_model_and_held_out_error(profile_file, amdahl_law):
    result = run("predict", profile_file, "--batch", 12, "--cores", 2, "--model", "amdahl")
    assert result.exit_code == 0, result.output
    ms = float(re.search(r"([\d.]+) ms", result.output).group(1))
    assert ms == pytest.approx(amdahl_law(12, 2) * 1e3, rel=1e-3)
    assert "amdahl" in result.output and "held-out MAPE" in result.output


def test_predict_on_another_node_scales_by_its_compute_power(profile_file, tmp_path):
    here = run("predict", profile_file, "--batch", 8, "--cores", 1, "--model", "density")
    fast = tmp_path / "fast.json"
    save_node(NodeInfo("faster cpu", 8, {1: 200.0, 2: 400.0}), fast)  # twice this node's c
    there = run("predict", profile_file, "--batch", 8, "--cores", 1, "--node", fast)
    assert there.exit_code == 0, there.output
    ms_here, ms_there = (float(re.search(r"([\d.]+) ms", r.output).group(1)) for r in (here, there))
    assert ms_there == pytest.approx(ms_here / 2, rel=1e-2)
    assert "faster cpu" in there.output


def test_plot_writes_a_png(profile_file, tmp_path):
    out = tmp_path / "plot.png"
    result = run("plot", profile_file, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_profile_command_writes_a_profile(tmp_path):
    out = tmp_path / "mlp.json"
    result = run("profile", "mlp", "--batch-sizes", "1,4", "--cores", 1, "--repeats", 3,
                 "--warmup", 0, "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "qosbatch.profile" and data["partial"] is False
    assert {m["batch"] for m in data["measurements"]} == {1, 2, 4}  # 2 is the held-out midpoint


def test_unknown_model():
    assert_one_line_error(run("profile", "resnet999", "--cores", 1), "unknown model 'resnet999'")


def test_batch_size_zero_or_negative():
    assert_one_line_error(run("profile", "mlp", "--batch-sizes", "0,2"), "--batch-sizes", ">= 1")
    assert_one_line_error(run("profile", "mlp", "--batch-sizes", "-1"), "--batch-sizes")
    assert_one_line_error(run("profile", "mlp", "--batch-sizes", "a,b"), "--batch-sizes")


def test_more_cores_than_the_machine_has():
    many = len(available_cores()) + 1
    assert_one_line_error(run("profile", "mlp", "--cores", many), f"{many} cores asked for")


def test_missing_profile(tmp_path):
    assert_one_line_error(
        run("predict", tmp_path / "nope.json", "--batch", 1, "--cores", 1), "profile not found"
    )
    assert_one_line_error(run("plot", tmp_path / "nope.json"), "profile not found")


def test_corrupt_profiles(tmp_path, profile_file):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"schema": "qosbatch.profile", "vers')
    assert_one_line_error(run("predict", bad_json, "--batch", 1, "--cores", 1), "not valid JSON")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    assert_one_line_error(run("plot", other), "corrupt", "not a qosbatch.profile file")
    truncated = tmp_path / "truncated.json"
    data = json.loads(profile_file.read_text())
    del data["measurements"]
    truncated.write_text(json.dumps(data))
    assert_one_line_error(run("plot", truncated), "corrupt", "measurements")


def test_bad_predict_arguments(profile_file):
    assert_one_line_error(run("predict", profile_file, "--batch", 0, "--cores", 1), "--batch")
    assert_one_line_error(run("predict", profile_file, "--batch", 1, "--cores", 0), "--cores")
    assert_one_line_error(
        run("predict", profile_file, "--batch", 1, "--cores", 1, "--model", "x"), "--model"
    )


def test_onnx_file_that_does_not_load(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    assert_one_line_error(
        run("profile", broken, "--backend", "onnx", "--cores", 1), "does not load"
    )


def test_unknown_backend_and_missing_cuda():
    assert_one_line_error(run("profile", "mlp", "--cores", 1, "--backend", "tf"), "unknown backend")


@pytest.mark.slow
def test_a_model_that_fails_to_run_writes_nothing(tmp_path):
    out = tmp_path / "p.json"
    result = run("profile", "mlp", "--input-shape", "5", "--cores", 1, "--batch-sizes", "1",
                 "--repeats", 3, "-o", out)  # fmt: skip
    assert_one_line_error(result, "nothing was measured", "1-core run failed")
    assert not out.exists()

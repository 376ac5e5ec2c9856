"""``qosbatch queue``: the model's numbers as a table, the optimizer, the plot, bad input."""

import re

import pytest

from conftest import assert_one_line_error, make_profile
from conftest import run_cli as run
from qosbatch.core.profile import save_profile
from qosbatch.queueing import solve


def law(b, c):
    return (0.010 * b + 0.004) / c + 0.001 * b + 0.002


@pytest.fixture
def profile_file(tmp_path):
    path = tmp_path / "p.json"
    save_profile(make_profile(law), path)
    return path


def first_row(output):
    """The numbers of the table's one data row: a, b, latency, wait, blocking, ..."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 8 and cells[0].isdigit():
            return cells
    raise AssertionError(output)


def test_prints_the_models_prediction(profile_file):
    result = run("queue", "--profile", profile_file, "--rate", 40, "--a", 2, "--b", 8,
                 "--service", "deterministic")  # fmt: skip
    assert result.exit_code == 0, result.output
    a, b, latency_ms, *_ = first_row(result.output)
    expected = solve(40.0, 2, 8, 256, lambda k: law(k, 2)).mean_latency * 1e3
    assert (a, b) == ("2", "8")
    # The table is the fitted model's s(k), not the law itself: within the fit's error.
    assert float(latency_ms) == pytest.approx(expected, rel=0.03)


def test_optimize_finds_a_pair_within_the_bound(profile_file):
    result = run("queue", "--profile", profile_file, "--rate", 60, "--b", 16, "--optimize",
                 "--slo", "80ms")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "best (a, b)" in result.output
    a, b, latency_ms, *_ = first_row(result.output)
    assert 1 <= int(a) <= int(b) <= 16 and float(latency_ms) <= 80


def test_optimize_with_an_impossible_bound_exits_1_and_says_so(profile_file):
    result = run("queue", "--profile", profile_file, "--rate", 60, "--b", 16, "--optimize",
                 "--slo", "1ms")  # fmt: skip
    assert result.exit_code == 1
    assert "no (a, b) meets the bounds" in re.sub(r"\s+", " ", result.output)


def test_plot_draws_the_model_and_the_simulator(profile_file, tmp_path):
    out = tmp_path / "q.png"
    result = run("queue", "--profile", profile_file, "--rate", 40, "--b", 8, "--plot", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--rate", 0), "--rate"),
        (("--rate", 10, "--a", 5, "--b", 2), "b must be >= a"),
        (("--rate", 10, "--b", 64, "--capacity", 8), "N (capacity)"),
        (("--rate", 10, "--service", "weibull"), "--service"),
        (("--rate", 10, "--optimize", "--slo", "fast"), "--slo"),
        (("--rate", 10, "--optimize", "--omega", 2), "give --memory"),
        (("--rate", 10, "--omega", 2, "--memory", 3), "add --optimize"),
        (("--rate", 10, "--optimize", "--omega", 2, "--memory", "lots"), "megabytes per sample"),
        (("--rate", 10, "--optimize", "--omega", -1, "--memory", 3), "--omega must be >= 0"),
    ],
)
def test_bad_arguments_get_one_line(profile_file, args, fragment):
    assert_one_line_error(run("queue", "--profile", profile_file, *args), fragment)


def test_missing_profile_gets_one_line(tmp_path):
    result = run("queue", "--profile", tmp_path / "nope.json", "--rate", 10)
    assert_one_line_error(result, "nope.json")


def test_omega_trades_latency_for_memory_and_draws_the_frontier(profile_file, tmp_path):
    """BatOpt's objective: a heavy weight on memory picks a pair that holds less memory
    (smaller batches) at some cost in latency; the frontier plot is written."""

    def chosen(*extra):
        result = run("queue", "--profile", profile_file, "--rate", 60, "--b", 16, "--optimize",
                     "--memory", "50", *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        _, b, latency_ms, *_ = first_row(result.output)
        mb = float(re.search(r"in service: ([0-9.]+) MB", result.output).group(1))
        return int(b), float(latency_ms), mb, result.output

    _, lat0, mb0, _ = chosen()
    png = tmp_path / "frontier.png"
    _, lat1, mb1, out = chosen("--omega", 5, "--frontier", png)
    assert mb1 < mb0 and lat1 >= lat0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote" in out


def test_memory_from_the_profile_is_its_linear_fit():
    from qosbatch.latency.memory import memory_from_profile

    m = memory_from_profile(make_profile(law), 1)  # measured: 1000 bytes per sample
    assert m(5) == pytest.approx(5000) and m(64) == pytest.approx(64_000)

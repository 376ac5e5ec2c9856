import json

import numpy as np
import pytest

from conftest import make_profile
from qosbatch.core.errors import UserError
from qosbatch.latency import (
    AmdahlModel,
    DensityModel,
    cross_core_errors,
    error_on,
    fit_profile,
    latency_model,
)
from qosbatch.latency.density import compute_power_flops


def test_amdahl_fit_recovers_known_coefficients(amdahl_law):
    b, c = np.meshgrid([1, 2, 4, 8, 16, 32], [1, 2, 4])
    s = amdahl_law(b.ravel(), c.ravel())
    model = AmdahlModel.fit(b.ravel(), c.ravel(), s)
    assert model.alpha == pytest.approx(0.010, rel=1e-6)
    assert model.beta == pytest.approx(0.004, rel=1e-6)
    assert model.gamma == pytest.approx(0.001, rel=1e-6)
    assert model.delta == pytest.approx(0.002, rel=1e-6)


def test_amdahl_fit_with_noise_stays_close_and_non_negative(amdahl_law):
    rng = np.random.default_rng(7)
    b, c = np.meshgrid([1, 2, 3, 4, 6, 8, 12, 16, 24, 32], [1, 2])
    s = amdahl_law(b.ravel(), c.ravel()) * rng.lognormal(0, 0.02, b.size)
    model = AmdahlModel.fit(b.ravel(), c.ravel(), s)
    assert min(model.alpha, model.beta, model.gamma, model.delta) >= 0
    assert model.alpha == pytest.approx(0.010, rel=0.1)
    pred = model.predict_s(b.ravel(), c.ravel())
    assert np.mean(np.abs(pred - s) / s) < 0.03


def test_amdahl_coefficients_never_negative_even_when_data_wants_it():
    # Latency that falls with batch size at one core would need a negative term.
    model = AmdahlModel.fit([1, 2, 4], [1, 1, 1], [0.010, 0.009, 0.008])
    assert min(model.alpha, model.beta, model.gamma, model.delta) >= 0


def test_compute_power_scales_linearly_beyond_measured_counts():
    g = {1: 100.0, 2: 190.0}
    assert compute_power_flops(g, 2) == pytest.approx(190e9)
    assert compute_power_flops(g, 4) == pytest.approx(380e9)
    assert compute_power_flops(g, [1, 2]) == pytest.approx([100e9, 190e9])


def test_density_recovers_processing_density_per_batch():
    flops = 2e9
    gflops = {1: 100.0, 2: 200.0}

    def p_true(b):
        return 3.0 / b + 1.5

    b = np.array([1, 2, 4, 8, 1, 2, 4, 8])
    c = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    s = flops * b * p_true(b) / (np.array([gflops[k] for k in c]) * 1e9)
    model = DensityModel.fit(flops, gflops, b, c, s)
    assert model.density([1, 2, 4, 8], 1) == pytest.approx(p_true(np.array([1, 2, 4, 8])))
    assert model.predict_s(b, c) == pytest.approx(s)


def test_density_carries_to_another_node_by_its_compute_power():
    flops = 1e9
    model = DensityModel.fit(flops, {1: 100.0}, [1, 4], [1, 1], [0.02, 0.05])
    twice_as_fast = model.on_node({1: 200.0})
    assert twice_as_fast.predict_s(4, 1) == pytest.approx(0.025)


def test_density_refuses_a_model_without_flops():
    with pytest.raises(ValueError, match="FLOPs"):
        DensityModel.fit(0, {1: 1.0}, [1], [1], [0.1])


def test_fit_profile_scores_on_held_out_points_only(amdahl_law):
    prof = make_profile(amdahl_law)
    fit = fit_profile(prof)
    held = fit["models"]["amdahl"]["heldout"]
    assert held["points"] == 8  # 4 held-out sizes x 2 core counts
    assert held["mape_pct"] < 1e-6  # the law is exactly Amdahl, so prediction is exact
    assert fit["best"] in ("amdahl", "density")


def test_held_out_error_reflects_a_law_the_model_cannot_express():
    # A cache cliff between 8 and 16: Amdahl's straight line must miss the held-out 12.
    def cliff(b, c):
        return (0.01 * b if b <= 8 else 0.02 * b) / c

    fit = fit_profile(make_profile(cliff))
    assert fit["models"]["amdahl"]["heldout"]["mape_pct"] > 5


def test_cross_core_error_is_zero_when_the_model_scales_like_gemm():
    def law(b, c):
        return 1e9 * b * (2.0 + 1.0 / b) / (100e9 * c)

    prof = make_profile(law)
    (err,) = cross_core_errors(prof)
    assert (err.from_cores, err.to_cores) == (1, 2)
    assert err.error.mape_pct == pytest.approx(0, abs=1e-9)


def test_cross_core_error_shows_poor_scaling(amdahl_law):
    # gamma and delta do not shrink with cores, so GEMM-like scaling over-predicts the speedup.
    (err,) = cross_core_errors(make_profile(amdahl_law))
    assert err.error.mape_pct > 5


def test_latency_model_kinds_and_bad_kind(amdahl_law):
    prof = make_profile(amdahl_law)
    assert latency_model(prof, "amdahl").name == "amdahl"
    assert latency_model(prof, "density").name == "density"
    assert latency_model(prof, "auto").name in ("amdahl", "density")
    with pytest.raises(UserError, match="unknown latency model"):
        latency_model(prof, "magic")  # type: ignore[arg-type]


def test_density_unavailable_without_flops_is_a_clear_error(amdahl_law):
    prof = make_profile(amdahl_law, flops=None)
    assert "density" not in fit_profile(prof)["models"]
    with pytest.raises(UserError, match="FLOPs were not counted"):
        latency_model(prof, "density")


def test_fitted_models_round_trip_through_json(amdahl_law):
    prof = make_profile(amdahl_law)
    for kind, cls in (("amdahl", AmdahlModel), ("density", DensityModel)):
        model = latency_model(prof, kind)
        again = cls.from_json(json.loads(json.dumps(model.to_json())))
        assert again.predict_s(5, 2) == pytest.approx(model.predict_s(5, 2))


def test_error_on_no_points_is_none(amdahl_law):
    assert error_on(latency_model(make_profile(amdahl_law), "amdahl"), []) is None

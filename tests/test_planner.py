"""The planner end to end: catalogue, options, plans verified in the simulator, recommend."""

from __future__ import annotations

import math

import pytest

from conftest import make_profile
from qosbatch.core.errors import UserError
from qosbatch.planner import (
    Catalogue,
    Demand,
    ModelService,
    NodeType,
    PlannerSettings,
    Target,
    make_plan,
    parse_catalogue,
    recommend,
)
from qosbatch.planner.files import load_catalogue
from qosbatch.planner.options import enumerate_options
from qosbatch.planner.paths import PATHS
from qosbatch.planner.recommend import profiled_catalogue
from qosbatch.planner.verify import verify_plan
from qosbatch.planner.workload import parse_workload


def law_small(b, c):
    return (0.004 * b + 0.002) / c + 0.0004 * b + 0.003


def law_big(b, c):
    return (0.03 * b + 0.01) / c + 0.002 * b + 0.008


def service(law, name, max_cores=8, max_batch=16):
    profile = make_profile(law, name=name, cores=(1, 2))
    return ModelService.from_profile(profile, max_cores=max_cores, max_batch=max_batch)


CATALOGUE = Catalogue(
    (
        NodeType("two", 2, 4.0, 0.10),
        NodeType("four", 4, 8.0, 0.19),
        NodeType("eight-fast", 8, 16.0, 0.45, gflops_per_core=150.0),  # 1.5x the profiled node
    ),
    reserved_memory_gib=0.5,
)


def test_default_catalogue_is_dated_and_priced():
    cat = load_catalogue()
    assert cat.as_of and "check before relying" in cat.source
    assert len(cat.node_types) >= 6
    assert all(t.node_price_per_hour and t.node_price_per_hour > 0 for t in cat.node_types)
    assert {t.billing for t in cat.node_types} == {"node-hour", "core-second"}
    assert {"c6i.large", "c7i.xlarge", "m6i.xlarge"} <= {t.name for t in cat.node_types}


@pytest.mark.parametrize(
    ("node", "fragment"),
    [
        ({"name": "x", "cores": 4, "memory_gib": 8}, "node_types[0].price_per_hour: missing"),
        (
            {"name": "x", "cores": "four", "memory_gib": 8, "price_per_hour": 1},
            "node_types[0].cores",
        ),
        (
            {"name": "x", "cores": 4, "memory_gib": 8, "price_per_hour": 1, "prize": 2},
            "node_types[0].prize: unknown field",
        ),
        (
            {"name": "x", "cores": 4, "memory_gib": -8, "price_per_hour": 1},
            "node_types[0].memory_gib",
        ),
    ],
)
def test_catalogue_errors_name_the_field(node, fragment):
    with pytest.raises(UserError, match=None) as err:
        parse_catalogue({"node_types": [node]}, "cat.yaml")
    assert fragment in str(err.value)
    assert str(err.value).startswith("cat.yaml")


def test_workload_errors_name_the_field():
    with pytest.raises(UserError, match=r"models\[0\]\.rate: expected a number"):
        parse_workload({"models": [{"profile": "p.json", "rate": "fast", "slo": "1s"}]}, "w")
    with pytest.raises(UserError, match=r"models\[0\]\.slo: expected a duration"):
        parse_workload({"models": [{"profile": "p.json", "rate": 1, "slo": "soon"}]}, "w")
    with pytest.raises(UserError, match=r"models\[0\]\.percentile"):
        parse_workload(
            {"models": [{"profile": "p", "rate": 1, "slo": 5, "percentile": 99.99}]}, "w"
        )
    w = parse_workload(
        {"models": [{"profile": "p", "rate": 2, "slo": "0.2s", "percentile": 99}]}, "w"
    )
    assert w.models[0].target == Target(0.2, 99.0)


def test_speed_factor_follows_compute_power():
    svc = service(law_small, "s")
    fast = CATALOGUE.by_name("eight-fast")
    assert fast.speed_factor(svc.node, 2) == pytest.approx(200.0 / 300.0)
    # Estimated: as fast per core as the profiled node at its all-core figure.
    assert CATALOGUE.by_name("four").speed_factor(svc.node, 2) == pytest.approx(1.0)


def test_options_on_other_nodes_are_marked_predicted():
    svc = service(law_small, "s")
    demand = Demand("s", 50.0, Target(0.1, 99.0))
    own = profiled_catalogue(svc, None)
    settings = PlannerSettings()
    on_own = enumerate_options(
        svc,
        demand,
        own.node_types,
        settings.core_counts(svc),
        settings.settings,
        own.usable_memory_bytes,
    )
    assert on_own and not any(o.predicted for o in on_own)
    assert {o.cores for o in on_own} <= {1, 2}  # the profiled core counts only
    elsewhere = enumerate_options(
        svc,
        demand,
        CATALOGUE.node_types,
        settings.core_counts(svc),
        settings.settings,
        CATALOGUE.usable_memory_bytes,
    )
    assert elsewhere and all(o.predicted for o in elsewhere)


def test_plan_verified_in_the_simulator_meets_its_slos():
    services = {"small": service(law_small, "small"), "big": service(law_big, "big")}
    demands = [
        Demand("small", 120.0, Target(0.06, 99.0)),
        Demand("big", 20.0, Target(0.3, 99.0)),
    ]
    plan = make_plan(demands, services, CATALOGUE)
    assert plan.cost_per_hour > 0 and plan.cost_per_hour <= plan.lower_bound * (1 + 1e-9)
    for n in plan.nodes:
        assert sum(r.option.cores for r in n.replicas) <= n.node_type.cores
    for d in demands:
        placed = plan.replicas_of(d.model)
        assert sum(r.option.capacity for _, r in placed) >= d.rate
        assert sum(r.rate for _, r in placed) == pytest.approx(d.rate)
        assert all(r.predicted_latency_s <= d.target.slo_s for _, r in placed)
    checks = verify_plan(plan, services, requests_per_model=12_000, seed=1)
    assert [c.model for c in checks] == ["small", "big"]
    for c in checks:
        assert c.met, c.line()
        assert c.attainment >= 0.99


def test_mean_target_plan_meets_its_mean_in_the_simulator():
    services = {"big": service(law_big, "big")}
    plan = make_plan([Demand("big", 30.0, Target(0.15))], services, CATALOGUE)
    (check,) = verify_plan(plan, services, requests_per_model=12_000)
    assert check.met and check.statistic_ms <= 150.0


@pytest.mark.parametrize(
    ("policy", "spec", "source"),
    [("slo", "slo:max_batch_size=", "simulated (slo)"), ("dynamic", "dynamic:max_batch_size=", "")],
)
def test_plan_to_dict_lists_nodes_replicas_settings_latency_and_cost(policy, spec, source):
    services = {"small": service(law_small, "small")}
    plan = make_plan(
        [Demand("small", 80.0, Target(0.05, 95.0))],
        services,
        CATALOGUE,
        PlannerSettings(policy=policy),
    )
    data = plan.to_dict()
    assert data["schema"] == "qosbatch.plan" and data["cost_per_hour"] > 0
    replica = data["nodes"][0]["replicas"][0]
    for key in ("model", "cores", "policy", "b", "predicted_latency_ms", "share", "latency_source"):
        assert key in replica
    assert replica["policy"].startswith(spec)
    assert replica["latency_source"].startswith(source)
    assert data["models"][0]["target"] == "p95"


def test_recommend_without_a_catalogue_uses_the_profiled_node():
    svc = service(law_big, "big")
    rec = recommend(svc, Demand("big", 10.0, Target(0.3, 99.0)), profiled_catalogue(svc, None))
    assert rec.option.cores in (1, 2) and not rec.option.predicted
    assert rec.cost_per_hour is None and rec.replicas * rec.option.capacity >= 10.0
    line = rec.line()
    assert "\n" not in line and "cost n/a" in line and "p99" in line


def test_recommend_picks_the_cheapest_configuration():
    svc = service(law_big, "big")
    demand = Demand("big", 25.0, Target(0.3, 99.0))
    rec = recommend(svc, demand, CATALOGUE)
    # No single-type configuration is cheaper (checked by enumeration over every option).
    settings = PlannerSettings()
    for o in enumerate_options(
        svc,
        demand,
        CATALOGUE.node_types,
        settings.core_counts(svc),
        settings.settings,
        CATALOGUE.usable_memory_bytes,
        prune=False,
    ):
        replicas = math.ceil(demand.rate / o.capacity - 1e-9)
        nodes = math.ceil(replicas / (o.node_type.cores // o.cores))
        assert nodes * o.node_type.price_per_hour >= rec.cost_per_hour - 1e-9
    assert rec.predicted_latency_s <= 0.3


def test_unreachable_slo_names_the_fastest_batch_1_latency():
    svc = service(law_big, "big")
    none = PlannerSettings(path=PATHS["none"])
    with pytest.raises(UserError, match="fastest batch-1 latency is") as err:
        recommend(svc, Demand("big", 10.0, Target(0.005, 99.0)), CATALOGUE, none)
    assert "model big" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="the local path alone takes 8 ms"):
        recommend(svc, Demand("big", 10.0, Target(0.005, 99.0)), CATALOGUE)


def test_a_replica_larger_than_every_node_is_named():
    svc = service(law_small, "s")
    huge = ModelService.from_profile(
        make_profile(law_small, name="s"), 8, 16, memory_override_bytes=64 * 2**30
    )
    assert svc.memory_bytes(4) < huge.memory_bytes(4)
    with pytest.raises(UserError, match=r"needs 64\.00 GiB"):
        recommend(huge, Demand("s", 10.0, Target(0.1)), CATALOGUE)


def test_duplicate_models_are_refused():
    services = {"small": service(law_small, "small")}
    d = Demand("small", 1.0, Target(0.1))
    with pytest.raises(UserError, match="listed twice"):
        make_plan([d, d], services, CATALOGUE)

"""Plans that run ``slo`` (capacity simulated), pay-per-use billing, cost per on-time request."""

from __future__ import annotations

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
from qosbatch.planner.checks import on_time_floor
from qosbatch.planner.paths import PATHS, serving_path
from qosbatch.planner.slo_options import SloSearch, simulate_replica, slo_capacity
from qosbatch.planner.verify import verify_plan


def law(b, c):
    """Batching pays (fixed cost per batch), cores help with the per-sample part."""
    return (0.004 * b + 0.002) / c + 0.0004 * b + 0.006


def service(name="m", max_cores=4, max_batch=32):
    profile = make_profile(law, name=name, cores=(1, 2))
    return ModelService.from_profile(profile, max_cores=max_cores, max_batch=max_batch)


NODES = Catalogue((NodeType("two", 2, 4.0, 0.10), NodeType("four", 4, 8.0, 0.19)))


def test_slo_capacity_is_the_edge_between_a_pass_and_a_fail():
    svc = service()
    target = Target(0.1, 99.0)
    search = SloSearch(requests=6000)
    cap = slo_capacity(svc, 1, 32, 1.0, target, search)
    assert cap > 0
    assert simulate_replica(svc, 1, 32, 1.0, cap, target, search).met
    beyond = simulate_replica(svc, 1, 32, 1.0, cap * (1 + 3 * search.rel_tol), target, search)
    assert not beyond.met  # within a few bracket widths the target breaks


def test_a_request_alone_past_the_slo_has_no_capacity():
    svc = service()
    assert slo_capacity(svc, 1, 32, 1.0, Target(0.005, 99.0), SloSearch()) == 0.0


def test_slo_plan_writes_slo_specs_and_verifies():
    services = {"m": service()}
    demand = Demand("m", 150.0, Target(0.08, 99.0))
    plan = make_plan([demand], services, NODES, PlannerSettings(policy="slo"))
    data = plan.to_dict()
    policies = {r["policy"] for n in data["nodes"] for r in n["replicas"]}
    assert policies and all(p.startswith("slo:max_batch_size=") for p in policies)
    (check,) = verify_plan(plan, services, requests_per_model=12_000, seed=3)
    assert check.met, check.line()


def test_slo_plan_costs_no_more_than_the_dynamic_one_here():
    """slo batches under deadlines where a (1, b) rule must keep its full batch within the
    SLO: on this model and a tight SLO it carries more per core."""
    services = {"m": service()}
    demands = [Demand("m", 150.0, Target(0.05, 99.0))]
    slo = make_plan(demands, services, NODES, PlannerSettings(policy="slo"))
    dynamic = make_plan(demands, services, NODES, PlannerSettings(policy="dynamic"))
    assert slo.cost_per_hour <= dynamic.cost_per_hour


def test_unknown_planner_policy_is_refused():
    with pytest.raises(UserError, match="plans slo or dynamic"):
        PlannerSettings(policy="aimd")


def test_cost_per_million_on_time_is_cost_over_the_targets_on_time_requests():
    services = {"m": service()}
    demand = Demand("m", 100.0, Target(0.1, 95.0))
    plan = make_plan([demand], services, NODES, PlannerSettings(policy="dynamic"))
    expected = plan.cost_per_hour / (100.0 * 0.95 * 3600) * 1e6
    assert plan.cost_per_million_on_time == pytest.approx(expected)
    assert plan.to_dict()["cost_per_million_on_time"] == pytest.approx(expected, rel=1e-5)
    assert on_time_floor(Target(0.1)) == pytest.approx(0.99)  # a mean target: 1% may be shed


def test_catalogue_reads_pay_per_use_prices():
    cat = parse_catalogue(
        {
            "node_types": [
                {"name": "vm", "cores": 4, "memory_gib": 8, "price": "0.2/node-hour"},
                {"name": "fn", "cores": 8, "memory_gib": 16, "price": "0.00001/core-second"},
            ]
        },
        "cat.yaml",
    )
    vm, fn = cat.node_types
    assert vm.billing == "node-hour" and vm.rent_per_hour() == pytest.approx(0.2)
    assert fn.billing == "core-second" and fn.rent_per_hour() == 0.0
    assert fn.replica_per_hour(2) == pytest.approx(2 * 0.036)
    assert fn.node_price_per_hour == pytest.approx(8 * 0.036)


@pytest.mark.parametrize(
    ("node", "fragment"),
    [
        ({"price": "3/banana"}, "node_types[0].price: takes AMOUNT/UNIT"),
        ({"price": "1/core-hour", "price_per_hour": 1}, "not both"),
    ],
)
def test_bad_prices_name_the_field(node, fragment):
    base = {"name": "x", "cores": 4, "memory_gib": 8}
    with pytest.raises(UserError) as err:
        parse_catalogue({"node_types": [{**base, **node}]}, "cat.yaml")
    assert fragment in str(err.value)


def test_pay_per_use_wins_a_load_too_small_for_a_whole_node():
    """A trickle needs one core: a whole 4-core node costs more than one core by the hour."""
    services = {"m": service()}
    cat = Catalogue(
        (
            NodeType("vm", 4, 8.0, 0.40),
            NodeType("fn", 4, 8.0, 0.0, price_per_core_hour=0.15),
        )
    )
    rec = recommend(services["m"], Demand("m", 5.0, Target(0.2, 99.0)), cat)
    assert rec.option.node_type.name == "fn"
    assert rec.cost_per_hour == pytest.approx(0.15 * rec.option.cores * rec.replicas)
    assert "per million on-time requests" in rec.line()
    plan = make_plan([Demand("m", 5.0, Target(0.2, 99.0))], services, cat)
    assert plan.cost_per_hour == pytest.approx(rec.cost_per_hour)
    assert {n["billing"] for n in plan.to_dict()["nodes"]} == {"core-second"}


def test_a_plan_served_via_ray_leaves_the_path_its_overhead():
    services = {"m": service()}
    demand = Demand("m", 60.0, Target(0.2, 99.0))
    via_ray = make_plan([demand], services, NODES, PlannerSettings(path=PATHS["ray"]))
    (model,) = via_ray.to_dict()["models"]
    assert model["slo_ms"] == pytest.approx(200.0)  # the client's SLO, as given
    assert model["server_slo_ms"] == pytest.approx(200.0 - 80.0)  # less Ray's p99
    assert via_ray.demands[0].target.slo_s == pytest.approx(0.12)
    # Predicted latency is the client's: the replica's own plus the path's p99.
    replica = via_ray.to_dict()["nodes"][0]["replicas"][0]
    server_ms = via_ray.nodes[0].replicas[0].predicted_latency_s * 1e3
    assert replica["predicted_latency_ms"] == pytest.approx(server_ms + 80.0, abs=1e-3)
    (check,) = verify_plan(via_ray, services, requests_per_model=8000)
    assert check.met and check.target.slo_s == pytest.approx(0.12)


@pytest.mark.parametrize(
    ("name", "overhead", "fragment"),
    [
        ("grpc", None, "--serve-via must be one of"),
        ("ray", "5", "MEAN_MS,P99_MS"),
        ("ray", "9,3", "0 <= mean <= p99"),
    ],
)
def test_bad_serving_paths_are_refused(name, overhead, fragment):
    with pytest.raises(UserError, match=fragment):
        serving_path(name, overhead)


def test_the_server_reads_its_share_of_the_slo_from_the_plan(tmp_path):
    from qosbatch.planner.files import read_plan_models, write_plan

    services = {"m": service()}
    plan = make_plan(
        [Demand("m", 60.0, Target(0.2, 99.0))], services, NODES, PlannerSettings(path=PATHS["ray"])
    )
    write_plan(plan, tmp_path / "plan.yaml")
    (model,) = read_plan_models(tmp_path / "plan.yaml")
    assert model.slo_ms == pytest.approx(120.0)  # the replica's deadline: SLO less Ray's p99
    assert model.policy.startswith("slo:max_batch_size=")

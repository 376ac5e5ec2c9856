"""Users' own policies from the CLI: ``module:Class[:knob=v,...]``, checked before use."""

from __future__ import annotations

import textwrap

import pytest

from conftest import assert_one_line_error, make_profile, run_cli
from qosbatch.core.errors import UserError
from qosbatch.core.profile import save_profile
from qosbatch.policies.registry import parse_policy, parse_policy_list
from qosbatch.sim.check import checked

MODULE = '''
from qosbatch.policies.base import Dispatch


class Greedy:
    """Everything waiting, at once, on a whole worker: a legal, simple policy."""

    name = "greedy"

    def __init__(self, most: int = 4) -> None:
        if most < 1:
            raise ValueError("most must be >= 1")
        self.most = most

    def decide(self, view):
        worker = view.idle_worker()
        if worker is None or not len(view) or view.free_cores < worker.cores:
            return []
        return [Dispatch(view.fifo(self.most), worker.id, worker.cores)]

    def observe(self, done):
        pass


class Twice(Greedy):
    """Names its first request twice: the contract's check refuses it."""

    def decide(self, view):
        out = super().decide(view)
        if out:
            out[0].requests = [*out[0].requests, out[0].requests[0]]
        return out


NOT_A_CLASS = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mypolicies.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mypolicies"


def test_a_users_policy_runs_in_simulate_with_its_knobs(user_module, tmp_path, amdahl_law):
    profile = tmp_path / "p.json"
    save_profile(make_profile(amdahl_law, name="m"), profile)
    result = run_cli(
        "simulate", "--profile", profile, "--workload", "poisson:rate=20,requests=300,slo_ms=500",
        "--policy", f"{user_module}:Greedy:most=8,slo", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{user_module}:Greedy:most=8" in result.output and '"policy": "slo"' in result.output


def test_a_users_policy_that_breaks_the_contract_is_refused_before_use(user_module):
    with pytest.raises(UserError, match=r"policy mypolicies:Twice refused: .*not waiting"):
        checked(parse_policy(f"{user_module}:Twice"))
    assert checked(parse_policy(f"{user_module}:Greedy")).name == "mypolicies:Greedy"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("nosuchmodule:Thing", "no module 'nosuchmodule'"),
        ("mypolicies:Nope", "has no 'Nope'"),
        ("mypolicies:NOT_A_CLASS", "is a int, not a class"),
        ("mypolicies:Greedy:size=3", "has no knob 'size'; its knobs are most"),
        ("mypolicies:Greedy:most=many", "most must be an integer"),
        ("mypolicies:Greedy:most=0", "building it failed: ValueError('most must be >= 1')"),
    ],
)
def test_a_bad_user_policy_spec_is_one_clear_error(user_module, spec, fragment):
    with pytest.raises(UserError, match=None) as info:
        parse_policy(spec)
    assert fragment in str(info.value)


def test_user_specs_mix_with_ours_in_a_list(user_module):
    specs = parse_policy_list(f"slo,{user_module}:Greedy:most=2,dynamic:max_batch_size=4")
    assert [s.label for s in specs] == [
        "slo",
        "mypolicies:Greedy:most=2",
        "dynamic:max_batch_size=4",
    ]


def test_the_cli_refuses_a_broken_user_policy_in_one_line(user_module, tmp_path, amdahl_law):
    profile = tmp_path / "p.json"
    save_profile(make_profile(amdahl_law, name="m"), profile)
    result = run_cli(
        "simulate", "--profile", profile, "--workload", "poisson:rate=20,requests=100,slo_ms=500",
        "--policy", f"{user_module}:Twice",
    )  # fmt: skip
    assert_one_line_error(result, "mypolicies:Twice refused")

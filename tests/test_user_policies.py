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


def test_serve_refuses_a_broken_user_policy_before_it_starts(user_module):
    result = run_cli("serve", "--model", "noop", "--policy", f"{user_module}:Twice", "--port", 0)
    assert_one_line_error(result, "mypolicies:Twice refused")


def test_train_refuses_a_bad_user_policy_before_training(user_module, tmp_path, amdahl_law):
    profile = tmp_path / "p.json"
    save_profile(make_profile(amdahl_law, name="m"), profile)
    out = tmp_path / "a.zip"
    for args, fragment in [
        (["--policy", f"{user_module}:Twice"], "mypolicies:Twice refused"),
        (["--policy", f"{user_module}:Greedy:most=x"], "most must be an integer"),
        (["--policy", f"{user_module}:Greedy", "--eval-runs", 0], "needs --eval-runs >= 1"),
    ]:
        assert_one_line_error(run_cli("train", "--profile", profile, *args, "-o", out), fragment)
        assert not out.exists()  # refused before a step of training


def test_train_judges_the_agent_against_a_users_policy(user_module, tmp_path, amdahl_law):
    profile = tmp_path / "p.json"
    save_profile(make_profile(amdahl_law, name="m"), profile)
    workload = "mmpp:rates=20/120,switch_s=2/1,duration_s=10,slo=netdelay,base_ms=120,delay_ms=20"
    result = run_cli(
        "train", "--profile", profile, "--steps", 100, "--workload", workload, "--eval-runs", 1,
        "--policy", f"{user_module}:Greedy:most=8", "-o", tmp_path / "a.zip",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "mypolicies:Greedy:most=8" in line)
    utility, attainment = (float(cell) for cell in row.split("│")[2:4])
    assert utility > 0 and 50 < attainment <= 100  # a working policy, scored beside the agent
    assert "agent / slo utility" in result.output

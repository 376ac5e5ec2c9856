"""The learning scheduler: environment, action mapping, knob policy, agent files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from qosbatch.core.errors import UserError
from qosbatch.core.profile import save_profile
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.knobs import KnobPolicy, KnobRange, to_all_knobs, to_knobs
from qosbatch.rl.env import BatchingEnv, Scheduled
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import peak_cores
from qosbatch.workloads.trace import Trace
from tests.conftest import assert_one_line_error, make_profile, run_cli

WORKLOAD = "mmpp:rates=20/120,switch_s=2/1,duration_s=20,slo=netdelay,base_ms=120,delay_ms=20"


def law(b, c):
    return (0.010 * b + 0.004) / c + 0.001 * b + 0.002


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("rl") / "synthetic.json"
    save_profile(make_profile(law), path)
    return path


@pytest.fixture(scope="module")
def agent(profile_path, tmp_path_factory):
    from qosbatch.core.profile import load_profile
    from qosbatch.rl.train import train

    out = tmp_path_factory.mktemp("agent") / "agent.zip"
    result = train([load_profile(profile_path)], [WORKLOAD], 300, out, instances=2, seed=3)
    assert result.path == out and out.is_file()
    assert result.episode_returns  # 20 s episodes of 0.5 s steps: several finished
    return out


def test_environment_passes_the_gymnasium_checker():
    table = LatencyTable.from_function(law, 32, 2)
    env = BatchingEnv([Scheduled("m", table, 2)], [WORKLOAD])
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=5)
    assert env.observation_space.contains(obs)
    total, steps = 0.0, 0
    while True:
        obs, reward, done, _, _ = env.step(env.action_space.sample())
        total += reward
        steps += 1
        if done:
            break
    assert 30 <= steps <= 45  # one decision per 0.5 s of a 20 s workload
    env.close()


def test_an_episode_is_deterministic_for_a_seed():
    table = LatencyTable.from_function(law, 32, 2)

    def rollout():
        env = BatchingEnv([Scheduled("m", table, 2)], [WORKLOAD])
        env.reset(seed=11)
        out, done = [], False
        while not done:
            _, reward, done, _, _ = env.step(np.array([0.2, -0.3], np.float32))
            out.append(reward)
        return out

    assert rollout() == rollout()


def test_the_action_mapping_covers_every_batch_size_and_concurrency():
    grid = np.linspace(-1, 1, 2001)
    seen = {to_knobs((a, c), 32, 3) for a in grid for c in (-1.0, 0.0, 1.0)}
    assert {b for b, _ in seen} == set(range(1, 33))
    assert {k for _, k in seen} == {1, 2, 3}
    assert to_knobs((-5, 9), 32, 3) == (1, 3)  # clipped
    ranges = [KnobRange("a", 32, 2), KnobRange("b", 8, 3)]
    assert to_all_knobs((-1, -1, 1, 1), ranges) == [(1, 1), (8, 3)]  # two numbers per model


def test_knob_policy_accounts_for_every_request_and_keeps_to_its_knobs():
    table = LatencyTable.from_function(law, 32, 2)
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.exponential(1 / 60, 2000))
    trace = Trace.of(times, 150.0, "m")
    asks = []

    def controller(obs, stats):
        asks.append(obs)
        return 4, 1  # batches of up to 4 on the first instance only

    policy = KnobPolicy(lambda obs, stats: [controller(obs, stats)], [KnobRange("m", 32, 2)])
    res = simulate(trace, [Deployment("m", table, 2, 2)], lambda rng: policy)
    r = res.records
    assert len(r) == 2000  # every request ended (strict mode raises otherwise)
    assert r.batch_size.max() <= 4
    assert set(r.worker[r.worker >= 0].tolist()) == {0}
    assert set(r.cores[r.worker >= 0].tolist()) == {2}  # one instance: the model's 2 cores
    assert len(asks) >= times[-1] / 0.5 - 1
    assert all(len(o) == 7 for o in asks)


def test_a_trained_agent_loads_and_acts_in_simulate(agent, profile_path):
    result = run_cli(
        "simulate", "--profile", profile_path, "--policy", f"rl:{agent},slo",
        "--workload", WORKLOAD, "--workers", 2, "--cores", 2, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["policy"] == f"rl:agent={agent}"
    assert rows[0]["requests"] == rows[0]["on_time"] + rows[0]["late"] + rows[0]["rejected"] > 0
    assert rows[0]["mean_batch"] >= 1


def test_one_agent_policy_per_run_serves_every_model(agent):
    from qosbatch.policies.registry import parse_policy

    spec = parse_policy(f"rl:{agent}")
    run = spec.factory()
    first, second = run(np.random.default_rng(0)), run(np.random.default_rng(1))
    assert first is second  # the models of a run share it: the agent sees all their queues
    assert spec.factory()(np.random.default_rng(0)) is not first  # a new run starts afresh


def test_agent_files_that_are_missing_corrupt_or_foreign_are_refused(agent, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as z:
        z.writestr("data", "{}")
    for path, fragment in (
        (tmp_path / "nope.zip", "agent file not found"),
        (junk, "not a zip archive"),
        (bare, "not a qosbatch agent"),
    ):
        result = run_cli("simulate", "--profile", "x.json", "--policy", f"rl:{path}",
                         "--workload", WORKLOAD)  # fmt: skip
        assert_one_line_error(result, fragment)


def test_an_agent_for_another_model_is_refused(agent, tmp_path):
    other = tmp_path / "other.json"
    save_profile(make_profile(law, name="other-model"), other)
    result = run_cli(
        "simulate", "--profile", other, "--policy", f"rl:{agent}", "--workload", WORKLOAD,
    )  # fmt: skip
    assert_one_line_error(result, "trained for model 'synthetic', not 'other-model'")
    old = tmp_path / "old.zip"  # a file of the one-model format, before agents had models
    with zipfile.ZipFile(agent) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "qosbatch.json":
                meta = json.loads(data)
                meta.update(schema="qosbatch.agent", model="synthetic")
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    result = run_cli("simulate", "--profile", other, "--policy", f"rl:{old}",
                     "--workload", WORKLOAD)  # fmt: skip
    assert_one_line_error(result, "older qosbatch")


def test_train_cli_refuses_bad_arguments(profile_path, tmp_path):
    out = tmp_path / "a.zip"
    second = tmp_path / "n.json"
    save_profile(make_profile(law, name="n"), second)
    cases = [
        (["--profile", profile_path, "--profile", second, "--node-cores", 1], "fewer than the 2"),
        (["--profile", profile_path, "--profile", profile_path], "profiled twice"),
        (["--profile", profile_path, "--steps", 5], "--steps"),
        (["--profile", profile_path, "--workload", "bogus:x=1"], "bogus"),
        (["--profile", tmp_path / "missing.json"], "missing.json"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli("train", *args, "-o", out), fragment)


def test_serve_refuses_an_agent_trained_for_another_model(agent):
    result = run_cli("serve", "--model", "noop", "--policy", f"rl:{agent}", "--port", 0)
    assert_one_line_error(result, "trained for model 'synthetic', not 'noop'")


def test_training_is_deterministic_for_a_seed(profile_path, tmp_path):
    from stable_baselines3 import SAC

    from qosbatch.core.profile import load_profile
    from qosbatch.rl.train import train

    profile = load_profile(profile_path)
    runs = [train([profile], [WORKLOAD], 200, tmp_path / f"a{i}.zip", instances=2, seed=5)
            for i in range(2)]  # fmt: skip
    assert runs[0].episode_returns == runs[1].episode_returns
    a, b = (SAC.load(r.path, device="cpu").policy.state_dict() for r in runs)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


# ---- one agent for several models -------------------------------------------------------

TWO = (
    "mmpp:rates=30/120,switch_s=2/1,duration_s=20,model=m/n,mix=0.6/0.4,"
    "slo=netdelay,base_ms=150,delay_ms=20"
)


def two_models():
    return [
        Scheduled("m", LatencyTable.from_function(law, 32, 2), 2),
        Scheduled("n", LatencyTable.from_function(lambda b, c: 2 * law(b, c), 32, 2), 2),
    ]


def test_a_two_model_environment_passes_the_checker_and_acts_per_model():
    env = BatchingEnv(two_models(), [TWO], node_cores=2)
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (14,) and env.action_space.shape == (4,)
    env.reset(seed=2)
    done, steps = False, 0
    while not done:
        _, _, done, _, _ = env.step(np.array([-1, -1, 1, 1], np.float32))
        steps += 1
    assert 30 <= steps <= 45
    env.close()
    with pytest.raises(UserError, match="model 'x', which is not trained here"):
        BatchingEnv(two_models(), ["poisson:rate=10,duration_s=5,slo_ms=100,model=x"])


def test_the_knob_policy_asks_once_for_all_models_and_each_keeps_its_knobs():
    from qosbatch.workloads import parse_workload

    trace = parse_workload(TWO).generate(np.random.default_rng(1))
    asks = []

    def controller(obs, stats):
        asks.append((len(obs), len(stats)))
        return [(1, 1), (4, 2)]  # m: batches of 1 on its first instance; n: up to 4 on both

    policy = KnobPolicy(controller, [KnobRange("m", 32, 2), KnobRange("n", 32, 2)])
    deps = [s.deployment() for s in two_models()]
    r = simulate(trace, deps, lambda rng: policy, seed=1, node_cores=2).records
    assert len(r) == len(trace)
    assert set(asks) == {(14, 2)} and len(asks) >= trace.duration_s / 0.5 - 1
    m, n = (r.where((r.model == i) & (r.worker >= 0)) for i in (0, 1))
    assert m.batch_size.max() == 1 and set(m.worker.tolist()) == {0}
    assert n.batch_size.max() <= 4 and set(n.worker.tolist()) == {0, 1}
    assert set(n.cores.tolist()) == {1}  # two instances split 2 cores
    assert set(m.cores.tolist()) == {1, 2}  # one instance: both cores, or what n leaves
    assert peak_cores(r) == 2  # the two share 2 cores: at no moment do they hold more


@pytest.fixture(scope="module")
def two_model_agent(profile_path, tmp_path_factory):
    other = tmp_path_factory.mktemp("rl2") / "n.json"
    save_profile(make_profile(lambda b, c: 2 * law(b, c), name="n"), other)
    out = tmp_path_factory.mktemp("agent2") / "two.zip"
    result = run_cli(
        "train", "--profile", profile_path, "--profile", other, "--steps", 300, "--seed", 1,
        "--workload", TWO.replace("model=m/n", "model=synthetic/n"), "--eval-runs", 1, "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, other, result.output


def test_one_agent_trains_for_two_models_and_acts_for_both(two_model_agent, profile_path):
    from qosbatch.policies.learned import read_info

    out, other, printed = two_model_agent
    info = read_info(out)
    assert info.models == ("synthetic", "n") and info.instances == (2, 2) and info.node_cores == 2
    assert "agent / tuned dynamic utility" in printed and "dynamic per model" in printed
    workload = TWO.replace("model=m/n", "model=synthetic/n")
    result = run_cli(
        "simulate", "--profile", profile_path, "--profile", other, "--policy", f"rl:{out},slo",
        "--workload", workload, "--workers", 2, "--cores", 2, "--share-cores", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["requests"] == rows[0]["on_time"] + rows[0]["late"] + rows[0]["rejected"] > 0
    # One of its models alone is fine (the other looks idle); a model it never saw is not.
    alone = run_cli("simulate", "--profile", other, "--policy", f"rl:{out}", "--workers", 2,
                    "--cores", 2,
                    "--workload", "poisson:rate=20,duration_s=5,slo_ms=200")  # fmt: skip
    assert alone.exit_code == 0, alone.output
    foreign = other.with_name("foreign.json")
    save_profile(make_profile(law, name="foreign"), foreign)
    result = run_cli("simulate", "--profile", foreign, "--policy", f"rl:{out}",
                     "--workload", "poisson:rate=20,duration_s=5,slo_ms=200")  # fmt: skip
    assert_one_line_error(result, "trained for model 'synthetic', 'n', not 'foreign'")


@pytest.mark.slow
def test_one_agent_serves_two_models_live(tmp_path):
    """serve --policy rl:two.zip: both models answered through the one agent."""
    import urllib.request

    from qosbatch.core.profile import load_profile
    from qosbatch.rl.train import train
    from qosbatch.testing import running_server

    paths = []
    for name in ("noop", "small-cnn"):
        paths.append(tmp_path / f"{name}.json")
        save_profile(make_profile(law, name=name), paths[-1])
    workload = TWO.replace("model=m/n", "model=noop/small-cnn")
    agent = tmp_path / "two.zip"
    train([load_profile(p) for p in paths], [workload], 200, agent, instances=1, seed=0)
    args = ["serve", "--model", "noop", "--model", "small-cnn", "--profile", paths[0],
            "--profile", paths[1], "--cores", 2, "--share-cores",
            "--policy", f"rl:{agent}", "--slo", "500ms", "--port", 0]  # fmt: skip
    with running_server(args) as url:
        for model in ("noop", "small-cnn"):
            with urllib.request.urlopen(f"{url}/v2/models/{model}", timeout=30) as r:
                shape = json.loads(r.read())["inputs"][0]["shape"]
            shape = [1 if d == -1 else d for d in shape]
            body = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                                "data": [0.5] * int(np.prod(shape))}]}  # fmt: skip
            for _ in range(3):
                req = urllib.request.Request(
                    f"{url}/v2/models/{model}/infer", json.dumps(body).encode(), method="POST"
                )
                with urllib.request.urlopen(req, timeout=30) as r:
                    assert r.status == 200 and json.loads(r.read())["outputs"]
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
            metrics = r.read().decode()
    for model in ("noop", "small-cnn"):
        line = next(x for x in metrics.splitlines()
                    if x.startswith(f'qosbatch_batch_size_count{{model="{model}"}}'))  # fmt: skip
        assert float(line.rsplit(" ", 1)[1]) >= 1  # its batches ran

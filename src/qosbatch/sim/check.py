"""``check_policy``: run any policy through small scenarios and report broken contracts.

Like Stable-Baselines3's env checker: a user writing a policy runs it through
this before trusting it. Each scenario is a short simulation in strict mode,
where the simulator raises at the first broken rule (a request dispatched twice,
a wait in the past, a dispatch to a busy worker or on more cores than are free,
a request neither dispatched nor rejected by the end); the records are then
checked for order in time. It drives the simulator, so it lives beside it, a
layer above the policies it checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.core.requests import REJECTED, RecordTable
from qosbatch.latency.amdahl import AmdahlModel
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.base import PolicyContractError, PolicyFactory
from qosbatch.policies.registry import PolicySpec, is_user_policy, parse_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads.trace import Trace


@dataclass
class CheckReport:
    """What broke, scenario by scenario; empty ``problems`` means the policy passed."""

    scenarios: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"policy passed {len(self.scenarios)} scenarios: {', '.join(self.scenarios)}"
        return "policy broke its contract:\n" + "\n".join(f"- {p}" for p in self.problems)


def check_policy(
    policy_factory: PolicyFactory | str, raise_on_error: bool = False, seed: int = 0
) -> CheckReport:
    """Run the scenarios; return a report, or raise PolicyContractError if asked to."""
    factory = (
        parse_policy(policy_factory).factory()
        if isinstance(policy_factory, str)
        else policy_factory
    )
    report = CheckReport()
    for name, scenario in _scenarios(seed).items():
        report.scenarios.append(name)
        try:
            problem = scenario(factory)
        except PolicyContractError as exc:
            problem = str(exc)
        except Exception as exc:  # a user's policy may raise anything; report it, do not crash
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem:
            report.problems.append(f"{name}: {problem}")
    if raise_on_error and not report.ok:
        raise PolicyContractError(str(report))
    return report


def checked(spec: PolicySpec) -> PolicySpec:
    """``spec``, once a user's policy (``module:Class``) has passed every scenario.

    Ours are checked by the test suite; a user's is checked before the CLI uses it,
    so a policy that breaks the contract is refused with the reason at start, not
    found out by the requests it would strand mid-run.
    """
    if is_user_policy(spec.name):
        report = check_policy(spec.factory())
        if not report.ok:
            raise UserError(f"policy {spec.label} refused: " + "; ".join(report.problems))
    return spec


Scenario = Callable[[PolicyFactory], str]


def _scenarios(seed: int) -> dict[str, Scenario]:
    rng = np.random.default_rng(seed)
    # An AlexNet-like law (qosbatch.testing's example): a real batching gain, 4 cores.
    law = AmdahlModel(alpha=0.0141, beta=0.0, gamma=0.0026, delta=0.0124)
    table = LatencyTable.from_model(law, 64, 4, 0.05)

    def run(trace: Trace, cores: int, workers: int) -> Callable[[PolicyFactory], str]:
        def scenario(factory: PolicyFactory) -> str:
            dep = Deployment(trace.models[0], table, cores, workers)
            records = simulate(trace, [dep], factory, seed=seed, strict=True).records
            return _check_records(records)

        return scenario

    poisson = np.cumsum(rng.exponential(1 / 60, 300))
    burst = np.concatenate([np.zeros(40), np.full(40, 0.5)])
    hopeless_slo = np.where(rng.uniform(size=200) < 0.3, 1.0, 150.0)
    priorities = rng.integers(0, 3, 200)
    prio_trace = Trace.of(np.cumsum(rng.exponential(1 / 80, 200)), 120.0)
    prio_trace = Trace(prio_trace.time_s, prio_trace.model, ("m",), prio_trace.slo_ms, priorities)
    return {
        "poisson, one worker": run(Trace.of(poisson, 150.0), 2, 1),
        "simultaneous bursts, two workers": run(
            Trace.of(burst, rng.uniform(40, 400, len(burst))), 2, 2
        ),
        "hopeless budgets mixed in": run(
            Trace.of(np.cumsum(rng.exponential(1 / 50, 200)), hopeless_slo), 2, 1
        ),
        "priorities, four workers": run(prio_trace, 4, 4),
        "overload (5x capacity)": run(
            Trace.of(np.cumsum(rng.exponential(1 / 500, 400)), 100.0), 2, 2
        ),
        "sparse arrivals": run(Trace.of(np.cumsum(rng.exponential(2.0, 20)), 80.0), 1, 1),
    }


def _check_records(records: RecordTable) -> str:
    served = records.outcome != REJECTED
    if np.any(records.dispatch_s[served] < records.arrival_s[served] - 1e-12):
        return "a request was dispatched before it arrived"
    if np.any(records.completion_s < records.arrival_s - 1e-12):
        return "a request was answered before it arrived"
    if np.any(records.reason[~served] == ""):
        return "a rejection without a reason"
    return ""

"""Scheduling policies behind one interface (``base``), pure and clock-free.

``single``, ``fixed``, ``dynamic`` and ``aimd`` behave as the peers do, with the
peers' knob names; ``slo`` is ours. Build one from a spec string with
``parse_policy("dynamic:max_batch_size=16,max_queue_delay_ms=5").factory()``, or
check a policy of your own with ``qosbatch.sim.check.check_policy``
(the simulator runs it, so it lives a layer up).
"""

from qosbatch.policies.base import (
    CompletedBatch,
    Decision,
    Dispatch,
    Policy,
    PolicyContractError,
    PolicyFactory,
    QueueView,
    Reject,
    Wait,
    WorkerView,
)
from qosbatch.policies.registry import POLICIES, PolicySpec, parse_policy, parse_policy_list

__all__ = [
    "POLICIES",
    "CompletedBatch",
    "Decision",
    "Dispatch",
    "Policy",
    "PolicyContractError",
    "PolicyFactory",
    "PolicySpec",
    "QueueView",
    "Reject",
    "Wait",
    "WorkerView",
    "parse_policy",
    "parse_policy_list",
]

"""The M/G(a,b)/1/N queueing model of dynamic batching (BatOpt), solved numerically.

Pure numpy/scipy: no torch, no I/O. ``solve`` predicts mean latency, blocking,
throughput and memory for one configuration in milliseconds; ``optimize_ab``
and ``max_rate`` turn it into choices for the policies and the planner.
"""

from qosbatch.queueing.optimize import Choice, choose_ab, max_rate, optimize_ab, solve_all
from qosbatch.queueing.service import FAMILIES, ServiceTime
from qosbatch.queueing.solver import KappaTable, QueueResult, solve, solve_many

__all__ = [
    "FAMILIES",
    "Choice",
    "KappaTable",
    "QueueResult",
    "ServiceTime",
    "choose_ab",
    "max_rate",
    "optimize_ab",
    "solve",
    "solve_all",
    "solve_many",
]

"""Workloads: arrival processes, per-request SLOs, spec strings and the trace CSV.

Pure numpy; reading and writing the trace CSV (and a ``trace:`` spec reading one)
is the only I/O.
"""

from qosbatch.workloads.spec import WorkloadSpec, parse_workload
from qosbatch.workloads.trace import Trace, read_trace, write_trace

__all__ = ["Trace", "WorkloadSpec", "parse_workload", "read_trace", "write_trace"]

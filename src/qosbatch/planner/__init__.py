"""The planner: the cheapest configuration that meets every model's latency SLO.

- ``capacity``: the rate one replica carries within a mean or percentile target
  (queueing model; percentiles through a tail factor calibrated on the simulator,
  ``targets``);
- ``options``: every (node type, cores, batch setting) of a model, priced by that
  capacity, dominated ones dropped;
- ``milp``: replicas per option and nodes per type at the least cost per hour
  (scipy.optimize.milp, HiGHS), packed onto whole nodes;
- ``plan`` / ``recommend``: the plan file, and the one-line answer for one model.

The math here does no I/O and imports no torch; ``files`` reads and writes the
YAML, and ``verify`` / ``calibrate`` drive the simulator (imported on demand).
docs/planner.md explains the method and its numbers.
"""

from qosbatch.planner.capacity import Curve
from qosbatch.planner.catalogue import Catalogue, NodeType, parse_catalogue
from qosbatch.planner.milp import Allocation, allocate
from qosbatch.planner.options import BatchSetting, Demand, Option, enumerate_options
from qosbatch.planner.plan import Plan, PlannerSettings, make_plan
from qosbatch.planner.recommend import Recommendation, recommend
from qosbatch.planner.service import ModelService
from qosbatch.planner.targets import TAIL_FACTORS, Target, tail_factor

__all__ = [
    "TAIL_FACTORS",
    "Allocation",
    "BatchSetting",
    "Catalogue",
    "Curve",
    "Demand",
    "ModelService",
    "NodeType",
    "Option",
    "Plan",
    "PlannerSettings",
    "Recommendation",
    "Target",
    "allocate",
    "enumerate_options",
    "make_plan",
    "parse_catalogue",
    "recommend",
    "tail_factor",
]

"""The discrete-event simulator (virtual time, no I/O) and capacity search on top of it."""

from qosbatch.sim.frontend import FrontEnd
from qosbatch.sim.kernel import LEFT_WAITING, Deployment, SimResult, simulate

__all__ = ["LEFT_WAITING", "Deployment", "FrontEnd", "SimResult", "simulate"]

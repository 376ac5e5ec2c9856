"""The build: plain Python, unless QOSBATCH_COMPILE=1 asks for the compiled hot path.

Everything about the package lives in pyproject.toml; this file only adds the
extension modules. With ``QOSBATCH_COMPILE=1`` mypyc compiles the simulator's
event loop, the model queue and the ``slo`` policy from their very Python
source to C (as black and mypy ship themselves): the same decisions, bit for
bit, about twice as fast (docs/simulator.md). ``make compiled`` builds it into
``build/compiled``, apart from the editable install, so that an edited ``.py``
is never shadowed by a stale compiled module.
"""

import os

from setuptools import setup

# The modules a simulation spends its time in; each must stay mypyc-compilable.
HOT_PATH = [
    "src/qosbatch/sim/kernel.py",
    "src/qosbatch/sim/state.py",
    "src/qosbatch/sim/service.py",
    "src/qosbatch/engine/queue.py",
    "src/qosbatch/policies/slo.py",
    "src/qosbatch/policies/slo_choose.py",
    "src/qosbatch/policies/slo_cores.py",
    "src/qosbatch/policies/slo_plan.py",
    "src/qosbatch/policies/slo_shed.py",
]

ext_modules = []
if os.environ.get("QOSBATCH_COMPILE") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent", *HOT_PATH],
        opt_level="3",
        group_name="qosbatch_hot",
    )

setup(ext_modules=ext_modules)

"""qosbatch: QoS-aware automated batch inference of deep learning models.

Layers, from the bottom (imports point down only):

- ``core``: plain data shared by everything (the profile schema, errors).
- ``latency``: pure latency models fitted to a profile (no torch).
- ``models``: the model zoo, user-supplied models and the inference backends.
- ``profiling``: measures a model over batch sizes and core counts (I/O, torch).
- ``cli``: thin typer commands over the above.
"""

__version__ = "0.1.0"

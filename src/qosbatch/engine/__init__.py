"""The driver core, below both clocks: what the simulator and the live batcher share.

A driver (``qosbatch.sim`` in virtual time, ``qosbatch.serve`` in real time) owns one
``ModelQueue`` per model: it pushes arrivals, asks the policy, and applies its
decisions with ``apply_decisions``, so that a policy meets one set of rules and one
set of bookkeeping whichever clock drives it. Policies see the queue only as their
read-only ``QueueView`` and import nothing from here.
"""

"""Offline batch inference jobs: N samples by a deadline at the least pay-per-use cost.

- ``plan``: pure; picks node type, node count, cores, batch size and workers per
  node from a profile's latency table and the node catalogue;
- ``inputs`` / ``layout``: what a job reads (memory-mapped .npy, folders) and the
  resumable output folder it writes (atomic parts, a manifest);
- ``runner``: runs a job on this machine with a backend from ``qosbatch.models``,
  adapting batch size and cores when measured batch times drift from the profile;
- ``ray_runner``: the same job on Ray Data, past one machine.

docs/jobs.md explains the method and its measured accuracy.
"""

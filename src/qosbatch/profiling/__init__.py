"""Measuring: a model's batch latency over (batch, cores), and a node's compute power."""

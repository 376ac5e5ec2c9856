"""The model zoo: common vision and small models, defined here with seeded random weights.

Nothing is downloaded: latency depends on the architecture and the tensor
shapes, not on the values of trained weights, so seeded random weights give the
same timings and the same outputs in every process that builds the model.
This module names the models and their input shapes without importing torch
(the server's front end resolves names here and stays free of torch: measured,
torch's objects in a process made each full garbage collection a 100 ms pause);
the architectures live in ``qosbatch.models.nets``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_SEED = 0


@dataclass(frozen=True)
class ZooEntry:
    name: str
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    summary: str


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("alexnet", (3, 224, 224), "AlexNet (2012), ImageNet-sized"),
        ZooEntry("resnet18", (3, 224, 224), "ResNet-18, ImageNet-sized"),
        ZooEntry("resnet50", (3, 224, 224), "ResNet-50, ImageNet-sized"),
        ZooEntry("mobilenet", (3, 224, 224), "MobileNetV2 1.0, ImageNet-sized"),
        ZooEntry("mlp", (784,), "3-layer perceptron on 28x28 inputs"),
        ZooEntry("wide-mlp", (784,), "4-layer 4096-wide perceptron: memory-bound at batch 1"),
        ZooEntry("small-cnn", (3, 32, 32), "2-conv CNN on 32x32 inputs"),
        ZooEntry("noop", (4,), "identity on 4 floats, for serving overhead"),
    ]
}


def build_zoo_model(name: str, seed: int = DEFAULT_SEED) -> Any:
    """The named model (a torch module) in eval mode, the same weights for the same seed."""
    import torch

    from qosbatch.models.nets import BUILDERS

    build = BUILDERS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    return model.eval()

"""Counting a model's work: FLOPs per sample and parameters.

FLOPs come from torch's ``FlopCounterMode``, which counts matrix multiplies and
convolutions at 2 FLOPs per multiply-accumulate (papers often quote MACs:
divide by 2 to compare). Element-wise work (ReLU, batch norm, pooling) is not
counted; it is part of what the processing density p absorbs.
"""

from __future__ import annotations

from typing import Any


def count_flops_per_sample(module: Any, input_shape: tuple[int, ...]) -> float | None:
    """FLOPs of one sample's forward pass, or None if the model cannot be traced."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    batch = 2  # batch 2 avoids ops that special-case a batch of one
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            module(torch.zeros((batch, *input_shape)))
    except Exception:
        return None
    total = counter.get_total_flops()
    return float(total) / batch if total else None


def count_params(module: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in module.parameters()))
    except Exception:
        return None

"""Optimizer construction shared by every trained model.

PyTorch's default Adam on CPU updates one parameter tensor at a time with a chain of small
kernels; the fused implementation does the whole update in one pass. Measured on 2 CPU cores
(torch 2.13): 0.35 s -> 0.014 s per step for Mult-VAE's 49M Gowalla weights, 2.6 -> 0.28 ms for
a CFGAN generator. The result is the same algorithm (Adam, Kingma & Ba 2015).
"""
from __future__ import annotations

from typing import Iterable

import torch


def adam(params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
         weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam, fused when every parameter is a floating tensor on CPU or CUDA."""
    params = list(params)
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fusable or None)

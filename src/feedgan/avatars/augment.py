"""Differentiable augmentation (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN
Training", NeurIPS 2020) for D's inputs.

The same random transforms are applied to real and generated images before D sees them, and
every operation is differentiable, so G's gradient flows through them. D then cannot memorise
the few thousand training images, which is what makes GANs train on small datasets at all. The
policy is a comma-separated list of ``color``, ``translation`` and ``cutout``.

Randomness comes from torch's global generator, which :class:`feedgan.gan.GANTrainer` seeds,
checkpoints and restores inside ``fit``, so runs stay reproducible and resumable.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

OPS = ("color", "translation", "cutout")


def parse_policy(policy: str | None) -> tuple[str, ...]:
    ops = tuple(p.strip() for p in (policy or "").split(",") if p.strip())
    bad = [p for p in ops if p not in OPS]
    if bad:
        raise ValueError(f"unknown augmentation {', '.join(bad)}; choose from {', '.join(OPS)}")
    return ops


def diff_augment(x: torch.Tensor, ops: tuple[str, ...]) -> torch.Tensor:
    """``x`` (B, C, H, W) in [-1, 1] with each op of ``ops`` applied, fresh randomness per image."""
    for op in ops:
        x = _FUNCS[op](x)
    return x


def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2 around the pixel mean) and contrast (x0.5..1.5)."""
    x = x + _uniform(x, -0.5, 0.5)
    if x.shape[1] > 1:
        mean = x.mean(1, keepdim=True)
        x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by a whole number of pixels, up to ``ratio`` of its size, filling with zeros."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (b,), device=x.device)
    tx = torch.randint(-sx, sx + 1, (b,), device=x.device)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * tx / w  # output pixel (i, j) reads input (i - ty, j - tx)
    theta[:, 1, 2] = -2.0 * ty / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of ``ratio`` times the image side per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    dy, dx = ys - cy + ch // 2, xs - cx + cw // 2  # position inside the square when in [0, side)
    inside = (dy >= 0) & (dy < ch) & (dx >= 0) & (dx < cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_FUNCS = {"color": color, "translation": translation, "cutout": cutout}

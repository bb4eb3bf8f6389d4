"""Image grids and single PNGs for generated avatars (Pillow, written atomically).

:func:`make_grid` returns the raw grid (one pixel per generated pixel); :func:`save_grid` writes it
scaled up by a whole factor with nearest-neighbour blocks (default: the smallest factor that makes it at
least :data:`VIEW_WIDTH` pixels wide, so a grid of 32-pixel avatars is viewable), or raw with ``scale=1``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

VIEW_WIDTH = 512  # saved grids are scaled up to at least this many pixels across



def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile uint8 images (N, S, S, C) row-major into one (H, W, C) array, ``nrow`` per row (default: square)."""
    n, h, w, c = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, im in enumerate(images):
        r, k = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y:y + h, x:x + w] = im
    return grid


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """One (H, W, C) uint8 image as PNG; a temporary file then a rename, so no half-written PNG is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    to_pil(image).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def view_scale(width: int, min_width: int = VIEW_WIDTH) -> int:
    """The smallest whole factor that makes ``width`` pixels at least ``min_width`` (1 when already wide)."""
    return max(1, math.ceil(min_width / width))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, C) -> (H * factor, W * factor, C): each pixel becomes a factor x factor block."""
    return image if factor == 1 else image.repeat(factor, axis=0).repeat(factor, axis=1)


def save_grid(images: np.ndarray, path: str | Path, nrow: int | None = None, scale: int | None = None) -> Path:
    """The grid of ``images`` as a PNG, ``scale`` times larger (default: :func:`view_scale`; 1: raw)."""
    grid = make_grid(images, nrow)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise ValueError(f"--scale {scale!r}: give a whole factor of 1 or more (1 keeps one pixel per pixel)")
    return save_png(upscale(grid, scale or view_scale(grid.shape[1])), path)


def save_each(images: np.ndarray, folder: str | Path, prefix: str = "avatar") -> list[Path]:
    """Every image as ``folder/prefix-0000.png``."""
    return [save_png(im, Path(folder) / f"{prefix}-{i:04d}.png") for i, im in enumerate(images)]

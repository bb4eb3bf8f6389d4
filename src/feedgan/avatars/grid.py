"""Image grids and single PNGs for generated avatars (Pillow, written atomically)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image


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


def save_grid(images: np.ndarray, path: str | Path, nrow: int | None = None) -> Path:
    return save_png(make_grid(images, nrow), path)


def save_each(images: np.ndarray, folder: str | Path, prefix: str = "avatar") -> list[Path]:
    """Every image as ``folder/prefix-0000.png``."""
    return [save_png(im, Path(folder) / f"{prefix}-{i:04d}.png") for i, im in enumerate(images)]

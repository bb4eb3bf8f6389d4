"""Score generated avatars against real ones, next to the real-vs-real floor.

:func:`score_images` works on arrays; :func:`score_run` is what ``feedgan avatars score`` runs:
it draws ``n`` avatars from a run, loads the real images at the run's size, and scores them in the
random-CNN feature space (always) and the Inception-v3 FID space (when a weights file is given).
The floor is the same metric between two real sets of the sizes the fakes are compared at:
either ``floor_images`` against ``real``, or two halves of ``real``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from .metrics import RandomCNNFeatures, extract_features, floor_metrics, memorisation, pair_metrics


def score_images(fake: np.ndarray, real: np.ndarray, *, floor_images: np.ndarray | None = None,
                 train: np.ndarray | None = None, extractor: nn.Module | None = None, seed: int = 0) -> dict:
    """``{"fake": metrics(real, fake), "floor": metrics(real, floor set), "memorisation": ...}``.

    With ``floor_images`` (as many real images as fakes), the floor is ``real`` against them.
    Without, ``real`` is split in halves and both the floor and the fakes are measured against the
    first half at the second half's size (:func:`~feedgan.avatars.metrics.floor_metrics`), since
    FD, SWD and precision/recall depend on sample sizes. With ``train``, memorisation compares
    each fake's nearest training image with its nearest image in ``real`` (which must be held out).
    """
    extractor = RandomCNNFeatures() if extractor is None else extractor
    real_f, fake_f = extract_features(real, extractor), extract_features(fake, extractor)
    if floor_images is not None:
        floor_f = extract_features(floor_images, extractor)
        pairs = {"fake": pair_metrics(real_f, fake_f, real, fake, seed),
                 "floor": pair_metrics(real_f, floor_f, real, floor_images, seed)}
    else:
        halves = floor_metrics(real_f, fake_f, real, fake, seed)
        pairs = {"fake": halves["at_floor_size"], "floor": halves["floor"]}
    out = {"feature_space": type(extractor).__name__, "n_fake": len(fake), "n_real": len(real), **pairs}
    if train is not None:
        out["memorisation"] = memorisation(fake_f, extract_features(train, extractor), real_f, seed=seed)
    return out


def score_run(run: str | Path, real: str | Path, *, n: int = 2000, seed: int = 0,
              inception_weights: str | Path | None = None, skip_bad: bool = False, limits=None,
              sheet: str | tuple[int, int] | None = None) -> dict:
    """Scores of ``n`` avatars from ``run`` against (at most ``n``) images under ``real``; ``sheet``: cut
    ``real``, a sprite sheet, into tiles of this size (as :func:`~feedgan.avatars.images.load_images`);
    ``limits``: the :class:`~feedgan.avatars.images.SizeLimits` for loading them (default: the standard
    ones). ``steps`` in the result: the steps the run trained (None when its stats are gone)."""
    from .images import ImageDataError, SizeLimits, is_single_image, load_images
    from .inception import load_inception
    from .train import generate, last_stats, latents, load_generator, read_run

    if n < 20:
        raise ValueError(f"-n {n}: score at least 20 avatars (a few hundred or more for stable numbers)")
    if is_single_image(real, sheet):
        raise ImageDataError(f"{real} holds one image: pass --sheet WxH (one picture's size in pixels) if it is a "
                             f"sprite sheet, or give a folder, archive or .npz of at least 20 real images")
    inception = load_inception(inception_weights) if inception_weights is not None else None  # fail early
    G, cfg = load_generator(run)
    limits = limits or SizeLimits()
    real_set = load_images(real, size=cfg.size, grayscale=cfg.channels == 1, sheet=sheet, skip_bad=skip_bad,
                           limits=limits)
    real_imgs = real_set.images[np.random.default_rng(seed).permutation(len(real_set))[:n]]
    if len(real_imgs) < 20:
        raise ValueError(f"{real}: {len(real_imgs)} images is too few to score against; give at least 20")
    fake = generate(G, latents(cfg, n, seed + 1000))
    train = _training_images(read_run(run)[1].get("images", {}), cfg, skip_bad, limits)
    spaces = {"random-cnn": score_images(fake, real_imgs, train=train, seed=seed)}
    if inception is not None:
        spaces["inception"] = score_images(fake, real_imgs, train=train, extractor=inception, seed=seed)
    steps = (last_stats(run) or {}).get("step")
    return {"run": str(run), "real": str(real), "sheet": sheet, "n": n, "seed": seed, "preset": cfg.preset,
            "steps": steps, "spaces": spaces}


def _training_images(source: dict, cfg, skip_bad: bool, limits) -> np.ndarray | None:
    """The run's training images (``source``: how they were loaded), for the memorisation check,
    when they can still be loaded."""
    from .images import ImageDataError, load_images

    if not source.get("path") or not Path(source["path"]).exists():
        return None
    try:
        return load_images(source["path"], size=cfg.size, grayscale=cfg.channels == 1, sheet=source.get("sheet"),
                           where=source.get("where"), skip_bad=skip_bad or source.get("skip_bad", False),
                           limit=source.get("limit"), limits=limits).images
    except ImageDataError:
        return None

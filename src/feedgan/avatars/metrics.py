"""Offline metrics for avatar GANs: how close are generated pictures to real ones?

Nothing here downloads anything. Image sets are uint8 numpy arrays ``(N, H, W, C)`` with ``C`` = 3 or 1, or
float torch tensors in ``[-1, 1]`` shaped ``(N, C, H, W)``; :func:`to_float_nchw` turns either into the latter.

Feature-space metrics (computed on ``(N, d)`` features from :func:`extract_features`):

* **FD** (:func:`frechet_distance`): Fréchet distance between Gaussians fitted to the two feature sets,
  ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)`` (Heusel et al. 2017, "GANs trained by a two
  time-scale update rule..."). It is FID only with Inception-v3 pool3 features (see
  :mod:`feedgan.avatars.inception`). Biased upwards for small sets: compare numbers at equal set sizes.
* **KID** (:func:`kid`): unbiased MMD^2 with the cubic kernel ``(x.y/d + 1)^3``, averaged over random subsets
  (Bińkowski et al. 2018, "Demystifying MMD GANs"). Unbiased, so usable on a few hundred images; it can be
  slightly negative when the sets match.
* **Precision / recall** (Kynkäänniemi et al. 2019): share of fakes inside the real manifold (union of k-NN
  balls around real samples) and share of reals inside the fake manifold - quality and diversity.
  **Density / coverage** (Naeem et al. 2020): outlier-robust versions; density counts how many real balls
  contain each fake (about 1 for matching distributions, can exceed 1), coverage is the share of real balls
  that contain at least one fake.
* **Memorisation** (:func:`memorisation`): nearest-neighbour distances from fakes to training versus held-out
  real images; a generator that copies its training set is much closer to train than to held-out data.

Image-space metric: **SWD** (:func:`sliced_wasserstein`), the sliced Wasserstein distance between 7x7
patches of Laplacian pyramids, per pyramid level (Karras et al. 2018, "Progressive growing of GANs"): fine
levels measure texture and noise, coarse levels colour and layout. Values are reported x 1e3 as in ProGAN.

Caveat on the default feature space: :class:`RandomCNNFeatures` is a fixed, randomly initialised CNN, not a
trained network. Its FD/KID/precision/recall are meaningful for ranking models and tracking training runs
against each other and against the real-vs-real floor, but are **not** comparable with published FID/KID
numbers; for those, pass the Inception extractor built by :func:`feedgan.avatars.inception.load_inception`.
Every metric has sampling noise and most (all but KID) a sample-size bias: :func:`score` also reports the same
metrics between two halves of the real set (the ``"floor"``, what a perfect generator would reach) and for
the fakes at exactly the floor's sample sizes (``"at_floor_size"``), the pair to compare.

Usage::

    from feedgan.avatars.metrics import score
    report = score(real_images, generated_images, train=train_images, heldout=val_images)
    report["kid_mean"], report["at_floor_size"]["fd"], report["floor"]["fd"], report["memorisation"]["ratio"]
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Images = np.ndarray | torch.Tensor
"""uint8 ``(N, H, W, C)`` array or float ``(N, C, H, W)`` tensor in ``[-1, 1]``."""

_BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def to_float_nchw(images: Images) -> torch.Tensor:
    """Images as a float32 ``(N, C, H, W)`` tensor in ``[-1, 1]``; float tensors pass through (as float32)."""
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point() or images.ndim != 4:
            raise TypeError(f"torch images must be float (N, C, H, W) in [-1, 1], got {images.dtype} "
                            f"{tuple(images.shape)}")
        return images.float()
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4:
        raise TypeError(f"numpy images must be uint8 (N, H, W, C), got {array.dtype} {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def expand_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Repeat a single grey channel to three; RGB passes through."""
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {images.shape[1]}")
    return images


class RandomCNNFeatures(nn.Module):
    """A fixed random CNN as a download-free feature extractor (d = ``out_dim``, 256 by default).

    Images are resized (bilinear, antialiased) to ``resolution`` x ``resolution``, passed through 3x3
    stride-2 convolutions with leaky ReLUs, and the global average of every stage (multi-scale: colour
    statistics from the first stage, larger structures from the last) is concatenated and mapped by a
    fixed Gaussian projection. Weights are He-normal for the leaky ReLU, so activations keep their scale
    through the depth, and the projection is scaled so that features are of order one. All weights come from
    a local generator seeded with ``seed``: two instances with the same arguments are identical (for a given
    torch version) and torch's global RNG is not touched.

    Numbers computed in this feature space are comparable with each other only, never with published FIDs.
    """

    def __init__(self, seed: int = 0, widths: tuple[int, ...] = (32, 64, 128, 256), out_dim: int = 256,
                 resolution: int = 64, negative_slope: float = 0.2) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        gain = math.sqrt(2.0 / (1.0 + negative_slope ** 2))
        self.resolution = resolution
        self.negative_slope = negative_slope
        self.n_stages = len(widths)
        in_channels = 3
        for stage, width in enumerate(widths):
            weight = torch.randn(width, in_channels, 3, 3, generator=generator) * (gain / math.sqrt(9 * in_channels))
            self.register_buffer(f"kernel{stage}", weight)
            in_channels = width
        # a leaky ReLU of unit-variance activations averages to (1 - slope) / sqrt(2 pi): undo that shrinkage so
        # features are O(1), where KID's cubic kernel is non-linear (as with Inception features), not ~linear
        pooled, pool_gain = sum(widths), math.sqrt(2.0 * math.pi) / (1.0 - negative_slope)
        projection = torch.randn(pooled, out_dim, generator=generator) * (pool_gain / math.sqrt(pooled))
        self.register_buffer("projection", projection)

    def forward(self, images: Images) -> torch.Tensor:
        x = expand_to_rgb(to_float_nchw(images)).to(self.projection.device)
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                              antialias=True)
        pooled = []
        for stage in range(self.n_stages):
            x = F.leaky_relu(F.conv2d(x, getattr(self, f"kernel{stage}"), stride=2, padding=1), self.negative_slope)
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1) @ self.projection


def _take(images: Images, index: np.ndarray) -> Images:
    """Rows ``index`` of an image set of either kind."""
    return images[torch.from_numpy(index)] if isinstance(images, torch.Tensor) else images[index]


def extract_features(images: Images, extractor: nn.Module | None = None, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """Features ``(N, d)`` float64 of ``images`` (default extractor: ``RandomCNNFeatures()``), batched, no grad."""
    if len(images) == 0:
        raise ValueError("no images to extract features from")
    extractor = (RandomCNNFeatures() if extractor is None else extractor).to(device).eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = to_float_nchw(images[start:start + batch_size]).to(device)
            chunks.append(extractor(batch).double().cpu().numpy())
    return np.concatenate(chunks)


def _as_2d(features: np.ndarray) -> np.ndarray:
    """Features as a float64 ``(N, d)`` array (a 1-d array is N samples of one feature)."""
    array = np.asarray(features, dtype=np.float64)
    return array[:, None] if array.ndim == 1 else array


def _cubic_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    base = x @ y.T / x.shape[1] + 1.0
    return base * base * base


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-sized samples: within-set sums skip the diagonal (i == j)."""
    m = len(x)
    k_xx, k_yy = _cubic_kernel(x, x), _cubic_kernel(y, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * _cubic_kernel(x, y).mean())


def kid(feat_a: np.ndarray, feat_b: np.ndarray, n_subsets: int = 50, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of the unbiased MMD^2 over random subsets.

    Each subset draws ``min(subset_size, len(a), len(b))`` rows without replacement from each set; when that
    is all rows of both sets, one subset is exact (the estimate does not depend on row order) and std is 0.
    """
    a, b = _as_2d(feat_a), _as_2d(feat_b)
    m = min(subset_size, len(a), len(b))
    if m < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs >= 2 samples of equal dimension, got {a.shape} and {b.shape}")
    if m == len(a) == len(b):  # every subset is a permutation of the whole sets: one is exact
        n_subsets = 1
    rng = np.random.default_rng(seed)
    values = np.array([_unbiased_mmd2(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
                       for _ in range(n_subsets)])
    return float(values.mean()), float(values.std())


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues -> 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance_from_moments(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b), never negative.

    ``Tr (S_a S_b)^1/2`` is the sum of square roots of the eigenvalues of ``S_a^1/2 S_b S_a^1/2``, a symmetric
    PSD matrix similar to ``S_a S_b``: no non-symmetric ``sqrtm`` and no complex round-off.
    """
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    root_a = _sqrtm_psd(cov_a)
    inner = root_a @ cov_b @ root_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2.0), 0.0, None)).sum()
    diff = np.atleast_1d(mu_a) - np.atleast_1d(mu_b)
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt, 0.0))


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two ``(N, d)`` feature sets."""
    a, b = _as_2d(feat_a), _as_2d(feat_b)
    if min(len(a), len(b)) < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"FD needs >= 2 samples of equal dimension, got {a.shape} and {b.shape}")
    return frechet_distance_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def _row_distances(x: torch.Tensor, y: torch.Tensor, chunk_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Exact Euclidean distances ``x[start:start + chunk] -> y``, one chunk of rows of ``x`` at a time."""
    for start in range(0, len(x), chunk_size):
        yield start, torch.cdist(x[start:start + chunk_size], y)


def _kth_neighbour_radius(x: torch.Tensor, k: int, chunk_size: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (the row itself is the 0-th)."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} samples, got {len(x)}")
    return torch.cat([d.topk(k + 1, dim=1, largest=False).values[:, -1] for _, d in _row_distances(x, x, chunk_size)])


def precision_recall_density_coverage(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 5,
                                      chunk_size: int = 1024) -> dict[str, float]:
    """Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020) with k-NN balls.

    A sample's ball has the radius of its k-th nearest neighbour within its own set. For identical sets
    precision = recall = coverage = 1 and density = (k + 1) / k (each ball holds its centre and k neighbours).
    """
    real = torch.as_tensor(_as_2d(real_feats))
    fake = torch.as_tensor(_as_2d(fake_feats))
    real_radius = _kth_neighbour_radius(real, k, chunk_size)
    fake_radius = _kth_neighbour_radius(fake, k, chunk_size)
    balls_per_fake = torch.zeros(len(fake), dtype=torch.float64)
    recalled, covered = [], []
    for start, distances in _row_distances(real, fake, chunk_size):
        inside_real_ball = distances <= real_radius[start:start + len(distances), None]
        balls_per_fake += inside_real_ball.sum(dim=0)
        covered.append(inside_real_ball.any(dim=1))
        recalled.append((distances <= fake_radius[None, :]).any(dim=1))
    return {"precision": float((balls_per_fake > 0).double().mean()),
            "recall": float(torch.cat(recalled).double().mean()),
            "density": float(balls_per_fake.sum() / (k * len(fake))),
            "coverage": float(torch.cat(covered).double().mean())}


def _blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Separable 5-tap binomial (Gaussian) filter per channel, reflect-padded."""
    taps = torch.tensor(_BINOMIAL_5, dtype=x.dtype, device=x.device) / 16.0
    kernel = (torch.outer(taps, taps) * gain).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def _upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """x2 upsampling by zero insertion and blur (gain 4 restores the mean), cropped to ``size``."""
    n, c, h, w = x.shape
    spread = x.new_zeros(n, c, 2 * h, 2 * w)
    spread[:, :, ::2, ::2] = x
    return _blur(spread, gain=4.0)[:, :, :size[0], :size[1]]


def _laplacian_pyramid(x: torch.Tensor, min_resolution: int) -> list[torch.Tensor]:
    """Band-pass levels from full resolution down, then the low-pass residual at >= ``min_resolution``."""
    levels = []
    while min(x.shape[-2:]) // 2 >= min_resolution:
        smaller = _blur(x)[:, :, ::2, ::2]
        levels.append(x - _upsample(smaller, x.shape[-2:]))
        x = smaller
    levels.append(x)
    return levels


def _sample_patches(level: torch.Tensor, n_patches: int, patch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``n_patches`` random ``patch_size``^2 patches per image: ``(N * n_patches, patch_size^2, C)``."""
    n, c, h, w = level.shape
    top = torch.randint(0, h - patch_size + 1, (n, n_patches, 1, 1), generator=generator)
    left = torch.randint(0, w - patch_size + 1, (n, n_patches, 1, 1), generator=generator)
    offsets = torch.arange(patch_size)
    image = torch.arange(n)[:, None, None, None]
    patches = level[image, :, top + offsets[:, None], left + offsets[None, :]]  # (n, P, size, size, c)
    return patches.reshape(n * n_patches, patch_size * patch_size, c)


def _pyramid_descriptors(images: Images, n_patches: int, patch_size: int, min_resolution: int, seed: int,
                         batch_size: int = 256) -> tuple[list[int], list[torch.Tensor]]:
    """Level resolutions (heights) and per-level patch descriptors ``(n, patch_size^2, C)`` of an image set."""
    generator = torch.Generator().manual_seed(seed)
    per_batch, heights = [], []
    for start in range(0, len(images), batch_size):
        pyramid = _laplacian_pyramid(to_float_nchw(images[start:start + batch_size]).cpu(), min_resolution)
        heights = [level.shape[2] for level in pyramid]
        per_batch.append([_sample_patches(level, n_patches, patch_size, generator) for level in pyramid])
    return heights, [torch.cat(level) for level in zip(*per_batch)]


def _sliced_distance(desc_a: torch.Tensor, desc_b: torch.Tensor, n_repeats: int, n_directions: int,
                     generator: torch.Generator) -> float:
    """Mean |difference| of sorted random 1-d projections, on descriptors standardised per channel.

    The larger descriptor set is subsampled to the size of the smaller one.
    """
    both = torch.cat([desc_a, desc_b])
    mean, std = both.mean(dim=(0, 1)), both.std(dim=(0, 1)).clamp_min(1e-8)
    n = min(len(desc_a), len(desc_b))
    a, b = (((d[torch.randperm(len(d), generator=generator)[:n]] if len(d) > n else d) - mean) / std
            for d in (desc_a, desc_b))
    a, b = a.flatten(1), b.flatten(1)
    distances = []
    for _ in range(n_repeats):
        directions = torch.randn(a.shape[1], n_directions, generator=generator)
        directions /= directions.norm(dim=0, keepdim=True)
        # (directions, samples) rows, sorted by numpy: much faster than torch.sort on CPU
        projected_a, projected_b = (np.sort((directions.T @ x.T).numpy(), axis=1) for x in (a, b))
        distances.append(np.abs(projected_a - projected_b).mean())
    return float(np.mean(distances))


def _patches_per_image(images: Images, n_patches: int, max_descriptors: int) -> int:
    """``n_patches``, reduced so that a set yields at most ``max_descriptors`` patches per level (at least 1)."""
    return min(n_patches, max(1, max_descriptors // len(images)))


def sliced_wasserstein(images_a: Images, images_b: Images, *, n_patches: int = 128, patch_size: int = 7,
                       n_repeats: int = 4, n_directions: int = 128, min_resolution: int = 16,
                       max_descriptors: int = 16_384, seed: int = 0) -> dict[str, float]:
    """ProGAN's sliced Wasserstein distance on Laplacian-pyramid patches, x 1e3, per level and averaged.

    Keys ``swd_<height>`` per pyramid level (finest first: texture/noise; the coarsest, low-pass level: colour
    and layout) and ``swd_mean``. ``n_patches`` 7x7 patches per image and level are standardised with the
    per-channel mean/std of both sets together and projected on ``n_repeats`` x ``n_directions`` random unit
    directions. ProGAN used 128 patches, 4 x 128 directions and 2^21 descriptors per level; for CPU use, fewer
    patches per image are taken when a set would yield more than ``max_descriptors``. The same ``seed`` gives
    both sets the same patch positions, so a set against itself scores exactly 0.
    """
    shape_a, shape_b = to_float_nchw(images_a[:1]).shape[1:], to_float_nchw(images_b[:1]).shape[1:]
    if shape_a != shape_b or min(shape_a[1:]) < max(patch_size, min_resolution):
        raise ValueError(f"SWD needs equal image shapes of at least {max(patch_size, min_resolution)} pixels, "
                         f"got {tuple(shape_a)} and {tuple(shape_b)}")
    with torch.no_grad():
        heights, levels_a = _pyramid_descriptors(images_a, _patches_per_image(images_a, n_patches, max_descriptors),
                                                 patch_size, min_resolution, seed)
        _, levels_b = _pyramid_descriptors(images_b, _patches_per_image(images_b, n_patches, max_descriptors),
                                           patch_size, min_resolution, seed)
        generator = torch.Generator().manual_seed(seed)
        result = {f"swd_{height}": 1e3 * _sliced_distance(a, b, n_repeats, n_directions, generator)
                  for height, a, b in zip(heights, levels_a, levels_b)}
    result["swd_mean"] = float(np.mean(list(result.values())))
    return result


def _balanced(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Subsample the larger set to the size of the smaller (nearest-neighbour distances shrink with set size)."""
    n = min(len(x), len(y))
    rng = np.random.default_rng(seed)
    return tuple(s[np.sort(rng.choice(len(s), n, replace=False))] if len(s) > n else s for s in (x, y))


def _nearest_distance(x: torch.Tensor, y: torch.Tensor, chunk_size: int) -> torch.Tensor:
    return torch.cat([d.min(dim=1).values for _, d in _row_distances(x, y, chunk_size)])


def memorisation(fake_feats: np.ndarray, train_feats: np.ndarray, heldout_feats: np.ndarray, *, seed: int = 0,
                 chunk_size: int = 1024) -> dict[str, float]:
    """Does the generator copy its training images? Nearest-neighbour distances of fakes to train vs held-out.

    Train and held-out sets are first subsampled to equal size. ``ratio`` = median distance to train / median
    distance to held-out: about 1 for a generator that generalises, well below 1 (towards 0) for one that
    reproduces training images. ``share_closer_to_train`` is about 0.5 without copying and 1 with it.
    """
    train, heldout = _balanced(_as_2d(train_feats), _as_2d(heldout_feats), seed)
    fake = torch.as_tensor(_as_2d(fake_feats))
    to_train = _nearest_distance(fake, torch.as_tensor(train), chunk_size)
    to_heldout = _nearest_distance(fake, torch.as_tensor(heldout), chunk_size)
    median_train, median_heldout = float(to_train.median()), float(to_heldout.median())
    return {"median_dist_train": median_train, "median_dist_heldout": median_heldout,
            "ratio": median_train / median_heldout if median_heldout > 0 else float("nan"),
            "share_closer_to_train": float((to_train < to_heldout).double().mean())}


def pair_metrics(real_feats: np.ndarray, fake_feats: np.ndarray, real: Images, fake: Images,
                  seed: int) -> dict[str, float]:
    """FD, KID, precision/recall/density/coverage and SWD of one (real, fake) pair."""
    kid_mean, kid_std = kid(real_feats, fake_feats, seed=seed)
    return {"fd": frechet_distance(real_feats, fake_feats), "kid_mean": kid_mean, "kid_std": kid_std,
            **precision_recall_density_coverage(real_feats, fake_feats),
            **sliced_wasserstein(real, fake, seed=seed)}


def floor_metrics(real_feats: np.ndarray, fake_feats: np.ndarray, real: Images, fake: Images,
                   seed: int) -> dict[str, dict[str, float]]:
    """Real half A vs real half B (``floor``) and, at the same sample sizes, A vs fakes (``at_floor_size``)."""
    rng = np.random.default_rng(seed)
    order, half = rng.permutation(len(real_feats)), len(real_feats) // 2
    half_a, half_b = np.sort(order[:half]), np.sort(order[half:2 * half])
    some_fakes = np.sort(rng.choice(len(fake_feats), min(half, len(fake_feats)), replace=False))
    reference = _take(real, half_a)
    return {"floor": pair_metrics(real_feats[half_a], real_feats[half_b], reference, _take(real, half_b), seed),
            "at_floor_size": pair_metrics(real_feats[half_a], fake_feats[some_fakes], reference,
                                           _take(fake, some_fakes), seed)}


def score(real: Images, fake: Images, *, train: Images | None = None, heldout: Images | None = None,
          extractor: nn.Module | None = None, floor: bool = True, seed: int = 0) -> dict:
    """All metrics of ``fake`` against ``real``, as plain (JSON-serialisable) numbers.

    Keys: ``fd``, ``kid_mean``, ``kid_std``, ``precision``, ``recall``, ``density``, ``coverage``,
    ``swd_<height>``, ``swd_mean`` (all fakes vs all reals), plus ``n_real``, ``n_fake``, ``feature_dim``,
    ``feature_space``. With ``floor`` also

    * ``"floor"``: the same metrics between two disjoint random halves of ``real``, the value a perfect
      generator would reach - the floor to aim at;
    * ``"at_floor_size"``: the fakes measured exactly like the floor (against the same first half, with as
      many fakes as the second half has reals). FD, SWD and precision/recall depend on the sample sizes, so
      compare ``at_floor_size`` with ``floor``, not the full-size numbers (KID is unbiased at any size).

    With ``train`` and ``heldout`` also ``"memorisation"`` (see :func:`memorisation`).
    """
    if (train is None) != (heldout is None):
        raise ValueError("memorisation needs both train and heldout images")
    extractor = RandomCNNFeatures() if extractor is None else extractor
    real_feats, fake_feats = extract_features(real, extractor), extract_features(fake, extractor)
    result: dict = {"n_real": len(real_feats), "n_fake": len(fake_feats), "feature_dim": int(real_feats.shape[1]),
                    "feature_space": type(extractor).__name__,
                    **pair_metrics(real_feats, fake_feats, real, fake, seed)}
    if floor:
        result.update(floor_metrics(real_feats, fake_feats, real, fake, seed))
    if train is not None:
        result["memorisation"] = memorisation(fake_feats, extract_features(train, extractor),
                                              extract_features(heldout, extractor), seed=seed)
    return result

"""Detect generated avatars: a small CNN or a Fourier-spectrum baseline, scored at a low false-positive rate.

Images are uint8 arrays (N, S, S, 3) as :func:`feedgan.avatars.images.load_images` returns them. Real and
generated pictures must come through that same reader (generated ones written to PNG first), so both are
decoded, cropped and resized alike and a detector cannot tell them apart by their file format::

    from feedgan.avatars.images import load_images
    from feedgan.moderation.avatars import AvatarDetector, avatar_metrics, jpeg

    real, fake = load_images("faces/", size=32).images, load_images("generated/", size=32).images
    det = AvatarDetector("cnn", seed=0).fit(real[:4000], fake[:4000])
    det.calibrate(real[4000:5000])                 # threshold: 1% of these real faces flagged
    avatar_metrics(det.score(jpeg(real[5000:], 75)), det.score(jpeg(fake[5000:], 75)), det.threshold)

Detectors (higher score = more likely generated):

* ``cnn``: the DCGAN discriminator of :mod:`feedgan.avatars.models` (strided 4x4 convolutions with batch
  norm), trained real vs generated with a logistic loss; random horizontal flips, and with ``augment=True``
  half of each batch re-encoded as JPEG (quality 50-95) or shrunk and enlarged back, real and generated alike.
* ``spectrum``: logistic regression on the azimuthally averaged log-magnitude Fourier spectrum of each
  colour channel (one value per integer radius 0..S/2), the classic up-sampling-artefact detector.

:meth:`AvatarDetector.calibrate` sets the threshold from real images only (the share of them flagged is the
false-positive rate); :func:`avatar_metrics` reports ROC-AUC and the TPR at 1% FPR read off the ROC curve
(:func:`feedgan.moderation.detect.detection_metrics`) and, given a threshold chosen elsewhere, the TPR and
FPR it really gives.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..avatars.images import ImageDataError
from .detect import LOW_FPR, detection_metrics

KINDS = ("cnn", "spectrum")
CNN_WIDTH = 32          # base channel count of the discriminator
CNN_EPOCHS = 8
CNN_BATCH = 64
CNN_LR = 2e-4
AUG_QUALITIES = (50, 95)  # JPEG quality range of the training augmentation


# -- image checks and degradations ---------------------------------------------------------------------

def check_images(images, what: str = "images", size: int | None = None) -> np.ndarray:
    """``images`` as uint8 (N, S, S, 3); :class:`ImageDataError` naming ``what`` and the fix otherwise."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3 or arr.shape[1] != arr.shape[2]:
        raise ImageDataError(f"{what}: expected uint8 RGB images shaped (N, S, S, 3), got {arr.dtype} "
                             f"{arr.shape}; load them with feedgan.avatars.images.load_images")
    if len(arr) == 0:
        raise ImageDataError(f"{what}: no images; give at least one")
    if size is not None and arr.shape[1] != size:
        raise ImageDataError(f"{what} are {arr.shape[1]}x{arr.shape[2]}, the detector works on {size}x{size}: "
                             f"load them with size={size}")
    return arr


def _resample(side: int, target: int) -> Image.Resampling:
    """The reader's rule (feedgan.avatars.images): LANCZOS when shrinking, BICUBIC when enlarging."""
    return Image.Resampling.LANCZOS if side > target else Image.Resampling.BICUBIC


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """Every image encoded as JPEG at ``quality`` (1-95) and decoded again: uint8, same shape."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 95:
        raise ValueError(f"quality={quality!r}: give a JPEG quality from 1 to 95")
    arr = check_images(images)
    out = np.empty_like(arr)
    for i, im in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=int(quality))
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


def resize_roundtrip(images: np.ndarray, size: int) -> np.ndarray:
    """Every image resized to ``size`` x ``size`` and back to its own side (the reader's resampling):
    uint8, same shape. Smaller ``size`` blurs; larger re-samples twice."""
    arr = check_images(images)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size={size!r}: give the intermediate side in pixels, at least 2")
    side = arr.shape[1]
    out = np.empty_like(arr)
    for i, im in enumerate(arr):
        there = Image.fromarray(im).resize((size, size), _resample(side, size))
        out[i] = np.asarray(there.resize((side, side), _resample(size, side)))
    return out


def _augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half the images re-encoded as JPEG at a random quality or shrunk to 50-90% and enlarged back."""
    out = images.copy()
    side = images.shape[1]
    for i in np.flatnonzero(rng.random(len(images)) < 0.5):
        if rng.random() < 0.5:
            out[i] = jpeg(images[i:i + 1], int(rng.integers(AUG_QUALITIES[0], AUG_QUALITIES[1] + 1)))[0]
        else:
            out[i] = resize_roundtrip(images[i:i + 1], max(2, round(side * rng.uniform(0.5, 0.9))))[0]
    return out


# -- features of the spectrum baseline -----------------------------------------------------------------

def spectrum_features(images: np.ndarray) -> np.ndarray:
    """(N, 3 * R) float64: per colour channel, the mean of log(1 + |FFT|) over each ring of integer radius
    0..R-1 around the zero frequency, R = round(S / sqrt(2)) + 1, so the corners (the highest frequencies,
    where transposed-convolution checkerboards sit) count too."""
    arr = check_images(images).astype(np.float64) / 255.0            # (N, S, S, 3)
    side = arr.shape[1]
    mag = np.abs(np.fft.fftshift(np.fft.fft2(arr, axes=(1, 2)), axes=(1, 2)))
    logmag = np.log1p(mag)                                            # (N, S, S, 3)
    yy, xx = np.indices((side, side)) - side // 2
    radius = np.rint(np.hypot(yy, xx)).astype(int).ravel()           # (S * S,)
    ring = np.zeros((radius.max() + 1, side * side))                  # (R, S * S) ring membership
    ring[radius, np.arange(side * side)] = 1.0
    ring /= ring.sum(1, keepdims=True)
    rings = logmag.reshape(len(arr), side * side, 3).transpose(0, 2, 1) @ ring.T  # (N, 3, R) ring means
    return rings.reshape(len(arr), -1)


# -- the detector --------------------------------------------------------------------------------------

class AvatarDetector:
    """Real vs generated avatars. ``kind``: "cnn" or "spectrum"; ``seed`` fixes the CNN's initialisation,
    batch order and augmentation; ``epochs`` / ``augment`` apply to the CNN."""

    def __init__(self, kind: str = "cnn", *, seed: int = 0, epochs: int = CNN_EPOCHS, augment: bool = False):
        if kind not in KINDS:
            raise ValueError(f"unknown detector {kind!r}; choose from {', '.join(KINDS)}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs={epochs!r}: give a whole number of at least 1")
        self.kind, self.seed, self.epochs, self.augment = kind, seed, epochs, augment
        self.size: int | None = None
        self.threshold: float | None = None
        self._model = None  # the CNN (torch module) or {"mean", "scale", "coef", "intercept"} arrays

    # ---- training
    def fit(self, real, fake, progress=None) -> "AvatarDetector":
        """Train on uint8 real and generated images of one size; ``progress``: a Rich-like progress."""
        real = check_images(real, "real images")
        fake = check_images(fake, "generated images")
        if real.shape[1] != fake.shape[1]:
            raise ImageDataError(f"real images are {real.shape[1]}x{real.shape[1]} but generated ones are "
                                 f"{fake.shape[1]}x{fake.shape[1]}: load both with the same size=")
        self.size, self.threshold = real.shape[1], None
        x = np.concatenate([real, fake])
        y = np.concatenate([np.zeros(len(real)), np.ones(len(fake))])
        if self.kind == "spectrum":
            self._fit_spectrum(x, y)
        else:
            self._fit_cnn(x, y, progress)
        return self

    def _fit_spectrum(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        f = spectrum_features(x)
        mean, scale = f.mean(0), f.std(0)
        scale[scale == 0] = 1.0
        clf = LogisticRegression(C=1.0, max_iter=2000).fit((f - mean) / scale, y)
        self._model = {"mean": mean, "scale": scale, "coef": clf.coef_[0].astype(np.float64),
                       "intercept": clf.intercept_.astype(np.float64)}

    def _fit_cnn(self, x: np.ndarray, y: np.ndarray, progress) -> None:
        import torch
        from torch.nn import functional as F

        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        model = self._new_cnn()
        opt = torch.optim.Adam(model.parameters(), lr=CNN_LR, betas=(0.5, 0.999))
        n_batches = -(-len(x) // CNN_BATCH)
        task = progress.add_task("Training the detector", total=self.epochs * n_batches) if progress else None
        model.train()
        for _ in range(self.epochs):
            order = rng.permutation(len(x))
            for b in range(n_batches):
                idx = order[b * CNN_BATCH:(b + 1) * CNN_BATCH]
                batch = _augment(x[idx], rng) if self.augment else x[idx]
                xb = _to_tensor(batch)
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
                xb[flip] = xb[flip].flip(3)
                loss = F.binary_cross_entropy_with_logits(model(xb), torch.from_numpy(y[idx]).float())
                opt.zero_grad()
                loss.backward()
                opt.step()
                if task is not None:
                    progress.advance(task)
        self._model = model.eval()

    def _new_cnn(self):
        from ..avatars.models import DCGAND

        return DCGAND(self.size, 3, CNN_WIDTH)

    # ---- scoring
    def score(self, images) -> np.ndarray:
        """(N,) float64 scores, higher = more likely generated (the CNN's logit; the baseline's log-odds)."""
        if self._model is None:
            raise ValueError("the detector is not trained: call fit(real, fake) or AvatarDetector.load(path)")
        arr = check_images(images, size=self.size)
        if self.kind == "spectrum":
            m = self._model
            return ((spectrum_features(arr) - m["mean"]) / m["scale"]) @ m["coef"] + m["intercept"][0]
        import torch

        with torch.no_grad():
            return np.concatenate([self._model(_to_tensor(arr[i:i + 512])).double().numpy()
                                   for i in range(0, len(arr), 512)])

    def calibrate(self, real, fpr: float = LOW_FPR) -> float:
        """Set and return the threshold that flags at most ``fpr`` of the real images ``real`` (never the
        images the detector is scored on); a score above it is flagged."""
        self.threshold = threshold_at_fpr(self.score(check_images(real, "calibration images")), fpr)
        return self.threshold

    # ---- storage
    def save(self, path: str | Path) -> Path:
        """One safetensors file: the weights, and kind, size, threshold and settings as metadata."""
        from safetensors.numpy import save_file

        from ..io import atomic_path

        if self._model is None:
            raise ValueError("the detector is not trained: call fit(real, fake) before save()")
        tensors = (dict(self._model) if self.kind == "spectrum" else
                   {k: v.detach().cpu().numpy() for k, v in self._model.state_dict().items()})
        meta = {"kind": self.kind, "size": self.size, "threshold": self.threshold, "seed": self.seed,
                "epochs": self.epochs, "augment": self.augment}
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
                      metadata={"feedgan_avatar_detector": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AvatarDetector":
        """A detector written by :meth:`save`; :class:`~feedgan.io.ArtifactError` for a damaged file."""
        from safetensors import safe_open

        from ..io import ArtifactError, read_safetensors

        tensors = read_safetensors(path)
        with safe_open(str(path), framework="numpy") as fh:
            raw = (fh.metadata() or {}).get("feedgan_avatar_detector")
        try:
            meta = json.loads(raw)
            det = cls(meta["kind"], seed=meta["seed"], epochs=meta["epochs"], augment=meta["augment"])
            det.size, det.threshold = int(meta["size"]), meta["threshold"]
            if det.kind == "spectrum":
                det._model = {k: tensors[k] for k in ("mean", "scale", "coef", "intercept")}
            else:
                import torch

                model = det._new_cnn()
                model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
                det._model = model.eval()
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            raise ArtifactError(path, f"is not an avatar detector saved by feedgan ({type(exc).__name__})",
                                fix="train one with `feedgan moderate avatars`") from exc
        return det


def _to_tensor(images: np.ndarray):
    """uint8 (B, S, S, 3) -> float32 (B, 3, S, S) in [-1, 1], the GANs' scale."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div_(127.5).sub_(1.0)


# -- thresholds and metrics ------------------------------------------------------------------------------

def threshold_at_fpr(real_scores: np.ndarray, fpr: float = LOW_FPR) -> float:
    """The lowest threshold (score > threshold = flagged) that flags at most ``fpr`` of ``real_scores``."""
    s = np.sort(np.asarray(real_scores, dtype=np.float64))
    if not len(s) or not 0 <= fpr < 1:
        raise ValueError(f"need real scores and 0 <= fpr < 1, got {len(s)} scores and fpr={fpr}")
    allowed = int(np.floor(fpr * len(s)))           # real images that may lie above the threshold
    return float(s[len(s) - 1 - allowed])


def avatar_metrics(real_scores: np.ndarray, fake_scores: np.ndarray, threshold: float | None = None) -> dict:
    """ROC-AUC, PR-AUC and TPR at 1% FPR of generated (positive) vs real scores, as in
    :func:`~feedgan.moderation.detect.detection_metrics`; with ``threshold`` also the TPR and FPR it gives."""
    real, fake = np.asarray(real_scores, dtype=np.float64), np.asarray(fake_scores, dtype=np.float64)
    scores = pd.Series(np.concatenate([real, fake]))
    labels = pd.Series(np.r_[np.zeros(len(real), int), np.ones(len(fake), int)])
    m = detection_metrics(scores, labels)
    out = {k: m[k] for k in ("roc_auc", "pr_auc", "tpr_at_1pct_fpr")}
    if threshold is not None:
        out["tpr_at_threshold"] = float((fake > threshold).mean())
        out["fpr_at_threshold"] = float((real > threshold).mean())
    out["n_real"], out["n_fake"] = len(real), len(fake)
    return out


# -- the protocol: splits, test conditions, held-out generators --------------------------------------------

JPEG_QUALITIES = (95, 75, 50)
MIN_IMAGES = 5  # per class: a train, a validation and a test share each need some


def conditions(size: int) -> dict:
    """Name -> degradation applied alike to real and generated test images: none, JPEG at 95 / 75 / 50,
    shrunk to 3/4 and enlarged back, enlarged 2x and shrunk back."""
    out = {"clean": lambda x: x}
    out.update({f"jpeg{q}": (lambda x, q=q: jpeg(x, q)) for q in JPEG_QUALITIES})
    out[f"resize{size * 3 // 4}"] = lambda x: resize_roundtrip(x, size * 3 // 4)
    out[f"resize{size * 2}"] = lambda x: resize_roundtrip(x, size * 2)
    return out


def split(n: int, seed: int, shares: tuple[float, float] = (0.6, 0.2)) -> tuple[np.ndarray, ...]:
    """Indices of ``n`` images shuffled (``seed``) into train, validation and test parts, in that order;
    ``shares``: the train and validation parts' shares (the test part has the rest, at least one each)."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = max(1, round(shares[0] * n))
    n_val = max(1, round(shares[1] * n))
    n_train = min(n_train, n - n_val - 1)
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


def evaluate(detector: AvatarDetector, real: np.ndarray, fakes: dict[str, np.ndarray],
             degrade: dict | None = None, progress=None) -> dict:
    """Metrics per generator per condition: ``{generator: {condition: avatar_metrics(...)}}``. Each
    condition of ``degrade`` (default :func:`conditions`) is applied to the real test images and to every
    generator's; the detector's threshold (from :meth:`AvatarDetector.calibrate`) is the one used."""
    degrade = degrade or conditions(detector.size)
    task = progress.add_task("Scoring test images", total=len(degrade)) if progress else None
    out: dict = {name: {} for name in fakes}
    for cond, fn in degrade.items():
        real_scores = detector.score(fn(real))
        for name, fake in fakes.items():
            out[name][cond] = avatar_metrics(real_scores, detector.score(fn(fake)), detector.threshold)
        if task is not None:
            progress.advance(task)
    return out

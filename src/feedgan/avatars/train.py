"""Train an avatar GAN on an :class:`~feedgan.avatars.images.ImageSet`, then sample from the run.

A run folder holds ``avatar.json`` (preset, sizes, classes, training settings), ``stats.jsonl``
(one line per tick: losses, samples/s), ``checkpoints/`` (exact resume), ``samples/step-*.png``
(grids from fixed latents every ``sample_every`` steps, so progress is visible) and, at the end,
``generator.safetensors`` (the EMA generator when the preset keeps one). Under ``torchrun`` every rank
trains and rank 0 alone writes into the run folder; :func:`train` returns on every rank once those
files are complete::

    from feedgan.avatars.images import load_images
    from feedgan.avatars.train import AvatarConfig, train, sample
    images = load_images("faces/", size=32)
    run = train(images, "runs/00001-avatars", AvatarConfig(preset="modern", size=32, budget_s=600))
    grid = sample(run, n=64, seed=1)          # uint8 (64, 32, 32, 3)
"""
from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from ..gan import GANConfig, GANTask, GANTrainer, ddp
from ..gan.checkpoint import list_checkpoints, trim_stats
from ..io import ArtifactError, atomic_open, atomic_path, read_json, read_safetensors, remove_orphans
from ..params import check_params
from .augment import diff_augment, parse_policy
from .grid import save_grid
from .images import ImageDataError, is_single_image
from .models import build
from .presets import FEW_IMAGES, PRESETS, SCORE_AFTER_STEPS


@dataclass
class AvatarConfig:
    """Everything a run needs besides the images. ``None`` fields take the preset's value."""

    preset: str = "modern"
    size: int | None = None
    channels: int | None = None
    z_dim: int | None = None
    width: int | None = None  # base channel count of G and D; None = the preset's
    loss: str | None = None
    lr_g: float | None = None
    lr_d: float | None = None
    betas: tuple[float, float] | None = None
    ema_decay: float | None = None
    ema_warmup: bool | None = None  # forget the early generator fast (see GANConfig.ema_warmup)
    augment: str | None = None  # DiffAugment policy, e.g. "color,translation,cutout"; "" = none
    r1_gamma: float | None = None
    penalty_every: int | None = None  # R1 every k-th D update with k times the weight (lazy regularisation)
    batch_size: int = 64
    max_steps: int = 100_000
    budget_s: float | None = None  # stop after this many seconds of training (the step in flight finishes)
    sample_every: int = 500
    checkpoint_every: int = 1000
    condition: str | None = None  # a label key (e.g. "gender") to condition G and D on
    seed: int = 0
    device: str = "auto"
    classes: list[int] = field(default_factory=list)  # filled in from the labels when conditioning

    def resolved(self) -> "AvatarConfig":
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        base = PRESETS[self.preset]
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in base.items():
            if values[k] is None:
                values[k] = v
        values["penalty_every"] = values["penalty_every"] or 1
        values["ema_warmup"] = bool(values["ema_warmup"])
        _check_size(self.preset, values["size"])
        return AvatarConfig(**values)


def _check_size(preset: str, size: int) -> None:
    """The dense seed-mlp takes any side; the convolutional presets halve it down to 4x4."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r} (CLI: --size): give the image side in pixels, e.g. 32")
    if preset != "seed-mlp" and (size < 8 or size & (size - 1)):
        raise ValueError(f"size={size} (CLI: --size): preset {preset} needs a power of two from 8, e.g. 32 or 64 "
                         f"(seed-mlp takes any size)")


class AvatarTask(GANTask):
    """Real images (random horizontal flips) and, with classes, their labels; DiffAugment in ``d_input``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, n_classes: int, z_dim: int,
                 augment: str):
        self.images, self.labels, self.n_classes, self.z_dim = images, labels, n_classes, z_dim
        self.ops = parse_policy(augment)
        self.steps_per_epoch = None

    def real_batch(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(self.images), (n,), generator=generator)
        x = self.images[idx].float().div_(127.5).sub_(1.0)  # (n, C, S, S) in [-1, 1]
        flip = torch.rand(n, generator=generator) < 0.5
        x[flip] = x[flip].flip(3)
        batch = {"real": x}
        if self.n_classes:
            batch["y"] = self.labels[idx]
        return batch

    def latent(self, n: int, generator: torch.Generator, y: torch.Tensor | None = None) -> torch.Tensor:
        z = torch.randn(n, self.z_dim, generator=generator)
        if self.n_classes and y is None:
            y = torch.randint(self.n_classes, (n,), generator=generator)
        return _with_labels(z, y, self.n_classes)

    def fake(self, G, batch, generator):
        return G(self.latent(len(batch["real"]), generator, batch.get("y")).to(batch["real"].device))

    def d_input(self, sample, batch):
        x = diff_augment(sample, self.ops) if self.ops else sample
        if self.n_classes:
            planes = F.one_hot(batch["y"], self.n_classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, planes.expand(-1, -1, *x.shape[2:])], 1)
        return x


def _with_labels(z: torch.Tensor, y: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    """``z`` (n, z_dim) with the one-hot of class indices ``y`` appended (unchanged without classes)."""
    return torch.cat([z, F.one_hot(y.cpu(), n_classes).float()], 1) if n_classes else z


class _Progress:
    """Sample grids from fixed latents every ``every`` steps (rank 0 only), and the time budget
    (under DDP the ranks stop together: at the first step where any rank's budget is spent)."""

    def __init__(self, run: Path, task: AvatarTask, z: torch.Tensor, every: int, budget_s: float | None):
        self.run, self.task, self.z, self.every, self.budget_s = run, task, z, every, budget_s
        self.t0: float | None = None
        self.written: int | None = None  # the step of the newest grid

    def on_step(self, trainer) -> None:
        if self.t0 is None:
            self.t0 = time.perf_counter() - trainer.elapsed  # a resumed run keeps its spent time
        if trainer.step % self.every == 0:
            self.write(trainer)
        if self.budget_s is not None:
            spent = time.perf_counter() - self.t0 >= self.budget_s
            if ddp.any_true(spent, trainer.dist, trainer.device):  # the same decision on every rank
                trainer.request_stop(f"time budget of {self.budget_s:.0f} s spent")

    def on_end(self, trainer) -> None:
        self.write(trainer)

    def write(self, trainer) -> None:
        if not trainer.dist.is_main or self.written == trainer.step:
            return
        self.written = trainer.step
        images = generate(trainer.G_eval, self.z)
        path = save_grid(images, self.run / "samples" / f"step-{trainer.step:07d}.png")
        with atomic_path(self.run / "samples" / "latest.png") as tmp:  # never a half-written latest.png
            shutil.copyfile(path, tmp)


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """uint8 images (N, S, S, C) from latents ``z`` (N, z_in); G is put in eval mode and restored."""
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    out = []
    for i in range(0, len(z), batch_size):
        x = G(z[i:i + batch_size].to(device)).float().cpu()  # (b, C, S, S) in [-1, 1]
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    G.train(was_training)
    return np.concatenate(out)


def _tensor_images(images: np.ndarray, size: int, channels: int) -> torch.Tensor:
    if images.shape[1:3] != (size, size) or images.shape[3] != channels:
        raise ValueError(f"images are {images.shape[1]}x{images.shape[2]}x{images.shape[3]}, the run expects "
                         f"{size}x{size}x{channels}: load them with size={size}" +
                         (", grayscale=True" if channels == 1 else ""))
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (N, C, S, S) uint8


def _classes(image_set, cfg: AvatarConfig) -> tuple[torch.Tensor | None, list[int]]:
    if cfg.condition is None:
        return None, []
    if cfg.condition not in image_set.labels:
        have = ", ".join(image_set.labels) or "none (the file names carry no labels)"
        raise ValueError(f"cannot condition on {cfg.condition!r}: the images' labels are {have}")
    values = np.asarray(image_set.labels[cfg.condition])
    classes = sorted(int(v) for v in np.unique(values))
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[int(v)] for v in values], dtype=torch.long), classes


def check_image_count(n: int, source: dict | None = None) -> str | None:
    """Refuse a training set of one image (:class:`ImageDataError` with the fix; ``source``: how it was
    loaded, as in :func:`train`); a note when there are fewer than :data:`FEW_IMAGES`, else None."""
    source = source or {}
    path = source.get("path", "the image set")
    if n <= 1 and source.get("path") and is_single_image(path, source.get("sheet")):
        raise ImageDataError(f"{path} holds one image, and a GAN learns from many: pass --sheet WxH (one picture's "
                             f"size in pixels) if it is a sprite sheet, or give a folder, archive or .npz of images")
    if n <= 1:
        raise ImageDataError(f"{path}: {n} image to train on, and a GAN learns from many: give at least "
                             f"{FEW_IMAGES} (check --where, --limit and --sheet)")
    if n < FEW_IMAGES:
        return (f"{n} images is few for a GAN: it will likely copy them (check with `feedgan avatars score`); "
                f"use {FEW_IMAGES} or more, thousands for faces")
    return None


def last_stats(run: str | Path) -> dict | None:
    """The newest whole line of a run's ``stats.jsonl`` (its ``step`` is the steps trained in all), or None."""
    f = Path(run) / "stats.jsonl"
    for line in reversed(f.read_text().splitlines() if f.exists() else []):
        try:
            return json.loads(line)
        except ValueError:  # a line cut off by a killed run
            continue
    return None


def score_note(preset: str, steps: int | None) -> str | None:
    """A warning when a run of ``preset`` trained fewer steps than its scores need to mean much."""
    needed = SCORE_AFTER_STEPS.get(preset)
    if steps is None or needed is None or steps >= needed:
        return None
    return (f"this run trained {steps:,} steps; preset {preset} needs about {needed:,} steps before its scores "
            f"mean much (train on with --resume)")


def train(image_set, run: str | Path, config: AvatarConfig, progress=None, resume: bool = False,
          source: dict | None = None) -> Path:
    """Train on ``image_set`` into the run folder ``run``; ``resume`` continues from its newest intact
    checkpoint (from step 0, with a warning, when it has none yet). ``source`` (how the images were
    loaded: path, sheet, where, ...) is kept in ``avatar.json`` so the run can be resumed and scored
    for memorisation later."""
    check_image_count(len(image_set), source)
    run = Path(run)
    cfg = config.resolved()
    info, _ = ddp.setup(cfg.device)  # under torchrun: joins the process group GANTrainer uses
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
    labels, cfg.classes = _classes(image_set, cfg)
    images = _tensor_images(image_set.images, cfg.size, cfg.channels)
    torch.manual_seed(cfg.seed)  # module initialisation
    G, D = build(cfg.preset, cfg.size, cfg.channels, cfg.z_dim, len(cfg.classes), cfg.width)
    task = AvatarTask(images, labels, len(cfg.classes), cfg.z_dim, cfg.augment)
    gan = GANConfig(loss=cfg.loss, lr_g=cfg.lr_g, lr_d=cfg.lr_d, betas=cfg.betas, batch_size=cfg.batch_size,
                    ema_decay=cfg.ema_decay, ema_warmup=cfg.ema_warmup, r1_gamma=cfg.r1_gamma,
                    penalty_every=cfg.penalty_every, max_steps=cfg.max_steps,
                    tick_every=min(100, cfg.sample_every), checkpoint_every=cfg.checkpoint_every,
                    seed=cfg.seed, device=cfg.device)
    trainer = GANTrainer(G, D, task, gan, out_dir=run)
    if resume:
        _resume(trainer, run)
    if info.is_main:
        meta = {"preset": cfg.preset, "config": asdict(cfg), "n_images": len(images), "images": source or {},
                "first_images": image_set.names[:5]}
        with atomic_open(run / "avatar.json") as fh:
            json.dump(meta, fh, indent=2)
        (run / "samples").mkdir(exist_ok=True)
    fixed = task.latent(64, torch.Generator().manual_seed(cfg.seed + 1))  # the same grid latents every time
    trainer.fit(progress=progress, callbacks=[_Progress(run, task, fixed, cfg.sample_every, cfg.budget_s)])
    if info.is_main:
        with atomic_path(run / "generator.safetensors") as tmp:  # a killed run never leaves a half-written one
            save_file({k: v.detach().cpu().contiguous() for k, v in trainer.G_eval.state_dict().items()}, str(tmp))
    ddp.barrier(info)  # no rank returns before the run folder is complete
    return run


def _resume(trainer: GANTrainer, run: Path) -> None:
    """Continue from the newest intact checkpoint; a run killed before its first one starts again."""
    if list_checkpoints(run):
        trainer.resume()
        return
    warnings.warn(f"{run} has no checkpoint yet (killed before the first one): training again from step 0")
    if trainer.dist.is_main:
        remove_orphans(run)
        trim_stats(run, 0)


def read_run(run: str | Path) -> tuple[AvatarConfig, dict]:
    """A run's resolved config and its whole ``avatar.json`` (with ``images``: how they were loaded);
    :class:`~feedgan.io.ArtifactError` when the file is cut off or its settings do not check out."""
    meta_file = Path(run) / "avatar.json"
    meta = read_json(meta_file, missing=f"{run} is not an avatar run: avatar.json is missing "
                                        "(make one with `feedgan avatars train --images PATH`)")
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        raise ArtifactError(meta_file, "has no \"config\" object")
    try:
        return AvatarConfig(**check_params(AvatarConfig, config)).resolved(), meta
    except ValueError as exc:  # ParamError, or an unknown preset
        raise ArtifactError(meta_file, str(exc)) from exc


def load_generator(run: str | Path, device: str = "cpu") -> tuple[nn.Module, AvatarConfig]:
    """The trained generator (eval mode) and the run's resolved config; :class:`~feedgan.io.ArtifactError`
    when the weights are damaged or do not fit the generator ``avatar.json`` describes."""
    weights = Path(run) / "generator.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{run} is not a finished avatar run: generator.safetensors is missing "
                                "(train with `feedgan avatars train`, or resume it)")
    cfg, _ = read_run(run)
    G, _ = build(cfg.preset, cfg.size, cfg.channels, cfg.z_dim, len(cfg.classes), cfg.width)
    try:
        G.load_state_dict(read_safetensors(weights, framework="torch"))
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        reason = " ".join(str(exc).split())[:300]
        raise ArtifactError(weights, f"does not fit the {cfg.preset} generator of avatar.json ({reason})",
                            fix="avatar.json or the weights were changed or mixed up: restore both, or train again"
                            ) from exc
    return G.to(device).eval(), cfg


def latents(cfg: AvatarConfig, n: int, seed: int, label: int | None = None) -> torch.Tensor:
    """``n`` latents for a run: N(0, I) plus, with classes, the one-hot of ``label`` (or labels in turn)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, cfg.z_dim, generator=gen)
    if cfg.classes:
        if label is not None and label not in cfg.classes:
            raise ValueError(f"label {label} is not one of the run's classes {cfg.classes}")
        y = torch.full((n,), cfg.classes.index(label)) if label is not None else torch.arange(n) % len(cfg.classes)
        z = _with_labels(z, y, len(cfg.classes))
    return z


def sample(run: str | Path, n: int = 64, seed: int = 0, label: int | None = None, device: str = "cpu") -> np.ndarray:
    """``n`` generated avatars, uint8 (n, S, S, C)."""
    G, cfg = load_generator(run, device)
    return generate(G, latents(cfg, n, seed, label))


def interpolate(run: str | Path, steps: int = 8, rows: int = 4, seed: int = 0, device: str = "cpu") -> np.ndarray:
    """``rows`` latent walks of ``steps`` images each (spherical interpolation between two draws):
    uint8 (rows * steps, S, S, C), row-major."""
    if steps < 2 or rows < 1:
        raise ValueError(f"an interpolation needs at least 2 steps and 1 row, got {steps} and {rows}")
    G, cfg = load_generator(run, device)
    a, b = latents(cfg, rows, seed), latents(cfg, rows, seed + 1)
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    za, zb = a[:, None, :cfg.z_dim], b[:, None, :cfg.z_dim]  # (rows, 1, z_dim)
    omega = torch.acos((F.normalize(za, dim=2) * F.normalize(zb, dim=2)).sum(2, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega).clamp_min(1e-6)
    z = (torch.sin((1 - t) * omega) / so) * za + (torch.sin(t * omega) / so) * zb  # (rows, steps, z_dim)
    if cfg.classes:
        z = torch.cat([z, a[:, None, cfg.z_dim:].expand(-1, steps, -1)], 2)
    return generate(G, z.reshape(rows * steps, -1))

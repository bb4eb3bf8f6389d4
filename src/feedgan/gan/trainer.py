"""One adversarial training engine for every GAN in feedgan.

The trainer knows nothing about items, users or pixels. The caller hands it a generator ``G``,
a discriminator ``D`` (both ``nn.Module``) and a *task* (:class:`GANTask`) that knows the data::

    batch = task.real_batch(n, rng)        # {"real": (B, ...), plus conditions, masks, ...}
    fake  = task.fake(G, batch, rng)       # (B, ...) generator output for the same conditions
    D(task.d_input(batch["real"], batch))  # what D sees, e.g. cat([x * mask, condition])
    task.g_extra_loss(fake, batch)         # optional scalar added to the generator loss

One *step* is ``d_steps`` discriminator updates followed by ``g_steps`` generator updates, each
on a freshly drawn batch; ``step`` counts completed steps. D updates minimise
``loss.d + gp_weight * GP + r1_gamma / 2 * R1 + r2_gamma / 2 * R2`` on detached fakes; G updates
minimise ``adv_weight * loss.g + g_extra`` with D's weights frozen. After every G update the EMA copy
``G_ema <- decay * G_ema + (1 - decay) * G`` is refreshed; ``G_eval`` (the EMA copy when enabled,
else ``G``) is the one to evaluate and sample from.

Runtime invariants:

* **Non-finite losses.** Every update checks its loss terms before ``backward``; with
  ``nan_policy="stop"`` the trainer restores the last good state (the newest checkpoint, or the
  in-memory copy taken at the same moments) and raises :class:`NonFiniteLossError` naming the
  step, the term and the checkpoint; ``"skip"`` drops that update and counts it.
* **Exact resume.** A checkpoint holds G, D, G_ema, both optimizers, the step and every random
  stream: ``rng`` (the ``torch.Generator`` handed to the task) and the global torch RNG that
  modules such as dropout draw from. The trainer swaps its own global-RNG state in for the
  duration of ``fit`` (the caller's is restored afterwards), so a resumed run reproduces an
  uninterrupted one bit for bit on the same hardware.
* **DDP.** Under torchrun (see :mod:`feedgan.gan.ddp`) G and D are wrapped in DDP, rank ``r``
  seeds its batches with ``seed + r``, only rank 0 writes files, and every checkpoint first
  checks that the ranks' weights agree.

Files under ``out_dir``: ``stats.jsonl`` (one JSON line per tick), ``checkpoints/ckpt-*.pt``,
``tensorboard/`` (optional), and whatever callbacks write (``best_generator.pt``).
"""
from __future__ import annotations

import copy
import json
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from ..optim import adam
from . import ddp
from .checkpoint import Resumable
from .losses import get_loss, gradient_penalty, r1_penalty, r2_penalty

NAN_POLICIES = ("stop", "skip")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the trainer has already restored the last good weights."""


@dataclass
class GANConfig:
    """Hyperparameters of :class:`GANTrainer` (plain data: stored in every checkpoint)."""

    loss: str = "nonsaturating"  # minimax | nonsaturating | hinge | wasserstein
    d_steps: int = 1  # D updates per step
    g_steps: int = 1  # G updates per step
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)  # Adam, both players
    batch_size: int = 64  # real samples per D update
    g_batch_size: int | None = None  # samples per G update; None = batch_size
    adv_weight: float = 1.0  # weight of the adversarial term in G's loss (a regulariser when small)
    weight_decay_g: float = 0.0  # L2 on G's parameters, added to the gradient by Adam (wd * theta)
    weight_decay_d: float = 0.0  # the same for D
    gp_weight: float = 0.0  # WGAN-GP weight (10 is the paper's value); 0 = off
    r1_gamma: float = 0.0  # adds r1_gamma / 2 * E||grad D(real)||^2 to the D loss; 0 = off
    r2_gamma: float = 0.0  # the same on fakes; 0 = off
    penalty_every: int = 1  # lazy R1/R2 (Karras et al. 2020): every k-th D update, with gamma * k
    ema_decay: float | None = None  # EMA of G's weights, e.g. 0.999; None = off
    ema_warmup: bool = False  # decay min(ema_decay, (1 + t) / (10 + t)) at step t, so early G is forgotten fast
    max_steps: int = 1000
    epochs: int | None = None  # if set: epochs * task.steps_per_epoch steps (wins over max_steps)
    tick_every: int = 100  # steps between stats.jsonl lines
    checkpoint_every: int | None = 1000  # steps between checkpoints; None = only at the end
    keep_checkpoints: int = 3  # newest files kept on disk; 0 = all
    seed: int = 0
    device: str = "auto"  # auto -> cuda if available else cpu
    grad_clip: float | None = None  # max global gradient norm per player
    nan_policy: str = "stop"  # stop | skip
    tensorboard: bool = False  # also log scalars to out_dir/tensorboard

    def __post_init__(self):
        get_loss(self.loss)  # a ValueError naming the valid losses
        self.betas = tuple(float(b) for b in self.betas)
        positive = {"d_steps": self.d_steps, "g_steps": self.g_steps, "batch_size": self.batch_size,
                    "penalty_every": self.penalty_every,
                    "tick_every": self.tick_every, "max_steps": self.max_steps}
        for opt in ("g_batch_size", "epochs", "checkpoint_every"):
            if getattr(self, opt) is not None:
                positive[opt] = getattr(self, opt)
        for name, value in positive.items():
            if int(value) != value or value < 1:
                raise ValueError(f"GANConfig.{name} must be a positive integer, got {value!r}")
        for name in ("gp_weight", "r1_gamma", "r2_gamma", "lr_g", "lr_d", "adv_weight", "weight_decay_g",
                     "weight_decay_d"):
            if getattr(self, name) < 0:
                raise ValueError(f"GANConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"GANConfig.ema_decay must be in [0, 1) or None, got {self.ema_decay!r}")
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"GANConfig.nan_policy must be one of {', '.join(NAN_POLICIES)}, got {self.nan_policy!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"GANConfig.grad_clip must be positive or None, got {self.grad_clip!r}")


class GANTask(ABC):
    """What the trainer needs to know about the data. Subclass it (or write any object with
    the same methods; ``d_input`` and ``g_extra_loss`` are optional).

    All randomness must come from the ``generator`` argument (a CPU ``torch.Generator`` the
    trainer seeds, checkpoints and restores), never from numpy or Python's ``random``, or resume
    and seeds stop being exact. The trainer moves every tensor of a real batch to its device.
    Call ``G`` as a module (``G(z)``), not its methods, so DDP sees the forward pass.
    """

    steps_per_epoch: int | None = None  # optional; enables GANConfig.epochs and the "epoch" stat

    @abstractmethod
    def real_batch(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """``n`` real samples under key ``"real"`` (n, ...), plus anything ``fake``/``d_input``
        need for the same samples (conditions, masks), each with first axis ``n``."""

    @abstractmethod
    def fake(self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        """Generator output for this batch (same shape as ``batch["real"]``). Draw noise on the
        CPU generator and move it: ``torch.randn(n, k, generator=generator).to(batch["real"].device)``."""

    def d_input(self, sample: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """What D sees for a real or a fake ``sample`` (default: the sample itself)."""
        return sample

    def g_extra_loss(self, fake: Tensor, batch: dict[str, Tensor]) -> Tensor | None:
        """An optional scalar added to the generator loss (e.g. a reconstruction term)."""
        return None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _check_task(task) -> None:
    missing = [m for m in ("real_batch", "fake") if not callable(getattr(task, m, None))]
    if missing:
        raise TypeError(f"{type(task).__name__} is not a GAN task: it lacks {', '.join(missing)} (see feedgan.gan.GANTask)")


class _Tick:
    """Running sums of logged values between two stats lines."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


class GANTrainer(Resumable):
    """Alternating D/G training of ``G`` and ``D`` on ``task`` (see the module docstring).

    ``GANTrainer(G, D, task, config, out_dir).fit()`` trains up to ``config.max_steps`` (or
    ``epochs``) steps; ``.resume()`` first loads the newest checkpoint in ``out_dir``.
    Attributes: ``G``, ``D`` (the raw modules, on ``device``), ``G_ema`` (or None), ``G_eval``,
    ``opt_g``, ``opt_d``, ``rng`` (the task's generator), ``step``, ``dist``, ``last_checkpoint``.
    """

    def __init__(self, G: nn.Module, D: nn.Module, task, config: GANConfig | None = None,
                 out_dir: str | Path | None = None):
        _check_task(task)
        self.config = cfg = config if config is not None else GANConfig()
        self.task = task
        self.loss = get_loss(cfg.loss)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.dist, self.device = ddp.setup(cfg.device)
        self.G, self.D = G.to(self.device), D.to(self.device)
        self._G, self._D = ddp.wrap(self.G, self.dist, self.device), ddp.wrap(self.D, self.dist, self.device)
        # after wrap: under DDP the EMA starts from rank 0's broadcast weights on every rank
        self.G_ema = None
        if cfg.ema_decay is not None:
            self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self._d_params = [p for p in self.D.parameters() if p.requires_grad]
        g_params = [p for p in self.G.parameters() if p.requires_grad]
        if not g_params or not self._d_params:
            raise ValueError("both G and D need trainable parameters")
        self.opt_g = adam(g_params, lr=cfg.lr_g, betas=cfg.betas, weight_decay=cfg.weight_decay_g)
        self.opt_d = adam(self._d_params, lr=cfg.lr_d, betas=cfg.betas, weight_decay=cfg.weight_decay_d)
        seed = int(cfg.seed) + self.dist.rank  # each rank draws different batches
        self.rng = torch.Generator().manual_seed(seed)
        self._module_rng = torch.Generator().manual_seed(seed).get_state()  # the global RNG inside fit
        self._cuda_rng: Tensor | None = None
        self._in_fit = False
        self.step, self.elapsed, self.skipped = 0, 0.0, 0
        self.last_checkpoint: Path | None = None
        self._snapshot: dict | None = None  # the last good state, in memory (CPU tensors)
        self._snapshot_file: Path | None = None  # where that state also lies on disk, if anywhere
        self.stop_requested, self.stop_reason = False, None

    # -- public surface ---------------------------------------------------------------------------
    @property
    def G_eval(self) -> nn.Module:
        """The generator to evaluate and sample from: the EMA copy when enabled, else ``G``."""
        return self.G_ema if self.G_ema is not None else self.G

    @property
    def total_steps(self) -> int:
        cfg = self.config
        if cfg.epochs is None:
            return cfg.max_steps
        spe = getattr(self.task, "steps_per_epoch", None)
        if not spe:
            raise ValueError("GANConfig.epochs needs task.steps_per_epoch (a positive int); or set max_steps")
        return cfg.epochs * int(spe)

    def request_stop(self, reason: str | None = None) -> None:
        """Finish the current step, write a last tick and checkpoint, and return from ``fit``."""
        self.stop_requested, self.stop_reason = True, reason

    def fit(self, progress=None, callbacks: Iterable[Any] = ()) -> "GANTrainer":
        """Train until ``total_steps`` (or a callback calls ``request_stop``); returns ``self``.

        ``progress``: a Rich ``Progress`` (from ``feedgan.progress.progress_bar``) or None.
        ``callbacks``: objects with any of ``on_step(trainer)`` (after every step),
        ``on_tick(trainer, stats)`` (after every stats line) and ``on_end(trainer)``.
        """
        cfg, total, callbacks = self.config, self.total_steps, list(callbacks)
        self.stop_requested, self.stop_reason = False, None
        main = self.dist.is_main
        if main and self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.out_dir / "stats.jsonl", "a", encoding="utf-8") if main and self.out_dir else None
        writer = self._tensorboard() if main else None
        bar = progress.add_task(f"GAN {cfg.loss}", total=total, completed=self.step) if progress is not None else None
        tick, t0 = _Tick(), time.perf_counter()
        try:
            with self._rng_scope():
                if self._snapshot is None or self._snapshot["step"] != self.step:
                    # what a NaN before the first checkpoint restores
                    self._snapshot, self._snapshot_file = self.state_dict(), None
                while self.step < total and not self.stop_requested:
                    tick.add(self._train_step())
                    self.step += 1
                    tick.steps += 1
                    for cb in callbacks:
                        if hasattr(cb, "on_step"):
                            cb.on_step(self)
                    if bar is not None:
                        progress.advance(bar)
                    ending = self.step >= total or self.stop_requested
                    if self.step % cfg.tick_every == 0 or ending:
                        now = time.perf_counter()
                        self.elapsed += now - t0
                        stats = self._stats(tick, now - t0)
                        tick, t0 = _Tick(), now
                        if log is not None:
                            log.write(json.dumps(stats) + "\n")
                            log.flush()
                        if writer is not None:
                            for k, v in stats.items():
                                if k != "step" and isinstance(v, (int, float)):
                                    writer.add_scalar(k, v, self.step)
                        if bar is not None:
                            progress.update(bar, description=f"GAN step {self.step}  D {_fmt(stats['d_loss'])}  "
                                                             f"G {_fmt(stats['g_loss'])}  "
                                                             f"{stats['samples_per_s']:.0f} samples/s")
                        for cb in callbacks:
                            if hasattr(cb, "on_tick"):
                                cb.on_tick(self, stats)
                    if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or \
                            (ending and self._snapshot["step"] != self.step):
                        self.checkpoint()
        finally:
            if log is not None:
                log.close()
            if writer is not None:
                writer.close()
        for cb in callbacks:
            if hasattr(cb, "on_end"):
                cb.on_end(self)
        return self

    # -- one step ---------------------------------------------------------------------------------
    def _train_step(self) -> dict[str, float]:
        """``d_steps`` D updates, then ``g_steps`` G updates; the mean of each logged value."""
        tick = _Tick()
        d_steps, every = self.config.d_steps, self.config.penalty_every
        for i in range(d_steps):  # which updates carry R1/R2 follows from the step: exact on resume
            tick.add(self._d_update(penalise=(self.step * d_steps + i) % every == 0))
        for _ in range(self.config.g_steps):
            tick.add(self._g_update())
        return tick.means()

    def _draw(self, n: int) -> dict[str, Tensor]:
        batch = self.task.real_batch(n, self.rng)
        if not isinstance(batch, dict) or "real" not in batch:
            raise TypeError(f"{type(self.task).__name__}.real_batch must return a dict with a 'real' tensor")
        return {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}

    def _d_update(self, penalise: bool = True) -> dict[str, float]:
        cfg, task, d_input = self.config, self.task, getattr(self.task, "d_input", lambda s, b: s)
        batch = self._draw(cfg.batch_size)
        with torch.no_grad():
            fake = task.fake(self.G, batch, self.rng)  # (B, ...) raw G: no DDP bookkeeping, no graph
        real_in, fake_in = d_input(batch["real"], batch), d_input(fake, batch)  # (B, ...) each
        real_logits, fake_logits = self._D(real_in), self._D(fake_in)
        terms = {"d_adv": self.loss.d(real_logits, fake_logits)}
        if cfg.gp_weight:
            terms["gp"] = cfg.gp_weight * gradient_penalty(self._D, real_in, fake_in, self.rng)
        lazy = cfg.penalty_every
        if cfg.r1_gamma and penalise:
            terms["r1"] = lazy * cfg.r1_gamma / 2 * r1_penalty(self._D, real_in)
        if cfg.r2_gamma and penalise:
            terms["r2"] = lazy * cfg.r2_gamma / 2 * r2_penalty(self._D, fake_in)
        total = sum(terms.values())
        values = self._guard("D", terms)
        if values is None:
            return {"skipped": 1.0}
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self._step(self.opt_d, self._d_params)
        values["d_loss"] = sum(values.values())
        if len(terms) == 1 and not (cfg.r1_gamma or cfg.r2_gamma or cfg.gp_weight):
            del values["d_adv"]  # no penalties: equal to d_loss
        values["d_real"] = float(real_logits.detach().mean())
        values["d_fake"] = float(fake_logits.detach().mean())
        return values

    def _g_update(self) -> dict[str, float]:
        cfg, task, d_input = self.config, self.task, getattr(self.task, "d_input", lambda s, b: s)
        batch = self._draw(cfg.g_batch_size or cfg.batch_size)
        for p in self._d_params:  # D is a fixed critic here: no gradients into its weights
            p.requires_grad_(False)
        try:
            fake = task.fake(self._G, batch, self.rng)  # (B, ...) through DDP when distributed
            terms = {"g_adv": cfg.adv_weight * self.loss.g(self.D(d_input(fake, batch)))}  # raw D: grads stay local
            extra = task.g_extra_loss(fake, batch) if hasattr(task, "g_extra_loss") else None
        finally:
            for p in self._d_params:
                p.requires_grad_(True)
        if extra is not None:
            if not isinstance(extra, Tensor) or extra.numel() != 1:
                raise ValueError(f"{type(task).__name__}.g_extra_loss must return a scalar tensor or None")
            terms["g_extra"] = extra.reshape(())
        total = sum(terms.values())
        values = self._guard("G", terms)
        if values is None:
            return {"skipped": 1.0}
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self._step(self.opt_g, self.opt_g.param_groups[0]["params"])
        self._update_ema()
        values["g_loss"] = sum(values.values())
        if "g_extra" not in values:
            del values["g_adv"]  # equal to g_loss
        return values

    def _step(self, opt: torch.optim.Optimizer, params: list[Tensor]) -> None:
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        opt.step()

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        decay = self.config.ema_decay
        if self.config.ema_warmup:
            decay = min(decay, (2.0 + self.step) / (11.0 + self.step))  # t = step + 1: this step's number
        w = 1.0 - decay
        for e, p in zip(self.G_ema.parameters(), self.G.parameters()):
            e.lerp_(p, w)  # e + w * (p - e) = decay * e + (1 - decay) * p
        for e, b in zip(self.G_ema.buffers(), self.G.buffers()):
            e.copy_(b)  # running statistics and the like follow G directly

    def _guard(self, player: str, terms: dict[str, Tensor]) -> dict[str, float] | None:
        """The terms as floats when all are finite (on every rank); else skip or restore + raise."""
        values = torch.stack([t.detach().float().reshape(()) for t in terms.values()]).cpu()  # (n_terms,)
        bad = ~torch.isfinite(values)
        if not ddp.any_true(bool(bad.any()), self.dist, self.device):
            return dict(zip(terms, values.tolist()))
        if self.config.nan_policy == "skip":
            self.skipped += 1
            return None
        step = self.step + 1  # the step being computed
        named = ", ".join(f"{k}={v}" for k, v, b in zip(terms, values.tolist(), bad.tolist()) if b) \
            or "a loss on another rank"
        good, file = self._snapshot["step"], self._snapshot_file
        self.load_state_dict(self._snapshot)
        where = f"last good checkpoint: {file}" if file is not None else "no checkpoint on disk for it; restored from memory"
        raise NonFiniteLossError(
            f"non-finite {player} loss at step {step} ({named}); restored the weights of step {good} ({where}). "
            "Try a lower learning rate, grad_clip, or a gradient penalty.")

    # -- logging ----------------------------------------------------------------------------------
    def _stats(self, tick: _Tick, seconds: float) -> dict[str, Any]:
        cfg = self.config
        per_step = cfg.d_steps * cfg.batch_size + cfg.g_steps * (cfg.g_batch_size or cfg.batch_size)
        spe = getattr(self.task, "steps_per_epoch", None)
        stats = {"step": self.step, "epoch": round(self.step / spe, 4) if spe else None,
                 "time": round(self.elapsed, 3),
                 "samples_per_s": round(tick.steps * per_step * self.dist.world_size / max(seconds, 1e-9), 1)}
        stats.update({k: v for k, v in tick.means().items() if k != "skipped"})
        stats.setdefault("d_loss", None)  # every update of the tick was skipped
        stats.setdefault("g_loss", None)
        if cfg.nan_policy == "skip":
            stats["skipped"] = self.skipped
        return stats

    def _tensorboard(self):
        if not self.config.tensorboard:
            return None
        if self.out_dir is None:
            warnings.warn("tensorboard=True needs an out_dir; logging nothing to TensorBoard")
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("tensorboard=True, but torch.utils.tensorboard cannot be imported (pip install "
                          "tensorboard); scalars go to stats.jsonl only")
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))

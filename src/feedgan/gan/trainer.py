"""One adversarial training engine for every GAN in feedgan.

The trainer knows nothing about items, users or pixels. The caller hands it a generator ``G``,
a discriminator ``D`` (both ``nn.Module``) and a *task* (:class:`GANTask`) that knows the data::

    batch = task.real_batch(n, rng)        # {"real": (B, ...), plus conditions, masks, ...}
    fake  = task.fake(G, batch, rng)       # (B, ...) generator output for the same conditions
    D(task.d_input(batch["real"], batch))  # what D sees, e.g. cat([x * mask, condition])
    task.g_extra_loss(fake, batch)         # optional scalar added to the generator loss

The step loop itself (epochs, ticks, progress, callbacks, early stop, the NaN guard) is
:class:`~feedgan.gan.loop.TrainLoop`; this module says what one GAN step does.

One *step* is ``d_steps`` discriminator updates followed by ``g_steps`` generator updates, each
on a freshly drawn batch; ``step`` counts completed steps. D updates minimise
``loss.d + gp_weight * GP + r1_gamma / 2 * R1 + r2_gamma / 2 * R2`` on detached fakes; G updates
minimise ``adv_weight * loss.g + g_extra`` with D's weights frozen. After every G update the EMA copy
``G_ema <- decay * G_ema + (1 - decay) * G`` is refreshed; ``G_eval`` (the EMA copy when enabled,
else ``G``) is the one to evaluate and sample from.

Runtime invariants:

* **Non-finite losses, gradients and weights.** The loop's device-side guard (see
  :mod:`feedgan.gan.loop`) is checked at every stats tick, before a checkpoint or a
  :class:`~feedgan.gan.BestCheckpoint` evaluation, and at the end. With ``nan_policy="stop"`` a
  failed check restores the last good state (the newest checkpoint, or the in-memory copy taken
  at the same moments) and raises :class:`NonFiniteLossError` naming the first bad step, the term
  and the checkpoint; ``"skip"`` drops such updates and counts them. Under either policy weights
  that are no longer finite or have diverged are refused the same way.
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

import contextlib
import copy
import json
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..optim import adam
from . import ddp
from .checkpoint import Resumable
from .loop import NAN_POLICIES, NonFiniteLossError, TrainLoop, _Guard, _Tick, total
from .losses import get_loss, gradient_penalty, r1_penalty, r2_penalty


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


class GANTrainer(Resumable, TrainLoop):
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
        self.nan_policy, self.grad_clip, self.tick_every = cfg.nan_policy, cfg.grad_clip, cfg.tick_every
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
        self._guard = _Guard(self.device)
        self.step, self.elapsed, self.skipped = 0, 0.0, 0
        self.last_checkpoint: Path | None = None
        self._snapshot: dict | None = None  # the last good state, in memory (CPU tensors)
        self._snapshot_file: Path | None = None  # where that state also lies on disk, if anywhere
        self.stop_requested, self.stop_reason = False, None
        self._log_file = self._writer = None

    # -- public surface ---------------------------------------------------------------------------
    @property
    def G_eval(self) -> nn.Module:
        """The generator to evaluate and sample from: the EMA copy when enabled, else ``G``."""
        return self.G_ema if self.G_ema is not None else self.G

    @property
    def eval_model(self) -> nn.Module:
        return self.G_eval

    @property
    def steps_per_epoch(self) -> int | None:
        spe = getattr(self.task, "steps_per_epoch", None)
        return int(spe) if spe else None

    @property
    def total_steps(self) -> int:
        cfg = self.config
        if cfg.epochs is None:
            return cfg.max_steps
        if not self.steps_per_epoch:
            raise ValueError("GANConfig.epochs needs task.steps_per_epoch (a positive int); or set max_steps")
        return cfg.epochs * self.steps_per_epoch

    # -- the loop's hooks -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self):
        main = self.dist.is_main
        if main and self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.out_dir / "stats.jsonl", "a", encoding="utf-8") if main and self.out_dir else None
        self._writer = self._tensorboard() if main else None
        try:
            with self._rng_scope():
                if self._snapshot is None or self._snapshot["step"] != self.step:
                    # what a NaN before the first checkpoint restores
                    self._snapshot, self._snapshot_file = self.state_dict(), None
                yield
        finally:
            for f in (self._log_file, self._writer):
                if f is not None:
                    f.close()
            self._log_file = self._writer = None

    def _label(self) -> str:
        return f"GAN {self.config.loss}"

    def _bar_unit(self) -> int:
        return self.steps_per_epoch or 1  # the bar counts epochs when the task knows its length

    def _describe(self, stats: dict) -> str:
        return (f"GAN step {self.step}  D {_fmt(stats['d_loss'])}  G {_fmt(stats['g_loss'])}  "
                f"{stats['samples_per_s']:.0f} samples/s")

    def _log(self, stats: dict) -> None:
        if self._log_file is not None:
            self._log_file.write(json.dumps(stats) + "\n")
            self._log_file.flush()
        if self._writer is not None:
            for k, v in stats.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._writer.add_scalar(k, v, self.step)

    def _after_step(self, ending: bool) -> None:
        cfg = self.config
        if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or \
                (ending and self._snapshot["step"] != self.step):
            self.check_finite()  # a snapshot never holds bad weights
            self.checkpoint()

    def _players(self) -> dict[str, list[Tensor]]:
        players = {"G": list(self.G.parameters()), "D": list(self.D.parameters())}
        if self.G_ema is not None:
            players["G_ema"] = list(self.G_ema.parameters())
        return players

    def _fail(self, problem: str) -> NonFiniteLossError:
        good, file = self._snapshot["step"], self._snapshot_file
        self.load_state_dict(self._snapshot)
        where = (f"last good checkpoint: {file}" if file is not None
                 else "no checkpoint on disk for it; restored from memory")
        return NonFiniteLossError(f"{problem}; restored the weights of step {good} ({where}). "
                                  "Try a lower learning rate, grad_clip, or a gradient penalty.")

    # -- one step ---------------------------------------------------------------------------------
    def _train_step(self, tick: _Tick) -> None:
        """``d_steps`` D updates, then ``g_steps`` G updates, each logged into ``tick``."""
        d_steps, every = self.config.d_steps, self.config.penalty_every
        for i in range(d_steps):  # which updates carry R1/R2 follows from the step: exact on resume
            self._d_update(tick, penalise=(self.step * d_steps + i) % every == 0)
        for _ in range(self.config.g_steps):
            self._g_update(tick)

    def _draw(self, n: int) -> dict[str, Tensor]:
        batch = self.task.real_batch(n, self.rng)
        if not isinstance(batch, dict) or "real" not in batch:
            raise TypeError(f"{type(self.task).__name__}.real_batch must return a dict with a 'real' tensor")
        return {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}

    def _d_update(self, tick: _Tick, penalise: bool = True) -> None:
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
        ok = self._apply("D", self.opt_d, self._d_params, terms)
        values = {**terms, "d_loss": total(terms)}
        if len(terms) == 1 and not (cfg.r1_gamma or cfg.r2_gamma or cfg.gp_weight):
            del values["d_adv"]  # no penalties: equal to d_loss
        values["d_real"], values["d_fake"] = real_logits.mean(), fake_logits.mean()
        tick.add(values, ok)

    def _g_update(self, tick: _Tick) -> None:
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
        ok = self._apply("G", self.opt_g, self.opt_g.param_groups[0]["params"], terms)
        self._update_ema(ok)
        values = {**terms, "g_loss": total(terms)}
        if "g_extra" not in values:
            del values["g_adv"]  # equal to g_loss
        tick.add(values, ok)

    @torch.no_grad()
    def _update_ema(self, ok: Tensor) -> None:
        if self.G_ema is None:
            return
        decay = self.config.ema_decay
        if self.config.ema_warmup:
            decay = min(decay, (2.0 + self.step) / (11.0 + self.step))  # t = step + 1: this step's number
        w = 1.0 - decay
        if self.nan_policy == "skip":  # a dropped G update leaves the EMA where it was
            w = ok.float() * w
        for e, p in zip(self.G_ema.parameters(), self.G.parameters()):
            e.lerp_(p, w)  # e + w * (p - e) = decay * e + (1 - decay) * p
        for e, b in zip(self.G_ema.buffers(), self.G.buffers()):
            e.copy_(b)  # running statistics and the like follow G directly

    # -- logging ----------------------------------------------------------------------------------
    def _stats(self, tick: _Tick, seconds: float) -> dict[str, Any]:
        cfg = self.config
        per_step = cfg.d_steps * cfg.batch_size + cfg.g_steps * (cfg.g_batch_size or cfg.batch_size)
        base = TrainLoop._stats(self, tick, seconds)
        stats = {k: base.pop(k) for k in ("step", "epoch", "time")}
        stats["samples_per_s"] = round(tick.steps * per_step * self.dist.world_size / max(seconds, 1e-9), 1)
        stats.update(base)
        stats.setdefault("d_loss", None)  # every update of the tick was skipped
        stats.setdefault("g_loss", None)
        if "skipped" in stats:
            stats["skipped"] = stats.pop("skipped")
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

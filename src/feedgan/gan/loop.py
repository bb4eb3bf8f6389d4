"""The step loop every iteratively trained model in feedgan runs through.

:class:`TrainLoop` owns the schedule and the guard; a subclass says what one step does.
:class:`~feedgan.gan.trainer.GANTrainer` runs alternating D/G steps on it, and
:class:`LossTrainer` runs one update of a single loss per step (BPR, Mult-VAE, the
discriminator-free ablations).

The loop's contract:

* **Epochs and steps.** ``fit`` runs ``total_steps`` steps; a model that knows its
  ``steps_per_epoch`` may count in epochs (``epochs * steps_per_epoch``), and every stats line
  then carries the fractional ``epoch``. ``step`` counts completed steps and survives across
  ``fit`` calls, so a second call (or a resumed trainer) carries on where the first stopped.
* **Ticks.** Every ``tick_every`` steps, and after the last, a *tick*: the guard is checked,
  the values logged since the last tick are averaged over the updates that were applied (one
  host read), and the stats dict ``{"step", "epoch", "time", <means>...}`` goes to ``_log`` and
  to every callback's ``on_tick``.
* **Progress.** With a Rich ``Progress`` the bar advances every ``_bar_unit()`` steps (one step,
  or one epoch), carrying the latest validation score of an early-stopping callback as the
  ``valid`` field, and its description follows ``_describe(stats)`` after each tick.
* **Callbacks.** Plain objects with any of ``on_start(trainer)``, ``on_step(trainer)`` (after
  every step), ``on_tick(trainer, stats)`` and ``on_end(trainer)``; hooks they lack are skipped.
* **Early stop.** A callback calls :meth:`TrainLoop.request_stop`: the current step finishes,
  a last tick (and, for the GAN, a checkpoint) is written, and ``fit`` returns normally with
  ``stop_reason`` set.
* **Device-side non-finite guard.** Every update goes through :meth:`TrainLoop._apply`, which
  turns its loss terms and gradient norm into a device bool without reading it back; a flagged
  update is not applied (fused Adam skips it on the device, as under mixed-precision loss
  scaling). Nothing is read to the host until a *check* (:meth:`TrainLoop.check_finite`: every
  tick, before a checkpoint or a best-state evaluation, and at the end). With
  ``nan_policy="stop"`` a check raises :class:`NonFiniteLossError` naming the first bad step and
  term; ``"skip"`` drops such updates and counts them (``skipped``). Under either policy a check
  also refuses weights that are no longer finite or have *diverged*: an absolute value past the
  square root of the dtype's largest number (about 1.8e19 in float32), where the product of two
  weights overflows. Under DDP every rank takes the same decision.
* **Best-state restore.** A failed check first hands the problem to the subclass's ``_fail``,
  which restores what it can and returns the error to raise: the GAN trainer loads its last good
  state (the newest checkpoint, or the in-memory copy taken at the same moments); a
  :class:`LossTrainer` stops where it is and the model that ran it is left unfitted. The best epoch is
  kept by a callback, :class:`~feedgan.gan.BestCheckpoint`: it checks the guard, scores
  ``eval_model``, keeps the best weights and, with ``restore_on_end``, loads them back when
  ``fit`` ends, so diverged weights are never scored or kept.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torch.optim import optimizer as _optimizer  # its global step hooks

from . import ddp

NAN_POLICIES = ("stop", "skip")


class NonFiniteLossError(FloatingPointError, ValueError):
    """A loss, a gradient or the weights became NaN or infinite, or the weights diverged.

    The trainer has already restored what it can (:class:`~feedgan.gan.trainer.GANTrainer`: the
    last good weights). A ``ValueError`` too: it comes from settings (a learning rate, a loss
    weight) that do not fit the data."""


def _call(callbacks: list, hook: str, *args) -> None:
    for cb in callbacks:
        if hasattr(cb, hook):
            getattr(cb, hook)(*args)


def _valid_field(callbacks: list) -> dict[str, float]:
    """``{"valid": score}``: the latest validation score of an early-stopping callback (one with a
    ``history`` of ``(step, metric)``), for the progress display; empty before the first one."""
    for cb in callbacks:
        history = getattr(cb, "history", None)
        if isinstance(history, list) and history:
            return {"valid": float(history[-1][1])}
    return {}


class _Tick:
    """Running sums of logged values between two stats lines, kept on the device: updates that
    were not applied (``ok`` false) count for nothing, and :meth:`means` is the one host read.

    Values logged together (one update's dict) are summed as one stacked vector, so an update
    costs a few kernels whatever the number of values."""

    def __init__(self):
        self.sums: dict[tuple[str, ...], Tensor] = {}  # names -> (n_names,) running sums
        self.counts: dict[tuple[str, ...], Tensor] = {}  # names -> () updates applied
        self.steps = 0

    def add(self, values: dict[str, Tensor], ok: Tensor) -> None:
        names = tuple(values)
        v = torch.stack([t.detach().float().reshape(()) for t in values.values()])  # (n_names,)
        applied = torch.where(ok, v, torch.zeros_like(v))
        if names in self.sums:
            self.sums[names] += applied
            self.counts[names] += ok
        else:
            self.sums[names], self.counts[names] = applied, ok.float()

    def means(self) -> dict[str, float]:
        """Mean of each value over the applied updates (values no update logged are left out)."""
        if not self.sums:
            return {}
        groups = list(self.sums)
        sums = torch.cat([self.sums[g] for g in groups]).tolist()
        counts = torch.stack([self.counts[g] for g in groups]).tolist()
        total: dict[str, list[float]] = {}  # name -> [sum, count] over every group that logged it
        i = 0
        for g, c in zip(groups, counts):
            for name in g:
                acc = total.setdefault(name, [0.0, 0.0])
                acc[0], acc[1], i = acc[0] + sums[i], acc[1] + c, i + 1
        return {k: s / c for k, (s, c) in total.items() if c > 0}


class _Guard:
    """Device-side record of non-finite updates between two checks.

    :meth:`update` turns one update's loss terms and gradient norm into a device bool ``ok`` and
    keeps the step and values of the first bad update of each kind (player and term names);
    :meth:`first` reads the earliest back to the host. ``skipped`` counts dropped updates.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.skipped = torch.zeros((), dtype=torch.long, device=device)
        self._first: dict[tuple[str, tuple[str, ...]], tuple[Tensor, Tensor]] = {}  # -> (step, values)

    def update(self, player: str, step: int, terms: dict[str, Tensor], grad_norm: Tensor) -> Tensor:
        values = torch.stack([*(t.detach().float().reshape(()) for t in terms.values()),
                              grad_norm.detach().float().reshape(()).to(self.device)])  # (n_terms + 1,)
        ok = torch.isfinite(values).all()
        key = (player, tuple(terms))
        if key not in self._first:
            self._first[key] = (torch.full((), -1, dtype=torch.long, device=self.device), torch.zeros_like(values))
        first_step, first_values = self._first[key]
        new = ~ok & (first_step < 0)
        self._first[key] = (torch.where(new, step, first_step), torch.where(new, values, first_values))
        return ok

    def first(self) -> tuple[str, int, dict[str, float], float] | None:
        """``(player, step, terms, gradient norm)`` of the earliest bad update, or None."""
        if not self._first:
            return None
        keys = list(self._first)
        steps = torch.stack([self._first[k][0] for k in keys]).tolist()
        bad = [(s, k) for s, k in zip(steps, keys) if s >= 0]
        if not bad:
            return None
        step, (player, names) = min(bad)
        values = self._first[(player, names)][1].tolist()
        return player, step, dict(zip(names, values[:-1])), values[-1]

    def clear(self) -> None:
        self._first.clear()


def total(terms: dict[str, Tensor]) -> Tensor:
    """The sum of the loss terms (the first term itself when alone: no extra kernel)."""
    first, *rest = terms.values()
    for t in rest:
        first = first + t
    return first


def _fused_adam_step(opt: torch.optim.Optimizer, found_inf: Tensor) -> bool:
    """``opt.step()`` with ``opt.found_inf = found_inf`` for a fused :class:`torch.optim.Adam`:
    the same calls Adam makes (count the step, one fused kernel, take the step back where
    ``found_inf`` is set) without its per-call bookkeeping, a tenth of a millisecond a step that
    matters for small models. Returns False, having done nothing, unless every parameter has a
    dense gradient and its state, on one device and dtype, with no hooks, amsgrad or tensor
    hyperparameters."""
    if (not hasattr(torch, "_fused_adam_") or type(opt) is not torch.optim.Adam
            or opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
            or _optimizer._global_optimizer_pre_hooks or _optimizer._global_optimizer_post_hooks):
        return False
    for group in opt.param_groups:
        if (not group["fused"] or group["amsgrad"] or group["capturable"] or group["differentiable"]
                or any(isinstance(group[k], Tensor) for k in ("lr", "weight_decay")) or
                any(isinstance(b, Tensor) for b in group["betas"])):
            return False
        for p in group["params"]:
            if p.grad is None or p.grad.is_sparse or "exp_avg" not in opt.state.get(p, ()):
                return False
            if p.device != found_inf.device or p.dtype != group["params"][0].dtype:
                return False
    for group in opt.param_groups:
        params = group["params"]
        states = [opt.state[p] for p in params]
        steps = [s["step"] for s in states]
        beta1, beta2 = group["betas"]
        kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay") else torch._fused_adam_
        torch._foreach_add_(steps, 1)
        kernel(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
               [], steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
               weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"], grad_scale=None,
               found_inf=found_inf)
        torch._foreach_sub_(steps, [found_inf] * len(steps))
    return True


def _largest_weight(params: Iterable[Tensor]) -> Tensor:
    """max |w| over ``params`` relative to sqrt(the dtype's largest number), as a device scalar:
    NaN or >= 1 means the weights are no longer usable (a product of two of them overflows)."""
    ratios = []
    for p in params:
        if p.is_floating_point() and p.numel():
            lo, hi = torch.aminmax(p.detach())  # NaN propagates
            ratios.append(torch.maximum(-lo, hi).double() / torch.finfo(p.dtype).max ** 0.5)
    return torch.stack(ratios).max() if ratios else torch.zeros((), dtype=torch.float64)


class TrainLoop:
    """The step loop every trained model in feedgan runs through; subclasses say what a step does.

    ``fit`` runs ``total_steps`` steps (``epochs * steps_per_epoch`` when epochs are set) or until
    a callback calls :meth:`request_stop`. Every ``tick_every`` steps (and at the last) it checks
    the NaN guard (:meth:`check_finite`), turns the logged values into a stats dict and calls
    ``on_tick``; callbacks may also define ``on_start(trainer)``, ``on_step(trainer)`` (after
    every step) and ``on_end(trainer)``. Updates go through :meth:`_apply`, which owns the guard.

    Subclasses set ``step``, ``elapsed``, ``device``, ``dist``, ``out_dir``, ``nan_policy``,
    ``grad_clip``, ``tick_every`` and ``_guard``, and implement ``total_steps``,
    ``steps_per_epoch``, ``eval_model`` (what evaluation callbacks score and keep),
    ``_train_step(tick)``, ``_players()`` (name -> parameters, for the divergence check) and
    ``_fail(problem)`` (restore what it can, return the error to raise).
    """

    stop_requested: bool = False
    stop_reason: str | None = None
    _checked_step: int | None = None

    # -- what subclasses provide --------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        raise NotImplementedError

    @property
    def steps_per_epoch(self) -> int | None:
        return None

    @property
    def eval_model(self) -> nn.Module:
        raise NotImplementedError

    def _train_step(self, tick: _Tick) -> None:
        raise NotImplementedError

    def _players(self) -> dict[str, list[Tensor]]:
        raise NotImplementedError

    def _fail(self, problem: str) -> NonFiniteLossError:
        raise NotImplementedError

    def _label(self) -> str:
        return type(self).__name__

    def _bar_unit(self) -> int:
        """Steps per advance of the progress bar (default: every step)."""
        return 1

    def _describe(self, stats: dict) -> str | None:
        """The progress bar's description after a tick (None: keep the label)."""
        return None

    def _log(self, stats: dict) -> None:
        """Write one stats line (default: nowhere)."""

    def _after_step(self, ending: bool) -> None:
        """Runs after every step, its tick included (checkpoints)."""

    @contextlib.contextmanager
    def _session(self):
        """What ``fit`` holds open while it trains (files, random-state scopes)."""
        yield

    # -- the loop -----------------------------------------------------------------------------------
    @property
    def skipped(self) -> int:
        """Updates dropped by ``nan_policy="skip"`` (a host read)."""
        return int(self._guard.skipped)

    @skipped.setter
    def skipped(self, value: int) -> None:
        self._guard.skipped.fill_(int(value))

    def request_stop(self, reason: str | None = None) -> None:
        """Finish the current step, write a last tick (and checkpoint), and return from ``fit``."""
        self.stop_requested, self.stop_reason = True, reason

    def fit(self, progress=None, callbacks: Iterable[Any] = ()):
        """Train until ``total_steps`` (or a callback calls ``request_stop``); returns ``self``.

        ``progress``: a Rich ``Progress`` (from ``feedgan.progress.progress_bar``) or None.
        ``callbacks``: objects with any of ``on_start(trainer)``, ``on_step(trainer)`` (after every
        step), ``on_tick(trainer, stats)`` (after every stats line) and ``on_end(trainer)``.
        """
        total, callbacks = self.total_steps, list(callbacks)
        self.stop_requested, self.stop_reason, self._checked_step = False, None, None
        unit = self._bar_unit()  # steps per advance of the progress bar
        bar = None
        if progress is not None:
            done = {"completed": self.step // unit} if self.step else {}
            bar = progress.add_task(self._label(), total=-(-total // unit), **done)
        with self._session():
            tick, t0 = _Tick(), time.perf_counter()
            _call(callbacks, "on_start", self)
            while self.step < total and not self.stop_requested:
                self._train_step(tick)
                self.step += 1
                tick.steps += 1
                _call(callbacks, "on_step", self)
                if bar is not None and self.step % unit == 0:
                    valid = _valid_field(callbacks)
                    if valid:  # before the advance, so a printed line carries it
                        progress.update(bar, **valid)
                    progress.advance(bar)
                ending = self.step >= total or self.stop_requested
                if self.step % self.tick_every == 0 or ending:
                    self.check_finite()
                    now = time.perf_counter()
                    self.elapsed += now - t0
                    stats = self._stats(tick, now - t0)
                    tick, t0 = _Tick(), now
                    self._log(stats)
                    description = self._describe(stats) if bar is not None else None
                    if description is not None:
                        progress.update(bar, description=description)
                    _call(callbacks, "on_tick", self, stats)
                self._after_step(ending)
        _call(callbacks, "on_end", self)
        return self

    def _stats(self, tick: _Tick, seconds: float) -> dict[str, Any]:
        spe = self.steps_per_epoch
        stats = {"step": self.step, "epoch": round(self.step / spe, 4) if spe else None,
                 "time": round(self.elapsed, 3), **tick.means()}
        if self.nan_policy == "skip":
            stats["skipped"] = self.skipped
        return stats

    # -- the NaN guard --------------------------------------------------------------------------------
    def _apply(self, player: str, opt: torch.optim.Optimizer, params: list[Tensor],
               terms: dict[str, Tensor]) -> Tensor:
        """One guarded update minimising the sum of ``terms``; returns the device bool ``ok``
        (every term and the gradient norm finite, on every rank). A bad update is not applied."""
        for group in opt.param_groups:  # opt.zero_grad(set_to_none=True) without its per-call overhead
            for p in group["params"]:
                p.grad = None
        total(terms).backward()
        ok = self._guard.update(player, self.step + 1, terms, self._grad_norm(params))
        if self.dist.enabled:  # the same decision on every rank (a host read only under gloo)
            bad = (~ok).to(torch.int32).to(ddp._comm_device(self.device))
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
            ok = (bad == 0).to(self.device)
        if opt.defaults.get("fused"):  # the fused kernel skips a flagged update on the device
            found_inf = (~ok).float()
            if not _fused_adam_step(opt, found_inf):
                opt.found_inf = found_inf
                try:
                    opt.step()
                finally:
                    del opt.found_inf
        elif self.nan_policy == "skip":  # optimizers without a device-side skip need the flag here
            if bool(ok):
                opt.step()
        else:  # "stop": the next check stops training (GANTrainer restores its last good state)
            opt.step()
        if self.nan_policy == "skip":
            self._guard.skipped += (~ok).long()
        return ok

    def _grad_norm(self, params: list[Tensor]) -> Tensor:
        """Global gradient norm (clipped to ``grad_clip`` when set); sparse gradients count by
        their stored values, which is what decides finiteness."""
        if self.grad_clip is not None:
            return nn.utils.clip_grad_norm_(params, self.grad_clip)
        grads = [p.grad for p in params if p.grad is not None]
        dense = [g for g in grads if not g.is_sparse]
        norms = [torch.linalg.vector_norm(g._values()) for g in grads if g.is_sparse]
        if dense and len({(g.device, g.dtype) for g in dense}) == 1 and dense[0].device.type in ("cpu", "cuda"):
            norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(dense))))  # get_total_norm's own path
        elif dense:
            norms.append(nn.utils.get_total_norm(dense))
        return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros((), device=self.device)

    def check_finite(self) -> None:
        """The guard's host read (at ticks, checkpoints, evaluations): raises
        :class:`NonFiniteLossError` for a non-finite update under ``nan_policy="stop"``, and under
        either policy for weights that are NaN, infinite or diverged (see the module docstring)."""
        if self._checked_step == self.step:
            return
        problem = self._problem()
        if not ddp.any_true(problem is not None, self.dist, self.device):
            self._checked_step = self.step
            return
        self._guard.clear()
        raise self._fail(problem or "a non-finite value on another rank")

    def _problem(self) -> str | None:
        first = self._guard.first() if self.nan_policy == "stop" else None
        if first is not None:
            player, step, terms, norm = first
            named = ", ".join(f"{k}={v}" for k, v in terms.items() if not math.isfinite(v))
            if named:
                return f"non-finite {player} loss at step {step} ({named})"
            return f"non-finite {player} gradient at step {step} (gradient norm {norm})"
        players = self._players()
        ratios = torch.stack([_largest_weight(ps) for ps in players.values()]).tolist()
        for player, ratio in zip(players, ratios):
            if not math.isfinite(ratio):
                return f"{player} weights are no longer finite by step {self.step}"
            if ratio >= 1.0:
                return f"{player} weights diverged by step {self.step} (a weight so large that its square overflows)"
        return None


class LossTrainer(TrainLoop):
    """The same loop for a model trained on one loss: BPR, Mult-VAE, and the discriminator-free
    ablations of CFGAN and EASE-GAN.

    ``task.steps_per_epoch`` steps make an epoch; step ``t`` (0-based) is one update of ``opt``
    minimising ``task.loss(t)``, a scalar the task computes from ``model``'s parameters and its
    own seeded ``torch.Generator`` (so the task, not the trainer, owns the random streams). Each
    epoch ends with a stats tick, kept in ``history`` (``{"step", "epoch", "time", "loss"}``,
    ``loss`` the epoch's mean batch loss). On a NaN or diverged check it raises
    :class:`NonFiniteLossError`; the model is then left as it was at that check.
    """

    def __init__(self, model: nn.Module, task, opt: torch.optim.Optimizer, epochs: int, *, name: str = "model",
                 nan_policy: str = "stop", grad_clip: float | None = None):
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {', '.join(NAN_POLICIES)}, got {nan_policy!r}")
        spe = int(task.steps_per_epoch)
        if spe < 1 or epochs < 0:
            raise ValueError(f"{name}: need steps_per_epoch >= 1 and epochs >= 0, got {spe} and {epochs}")
        self.model, self.task, self.opt, self.epochs, self.name = model, task, opt, int(epochs), name
        self.nan_policy, self.grad_clip, self.tick_every = nan_policy, grad_clip, spe
        self._params = [p for p in model.parameters() if p.requires_grad]
        self.device = self._params[0].device
        self.dist, self.out_dir = ddp.DistInfo(), None
        self._guard = _Guard(self.device)
        self.step, self.elapsed = 0, 0.0
        self.history: list[dict[str, Any]] = []

    @property
    def steps_per_epoch(self) -> int:
        return self.tick_every

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def eval_model(self) -> nn.Module:
        return self.model

    def _label(self) -> str:
        return f"fit {self.name}"

    def _bar_unit(self) -> int:
        return self.steps_per_epoch  # the bar counts epochs

    def _log(self, stats: dict) -> None:
        self.history.append(stats)

    def _train_step(self, tick: _Tick) -> None:
        loss = self.task.loss(self.step)
        tick.add({"loss": loss}, self._apply(self.name, self.opt, self._params, {"loss": loss}))

    def _players(self) -> dict[str, list[Tensor]]:
        return {self.name: list(self.model.parameters())}

    def _fail(self, problem: str) -> NonFiniteLossError:
        return NonFiniteLossError(f"{problem}; training stopped. Try a lower learning rate.")

"""Checkpoint files of the GAN trainer, and the ``BestCheckpoint`` callback.

A checkpoint is *data*: a dict of plain tensors, numbers, strings, lists and dicts, written with
``torch.save`` into a temporary file and renamed into place (:func:`feedgan.io.atomic_path`), and
read back with ``torch.load(weights_only=True)``, which refuses to unpickle arbitrary objects::

    out_dir/checkpoints/ckpt-00001000.pt    {"format", "step", "elapsed", "G", "D", "G_ema",
                                             "opt_g", "opt_d", "rng", "world_size", "config"}
    out_dir/best_generator.pt               {"format", "step", "metric", "mode", "G"}   (BestCheckpoint)

Only the newest ``keep`` checkpoints are kept; a crash mid-write leaves the previous ones intact.
Resuming takes the newest checkpoint that reads back (a damaged one is skipped with a warning),
deletes the temporary files a killed writer left, and keeps ``stats.jsonl`` up to the resumed step
(a last line torn by the crash is dropped with a warning).

:class:`Resumable` is the save/restore half of :class:`~feedgan.gan.trainer.GANTrainer`: the
state dict (weights, optimizers, counters, every rank's random streams), the trainer-owned global
RNG that makes dropout reproducible, and ``checkpoint`` / ``save_checkpoint`` / ``resume``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import time
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Self

import torch
from torch import Tensor

from ..io import ArtifactError, atomic_open, atomic_path, remove_orphans
from . import ddp

FORMAT = "feedgan.gan.checkpoint/1"
BEST_FORMAT = "feedgan.gan.best/1"
_CKPT = re.compile(r"^ckpt-(\d{8})\.pt$")
# what a checkpoint must hold for load_state_dict
_KEYS = ("step", "elapsed", "skipped", "G", "D", "G_ema", "opt_g", "opt_d", "rng")


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"ckpt-{step:08d}.pt"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint under ``out_dir/checkpoints``, oldest first."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name))]
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def prune(out_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep <= 0`` keeps all)."""
    if keep > 0:
        for _, path in list_checkpoints(out_dir)[:-keep]:
            path.unlink(missing_ok=True)


def to_cpu(obj: Any) -> Any:
    """A deep copy of a nested dict/list/tuple with every tensor detached and cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_state(state: dict, path: str | Path) -> Path:
    """``torch.save`` ``state`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_state(path: str | Path, expect: str = FORMAT) -> dict:
    """Read a file written by :func:`save_state` without unpickling code (``weights_only``); a
    damaged or foreign file raises :class:`~feedgan.io.ArtifactError` naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except Exception as exc:  # truncated file, foreign pickle with objects, ...
        reason = " ".join(str(exc).split())[:300]  # torch's messages span many lines
        raise ArtifactError(path, f"not a readable feedgan GAN checkpoint ({type(exc).__name__}: {reason})") from exc
    if not isinstance(state, dict) or state.get("format") != expect:
        found = state.get("format") if isinstance(state, dict) else None
        raise ArtifactError(path, f"not a {expect} file (format {found!r})")
    missing = [k for k in _KEYS if k not in state] if expect == FORMAT else []
    if missing:
        raise ArtifactError(path, f"a checkpoint without {', '.join(missing)}")
    return state


def load_latest(out_dir: str | Path) -> tuple[Path, dict]:
    """The newest checkpoint under ``out_dir/checkpoints`` that reads back, and its state; damaged
    newer ones are skipped with a warning. FileNotFoundError when there is none at all,
    :class:`~feedgan.io.ArtifactError` when none reads back."""
    found = list_checkpoints(out_dir)
    if not found:
        raise FileNotFoundError(f"no checkpoint to resume from under {Path(out_dir) / 'checkpoints'}")
    problems = []
    for _, file in reversed(found):
        try:
            return file, load_state(file)
        except ArtifactError as exc:
            warnings.warn(f"skipping the damaged checkpoint {file} ({exc.problem}); trying an older one")
            problems.append(f"{file.name}: {exc.problem}")
    raise ArtifactError(Path(out_dir) / "checkpoints", f"none of the {len(found)} checkpoints reads back "
                        f"({'; '.join(problems)})", fix="train again without --resume")


def trim_stats(out_dir: str | Path, step: int) -> None:
    """Keep the lines of ``out_dir/stats.jsonl`` up to ``step`` (rewritten atomically). A torn last
    line (a crash mid-write) is dropped with a warning; any other unreadable line is an
    :class:`~feedgan.io.ArtifactError` naming the file and the line."""
    stats = Path(out_dir) / "stats.jsonl"
    if not stats.exists():
        return
    lines = stats.read_bytes().decode("utf-8", errors="replace").splitlines()
    last = max((n for n, ln in enumerate(lines) if ln.strip()), default=-1)
    keep = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        row_step = _stats_step(line)
        if row_step is None and n == last:
            warnings.warn(f"{stats}, line {n + 1}: dropped a torn last line (the run was killed mid-write)")
        elif row_step is None:
            raise ArtifactError(stats, f"line {n + 1} is not a stats record: {line[:80]!r}",
                                fix="delete that line (or the file) and resume again")
        elif row_step <= step:
            keep.append(line)
    with atomic_open(stats) as fh:
        fh.write("".join(ln + "\n" for ln in keep))


def _stats_step(line: str) -> int | None:
    """The step of one stats.jsonl line, or None when it is no stats record."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    step = row.get("step") if isinstance(row, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


class Resumable:
    """Exact save and restore for :class:`~feedgan.gan.trainer.GANTrainer` (a mixin).

    Uses the trainer's ``G``, ``D``, ``G_ema``, ``opt_g``, ``opt_d``, ``rng``, ``step``,
    ``elapsed``, ``skipped``, ``config``, ``dist``, ``device`` and ``out_dir``, and owns
    ``_module_rng`` / ``_cuda_rng`` (the global RNG state while training), ``_in_fit``,
    ``_snapshot`` / ``_snapshot_file`` (the last good state, and its file if any) and
    ``last_checkpoint``.
    """

    def state_dict(self) -> dict:
        """Everything needed to continue exactly, as CPU tensors and plain data. Under DDP this is
        a collective (all ranks must call it): it checks the replicas agree and gathers every
        rank's random streams."""
        ddp.check_in_sync({"G": self.G, "G_ema": self.G_ema, "D": self.D}, self.dist, self.device, self.step)
        module_rng = torch.get_rng_state() if self._in_fit else self._module_rng
        gather = lambda t: ddp.all_gather(t, self.dist, self.device)  # noqa: E731
        cuda = None
        if self.device.type == "cuda":
            cuda = gather(torch.cuda.get_rng_state(self.device) if self._in_fit or self._cuda_rng is None
                          else self._cuda_rng)
        return to_cpu({
            "format": FORMAT, "step": self.step, "elapsed": self.elapsed, "skipped": self.skipped,
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "rng": {"task": gather(self.rng.get_state()), "torch": gather(module_rng), "cuda": cuda},
            "world_size": self.dist.world_size, "config": dataclasses.asdict(self.config),
        })

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (weights, optimizers, step and random streams)."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"] if state["G_ema"] is not None else state["G"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.elapsed, self.skipped = int(state["step"]), float(state["elapsed"]), int(state["skipped"])
        rng, r = state["rng"], self.dist.rank
        if len(rng["task"]) != self.dist.world_size:
            warnings.warn(f"checkpoint was written by {len(rng['task'])} ranks, this run has "
                          f"{self.dist.world_size}: random streams reseeded, the continuation is not exact")
            seed = self.config.seed + r + 1_000_003 * self.step
            self.rng.manual_seed(seed)
            self._set_module_rng(torch.Generator().manual_seed(seed).get_state(), None)
            return
        self.rng.set_state(rng["task"][r])
        self._set_module_rng(rng["torch"][r], rng["cuda"][r] if rng["cuda"] is not None else None)

    def _set_module_rng(self, cpu: Tensor, cuda: Tensor | None) -> None:
        self._module_rng, self._cuda_rng = cpu, cuda if self.device.type == "cuda" else None
        if self._in_fit:
            torch.set_rng_state(cpu)
            if self._cuda_rng is not None:
                torch.cuda.set_rng_state(self._cuda_rng, self.device)

    @contextlib.contextmanager
    def _rng_scope(self):
        """Run with the trainer's own global RNG state; the caller's is put back afterwards."""
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.set_rng_state(self._module_rng)
            if cuda:
                if self._cuda_rng is None:
                    torch.cuda.manual_seed(int(self.config.seed) + self.dist.rank)
                else:
                    torch.cuda.set_rng_state(self._cuda_rng, self.device)
            self._in_fit = True
            try:
                yield
            finally:
                self._in_fit = False
                self._module_rng = torch.get_rng_state()
                if cuda:
                    self._cuda_rng = torch.cuda.get_rng_state(self.device)

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the full state to ``path`` (rank 0 only; every rank must call it under DDP)."""
        state = self.state_dict()
        if self.dist.is_main:
            save_state(state, path)
        return Path(path)

    def checkpoint(self) -> Path | None:
        """Take the in-memory snapshot and, with an ``out_dir``, write ``checkpoints/ckpt-STEP.pt``."""
        self._snapshot, self._snapshot_file = self.state_dict(), None
        if self.out_dir is None:
            return None
        state = self._snapshot
        path = checkpoint_path(self.out_dir, self.step)
        if self.dist.is_main:
            save_state(state, path)
            prune(self.out_dir, self.config.keep_checkpoints)
        self.last_checkpoint = self._snapshot_file = path
        return path

    def resume(self, path: str | Path | None = None) -> Self:
        """Load the newest intact checkpoint under ``path`` (a run folder; default ``out_dir``) or
        the checkpoint file ``path``. In ``out_dir``, temporary files a killed writer left are
        deleted and ``stats.jsonl`` lines past the resumed step are dropped. Returns self."""
        path = Path(path) if path is not None else self.out_dir
        if path is None:
            raise ValueError("resume() needs a path, or an out_dir given to GANTrainer")
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist")
        file, state = load_latest(path) if path.is_dir() else (path, load_state(path))
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ArtifactError(file, f"does not fit these models ({type(exc).__name__}: {reason})",
                                fix="resume with the run's own settings (preset, size, width)") from exc
        self._snapshot, self._snapshot_file, self.last_checkpoint = state, file, file
        if self.dist.is_main and self.out_dir is not None:
            remove_orphans(self.out_dir)
            trim_stats(self.out_dir, self.step)
        return self



class TimeLimit:
    """A wall-clock deadline for early-stopped training (``with TimeLimit(seconds):``): every
    :class:`BestCheckpoint` evaluation inside the block that finds the deadline passed asks its
    trainer to stop there, so the best epoch seen so far is kept and the fit returns. ``hits``
    counts the fits it cut. A run that must fit a time budget (the demo) cuts long training this
    way; the schedule a model would have run without it is unchanged otherwise.
    """

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds
        self.hits = 0
        self._token = None

    def passed(self) -> bool:
        return time.perf_counter() >= self.deadline

    def __enter__(self) -> "TimeLimit":
        self._token = _TIME_LIMIT.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _TIME_LIMIT.reset(self._token)


_TIME_LIMIT: ContextVar[TimeLimit | None] = ContextVar("feedgan_time_limit", default=None)


class BestCheckpoint:
    """Callback: the one best-epoch tracker (early stopping) of every trained model.

    Every ``every`` steps (and, with ``at_start``, once before the first step) it scores
    ``metric_fn(trainer)`` and keeps the best weights of ``trainer.eval_model`` (a GAN's
    ``G_eval``: the EMA copy when ``ema_decay`` is set) in memory (``best_state``) and, on rank 0
    with an ``out_dir``, in ``out_dir/best_generator.pt``. ``history`` holds ``(step, metric)``
    of every evaluation, ``best_step`` the step of the best (None before a finite one).

    ``mode`` is ``"max"`` (e.g. recall) or ``"min"`` (e.g. a distance); a non-finite metric never
    counts as better, and ties keep the earlier step. With ``patience`` the trainer is asked to
    stop after that many evaluations without improvement; ``restore_on_end`` loads the best
    weights back into ``trainer.eval_model`` when training ends. Each evaluation first runs the
    trainer's NaN guard (``check_finite``), so diverged weights are never scored or kept. Inside a
    :class:`TimeLimit` whose deadline has passed, an evaluation also asks for a stop. The
    metric runs on every rank, so under DDP it must not depend on the rank (evaluate the same
    data on each).
    """

    def __init__(self, metric_fn: Callable[[Any], float], every: int, mode: str = "max",
                 patience: int | None = None, restore_on_end: bool = False,
                 filename: str = "best_generator.pt", at_start: bool = False):
        if every < 1:
            raise ValueError(f"BestCheckpoint: every must be >= 1, got {every}")
        if mode not in ("max", "min"):
            raise ValueError(f"BestCheckpoint: mode must be 'max' or 'min', got {mode!r}")
        self.metric_fn, self.every, self.mode = metric_fn, every, mode
        self.patience, self.restore_on_end, self.filename = patience, restore_on_end, filename
        self.at_start = at_start
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[tuple[int, float]] = []  # (step, metric) of every evaluation
        self.path: Path | None = None
        self._bad = 0  # evaluations since the last improvement

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_start(self, trainer) -> None:
        if self.at_start:
            self.evaluate(trainer)

    def on_step(self, trainer) -> None:
        if trainer.step % self.every == 0:
            self.evaluate(trainer)

    def evaluate(self, trainer) -> None:
        """Score the trainer's model now; keep it when best, ask for a stop when out of patience."""
        if hasattr(trainer, "check_finite"):
            trainer.check_finite()
        value = float(self.metric_fn(trainer))
        self.history.append((trainer.step, value))
        limit = _TIME_LIMIT.get()
        if limit is not None and limit.passed() and not trainer.stop_requested:
            limit.hits += 1
            trainer.request_stop("TimeLimit: the time budget is spent")
        if not self._better(value):
            self._bad += 1
            if self.patience is not None and self._bad >= self.patience:
                trainer.request_stop(f"BestCheckpoint: no improvement in {self._bad} evaluations")
            return
        self._bad = 0
        self.best, self.best_step = value, trainer.step
        self.best_state = to_cpu(trainer.eval_model.state_dict())
        if trainer.out_dir is not None and trainer.dist.is_main:
            self.path = save_state({"format": BEST_FORMAT, "step": trainer.step, "metric": value,
                                    "mode": self.mode, "G": self.best_state}, trainer.out_dir / self.filename)

    def on_end(self, trainer) -> None:
        if self.restore_on_end:
            self.restore(trainer)

    def restore(self, trainer) -> None:
        """Load the best weights into ``trainer.eval_model`` (nothing happens before the first evaluation)."""
        if self.best_state is not None:
            trainer.eval_model.load_state_dict(self.best_state)

    @staticmethod
    def load(path: str | Path) -> dict:
        """Read a ``best_generator.pt`` file: ``{"step", "metric", "mode", "G": state_dict}``."""
        return load_state(path, expect=BEST_FORMAT)

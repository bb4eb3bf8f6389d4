"""Choosing a model's training length on the validation split (early stopping).

Iterative models (BPR, Mult-VAE, CFGAN, EASE-GAN) that set ``uses_validation`` receive a
:class:`~feedgan.rec.base.Validation` when fitted on a dataset's train part alone. They train
through the shared loop of :mod:`feedgan.gan.loop` with a :class:`~feedgan.gan.BestCheckpoint`
callback: every
``eval_every`` epochs it scores :func:`validation_ndcg`, keeps the best weights and, with
``patience``, stops early. The best epoch is what ``selected_params()`` reports, so the refit on
train + valid trains for exactly as long, and the test split is never looked at.

Validation users are scored from the rows the model would read at serving time: their training
rows, or, in a by-user split, where they have none, their fold-in history (``valid_input``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..ranking import ranking_metrics
from .base import Validation, top_n


def check_can_score(model, valid: Validation) -> None:
    """Refuse early stopping that would score held-out users a model cannot fold in."""
    if valid.folded and not model.fold_in:
        raise ValueError(f"{model.name}: early stopping on a by-user split scores users from their fold-in "
                         f"history, and {model.name} only scores users seen at fit; set eval_every=0 or use "
                         "a per-user split (random, leave-last-out, temporal)")


def validation_ndcg(score_fn: Callable[[np.ndarray], np.ndarray], valid: Validation, k: int = 20,
                    batch: int = 2048) -> float:
    """Mean NDCG@k over the users with validation targets, ranking the items not in ``valid.seen``.

    ``score_fn(users)`` returns the (len(users), n_items) scores of those users, read from their
    ``valid.inputs`` rows by fold-in models; users are scored ``batch`` at a time, so memory
    stays bounded on large catalogues.
    """
    users = valid.users()
    values = []
    for s in range(0, len(users), batch):
        u = users[s:s + batch]
        top, _ = top_n(score_fn(u), k, exclude=valid.seen[u])  # (b, k)
        values.append(ranking_metrics(top, valid.targets[u], [k])[f"ndcg@{k}"])
    return float(np.nanmean(np.concatenate(values))) if values else float("nan")


def epoch_choice(best, steps_per_epoch: int, default: int | None) -> tuple[list[tuple[int, float]], int | None]:
    """``(valid_history, best_epoch)`` in epochs from a :class:`~feedgan.gan.BestCheckpoint` that
    evaluated at whole epochs; ``default`` when no evaluation gave a finite value."""
    history = [(step // steps_per_epoch, value) for step, value in best.history]
    return history, (best.best_step // steps_per_epoch if best.best_step is not None else default)

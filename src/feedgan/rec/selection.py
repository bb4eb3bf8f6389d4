"""Choosing a model's training length on the validation split (early stopping).

Iterative models (BPR, Mult-VAE, CFGAN) that set ``uses_validation`` receive the dataset's valid
part when fitted on train alone. Every ``eval_every`` epochs they score it with
:func:`validation_ndcg` and hand the value to an :class:`EpochSelector`, which keeps the best
weights and the epoch they came from. That epoch is what ``selected_params()`` reports, so the
refit on train + valid trains for exactly as long, and the test split is never looked at.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from ..eval.metrics import ranking_metrics
from .base import top_n


def validation_ndcg(score_fn: Callable[[np.ndarray], np.ndarray], X: sp.csr_matrix, valid: sp.csr_matrix,
                    k: int = 20, batch: int = 2048) -> float:
    """Mean NDCG@k over the users with validation items, ranking the items not in ``X``.

    ``score_fn(users)`` returns the (len(users), n_items) scores of those rows of ``X``; users
    are scored ``batch`` at a time, so memory stays bounded on large catalogues.
    """
    users = np.flatnonzero(valid.getnnz(1) > 0)
    values = []
    for s in range(0, len(users), batch):
        u = users[s:s + batch]
        scores = torch.as_tensor(np.asarray(score_fn(u), dtype=np.float32)).clone()  # (b, n_items)
        seen = X[u].tocoo()
        scores[torch.from_numpy(seen.row.astype(np.int64)), torch.from_numpy(seen.col.astype(np.int64))] = -torch.inf
        top, _ = top_n(scores, k)
        values.append(ranking_metrics(top, valid[u], [k])[f"ndcg@{k}"])
    return float(np.nanmean(np.concatenate(values))) if values else float("nan")


class EpochSelector:
    """Best-epoch bookkeeping: call :meth:`update` after an evaluated epoch.

    ``history`` holds ``(epoch, value)`` pairs; ``best_state`` a CPU copy of the best weights;
    :meth:`update` returns True once ``patience`` evaluations in a row brought no improvement.
    """

    def __init__(self, every: int, patience: int | None = None):
        if every < 1:
            raise ValueError(f"eval_every must be >= 1, got {every}")
        self.every, self.patience = every, patience
        self.history: list[tuple[int, float]] = []
        self.best_value = -np.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self._bad = 0

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0

    def update(self, epoch: int, value: float, state: dict[str, torch.Tensor]) -> bool:
        self.history.append((epoch, value))
        if np.isfinite(value) and value > self.best_value:
            self.best_value, self.best_epoch, self._bad = value, epoch, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in state.items()}
            return False
        self._bad += 1
        return self.patience is not None and self._bad >= self.patience

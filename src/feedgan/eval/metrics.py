"""Batched full-ranking metrics: every item not in a user's history is a candidate.

Definitions (for one user with relevant set R, ranked list L of length k, ``hit_r`` = 1 when
the item at rank r is in R):

- ``precision@k = hits / k``
- ``recall@k    = hits / |R|``                              (LightGCN / BARS convention)
- ``ndcg@k      = sum_r hit_r / log2(r + 1) / IDCG``,  IDCG over ``min(|R|, k)`` hits
- ``mrr@k       = 1 / rank of the first hit`` (0 without a hit)
- ``hitrate@k   = 1 if any hit``
- ``map@k       = sum_r precision@r * hit_r / min(|R|, k)``

Averages are over users with at least one relevant item; users without are skipped and counted
(``users_skipped``). ``coverage@k`` is the share of all items recommended to anyone, and
``popularity@k`` the mean training popularity (share of users) of the recommended items.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

METRICS = ("precision", "recall", "ndcg", "mrr", "hitrate", "map")


def ranking_metrics(top: np.ndarray, relevant: sp.csr_matrix, ks: Iterable[int]) -> dict[str, np.ndarray]:
    """Per-user metric values for one batch.

    top: (B, K) recommended item indices, best first (-1 = empty slot), K >= max(ks)
    relevant: (B, n_items) CSR of relevant items (any non-zero counts)
    Returns {"ndcg@10": (B,) array, ...}; rows without relevant items get NaN.
    """
    ks = sorted(set(ks))
    if top.shape[1] < ks[-1]:
        raise ValueError(f"top lists have {top.shape[1]} columns; need {ks[-1]}")
    rel = relevant.tocsr()
    n_rel = np.diff(rel.indptr).astype(np.float64)  # (B,)
    B = top.shape[0]
    # hits[b, r] = top[b, r] is relevant for user b, via a sorted-key lookup (no per-user loop)
    rows = np.repeat(np.arange(B), np.diff(rel.indptr))
    n_cols = rel.shape[1] + 1
    rel_keys = rows.astype(np.int64) * n_cols + rel.indices
    top_keys = np.arange(B)[:, None].astype(np.int64) * n_cols + np.where(top >= 0, top, n_cols - 1)
    hits = np.isin(top_keys, rel_keys).astype(np.float64)  # (B, K)
    ranks = np.arange(1, top.shape[1] + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(hits, axis=1)
    has = n_rel > 0
    safe = np.where(has, n_rel, 1.0)
    out = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = cum_hits[:, k - 1]
        ideal = np.minimum(n_rel, k).astype(int)
        idcg = np.concatenate([[0.0], np.cumsum(discount[:k])])[ideal]
        first = np.where(h.any(1), h.argmax(1) + 1, np.inf)
        vals = {
            "precision": n_hit / k,
            "recall": n_hit / safe,
            "ndcg": (h * discount[:k]).sum(1) / np.where(idcg > 0, idcg, 1.0),
            "mrr": 1.0 / first,
            "hitrate": (n_hit > 0).astype(np.float64),
            "map": (cum_hits[:, :k] / ranks[:k] * h).sum(1) / np.maximum(np.minimum(n_rel, k), 1.0),
        }
        for m, v in vals.items():
            out[f"{m}@{k}"] = np.where(has, v, np.nan)
    return out


MASKS = ("target", "all")


def evaluate(model, dataset, part: str = "test", ks: Iterable[int] = (5, 10, 20), *, batch_size: int = 2048,
             history: sp.csr_matrix | None = None, action: str | None = None, mask: str = "target",
             progress=None) -> dict[str, float]:
    """Full-ranking evaluation of a fitted model on ``dataset``'s ``part``.

    The history a user's list excludes (and, for fold-in models, the input) defaults to
    ``dataset.history(part)``: train for validation, train + valid for test, plus the fold-in
    part of held-out users in a by-user split. Only users with at least one target are scored.

    ``action`` (default: the dataset's target action, if its split has one) scores that action's
    held-out pairs. The model then reads its target and auxiliary histories per action, and
    ``mask`` says which items are excluded from the lists: ``"target"`` the user's items of that
    action (the published multi-behaviour protocol), ``"all"`` every item the user touched through
    any action (stricter: an item already viewed cannot be "predicted").
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    ks = sorted(set(ks))
    action = action if action is not None else getattr(dataset, "target_action", None)
    if action is None:
        target = dataset.matrix(part)
        hist = dataset.history(part) if history is None else history.tocsr()
        exclude = None
    else:
        target = dataset.matrix(part, action)
        hist = _per_action_history(model, dataset, part, action) if history is None else history
        exclude = dataset.history(part) if mask == "all" else None
    users = np.flatnonzero(np.diff(target.indptr) > 0)
    n_skipped = dataset.n_users - len(users)
    held_out = f"{part}_input" in dataset.parts  # by-user: these users were never seen at fit
    sums: dict[str, float] = {}
    recommended = {k: np.zeros(dataset.n_items, dtype=bool) for k in ks}
    pop = np.asarray((dataset.matrix("train").getnnz(0))).ravel() / max(1, dataset.n_users)
    pop_sum = {k: 0.0 for k in ks}
    pop_slots = {k: 0 for k in ks}  # filled slots only (-1 = nothing left to recommend)
    task = progress.add_task(f"evaluate {getattr(model, 'name', 'model')} on {part}", total=len(users)) \
        if progress is not None else None
    for start in range(0, len(users), batch_size):
        u = users[start:start + batch_size]
        h = {a: m[u] for a, m in hist.items()} if isinstance(hist, dict) else hist[u]
        top, _ = model.recommend(None if held_out else u, n=ks[-1], history=h,
                                 exclude=None if exclude is None else exclude[u])
        for key, v in ranking_metrics(top, target[u], ks).items():
            sums[key] = sums.get(key, 0.0) + float(np.nansum(v))
        for k in ks:
            t = top[:, :k]
            t = t[t >= 0]
            recommended[k][t] = True
            pop_sum[k] += float(pop[t].sum())
            pop_slots[k] += len(t)
        if task is not None:
            progress.advance(task, len(u))
    n = max(1, len(users))
    result = {key: v / n for key, v in sums.items()}
    for k in ks:
        result[f"coverage@{k}"] = float(recommended[k].mean())
        result[f"popularity@{k}"] = pop_sum[k] / max(1, pop_slots[k])
    result["users_evaluated"] = int(len(users))
    result["users_skipped"] = int(n_skipped)
    return result


def _per_action_history(model, dataset, part: str, action: str):
    """The histories ``model`` reads when predicting ``action`` on ``part``: a mapping action ->
    (n_users, n_items) for a model fitted with that target, else the target's own rows."""
    target = getattr(model, "target_", None)
    if target is None:
        return dataset.history(part, action)
    if target != action:
        raise ValueError(f"{model.name} was fitted to predict {target!r}, not {action!r}")
    names = [action, *(a for a in getattr(model, "aux_", {}) if a in dataset.actions)]
    return {a: dataset.history(part, a) for a in names}

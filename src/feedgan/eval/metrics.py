"""Batched full-ranking evaluation: every item not in a user's history is a candidate.

The metrics (precision, recall, NDCG, MRR, hit rate, MAP at k) are defined in
:mod:`feedgan.ranking`; :func:`evaluate` averages them over users with at least one relevant
item (users without are skipped and counted, ``users_skipped``) and adds ``coverage@k``, the
share of all items recommended to anyone, and ``popularity@k``, the mean training popularity
(share of users) of the recommended items.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

from ..ranking import ranking_metrics

MASKS = ("target", "all")


def evaluate(model, dataset, part: str = "test", ks: Iterable[int] = (5, 10, 20), *, batch_size: int = 2048,
             history: sp.csr_matrix | None = None, action: str | None = None, mask: str = "target",
             progress=None, label: str | None = None) -> dict[str, float]:
    """Full-ranking evaluation of a fitted model on ``dataset``'s ``part``.

    The history a user's list excludes (and, for fold-in models, the input) defaults to
    ``dataset.history(part)``: train for validation, train + valid for test, plus the fold-in
    part of held-out users in a by-user split. Only users with at least one target are scored.

    ``action`` (default: the dataset's target action, if its split has one) scores that action's
    held-out pairs. The model then reads its target and auxiliary histories per action, and
    ``mask`` says which items are excluded from the lists: ``"target"`` the user's items of that
    action (the published multi-behaviour protocol), ``"all"`` every item the user touched through
    any action (stricter: an item already viewed cannot be "predicted"). ``label`` names the model
    on the progress line (a variant such as ``ease-stacked`` rather than its class's ``ease``).
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
    task = progress.add_task(f"evaluate {label or getattr(model, 'name', 'model')} on {part}", total=len(users)) \
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

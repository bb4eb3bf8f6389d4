"""What an attack does to recommendations, and what removing the flagged accounts gives back.

    from feedgan.moderation.attacks import inject
    from feedgan.moderation.effect import attack_effect
    attacked = inject(log, "bandwagon", size=0.05, seed=0)
    flagged = scores.nlargest(budget).index          # a detector's review queue, cut at the budget
    effect = attack_effect(attacked, flagged, seed=0)
    effect["hr"]     # {"clean": .., "attacked": .., "cleaned": ..}: HR@10 of the pushed items
    effect["ndcg"]   # {"clean": .., "attacked": .., "cleaned": .., "fp_removed": ..}: NDCG@10 of the real users

One recommender (``model``, an unfitted fold-in recommender; default EASE with ``l2=200``, no
tuning; on the binary user x item matrix, every action and rating counted as a presence) is fitted on four training logs built from the same real rows:

* ``clean``: the real users only (no attack);
* ``attacked``: the real users and every fake;
* ``cleaned``: the attacked log without the flagged accounts (fakes caught and real users flagged
  by mistake alike);
* ``fp_removed``: the clean log without the real users flagged by mistake: what the false positives
  alone cost.

Each real user with at least ``min_items`` items has a random ``holdout`` share of their items held
out (seeded) for NDCG@k; the models read the rest. Every real user keeps getting recommendations
from their own history (EASE folds users in), including the ones removed from training.

Measured on the real users who had no target item in their training history:

* ``hr``: HR@k of the targets, the share of (user, target) pairs with the target in the user's top-k
  (seen items excluded);
* ``shift``: prediction shift, the mean change of the target's score against the clean model, in
  the model's score units (for EASE, item-item regression weights summed over the history, not
  ratings), and ``rank_shift``: the mean change of the target's rank among the items the user has
  not seen (negative = pushed up).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.schema import DataError
from ..ranking import ranking_metrics
from .attacks import Injected

LOGS = ("clean", "attacked", "cleaned", "fp_removed")


def attack_effect(injected: Injected, flagged: Iterable, *, k: int = 10, holdout: float = 0.2,
                  min_items: int = 5, model=None, seed: int = 0) -> dict:
    """The attack's effect on the targets and on real users' NDCG@k, before and after removing ``flagged``.

    ``flagged``: the user ids a detector sent to review (any of the log's users). Returns
    ``{"hr", "shift", "rank_shift", "ndcg"}`` (dicts over :data:`LOGS`; ``shift`` and ``rank_shift``
    against the clean model, so without ``"clean"``) and the counts ``flagged``, ``fakes_caught``,
    ``fakes``, ``false_positives``, ``users_measured``.
    """
    if not 0 < holdout < 1:
        raise DataError(f"attack_effect: holdout must be a share in (0, 1), got {holdout!r} (e.g. 0.2)")
    frame = injected.interactions.frame
    labels = injected.labels
    users = pd.Index(labels.index)
    items = pd.Index(pd.unique(frame["item"]))
    flagged = pd.Index(pd.unique(pd.Index(list(flagged))))
    unknown = flagged.difference(users)
    if len(unknown):
        raise DataError(f"attack_effect: flagged user {unknown[0]!r} is not in the attacked log; "
                        "flag users of injected.interactions")
    X = sp.csr_matrix((np.ones(len(frame), dtype=np.float32),
                       (users.get_indexer(frame["user"]), items.get_indexer(frame["item"]))),
                      shape=(len(users), len(items)))
    X.data[:] = 1.0                      # (n_users, n_items) binary: repeats and actions collapse
    fake = labels.to_numpy() == 1
    train, test = _holdout(X, ~fake, holdout, min_items, np.random.default_rng(seed))
    is_flagged = users.isin(flagged)
    keep = {"clean": ~fake, "attacked": np.ones(len(users), bool), "cleaned": ~is_flagged,
            "fp_removed": ~fake & ~is_flagged}
    real = np.flatnonzero(~fake)
    targets = items.get_indexer(pd.Index(injected.targets))
    out = {"hr": {}, "shift": {}, "rank_shift": {}, "ndcg": {}}
    base = None
    for log in LOGS:
        scores = _scores(train, keep[log], real, model)                # (n_real, n_items)
        masked = scores.copy()
        masked[train[real].nonzero()] = -np.inf                        # seen items never rank
        hr, tscore, trank, measured = _target_stats(scores, masked, targets, k)
        out["hr"][log] = hr
        out["ndcg"][log] = _ndcg(masked, test[real], k)
        if base is None:
            base = (tscore, trank)
        else:
            out["shift"][log] = float(np.nanmean(tscore - base[0]))
            out["rank_shift"][log] = float(np.nanmean(trank - base[1]))
    out.update(flagged=len(flagged), fakes=int(fake.sum()), fakes_caught=int((is_flagged & fake).sum()),
               false_positives=int((is_flagged & ~fake).sum()), users_measured=int(measured))
    return out


def _holdout(X: sp.csr_matrix, real: np.ndarray, share: float, min_items: int, rng: np.random.Generator):
    """(train, test) CSR: a ``share`` of each real user's items (users with >= ``min_items``) moved to test."""
    X = X.tocoo()
    draw = rng.random(X.nnz)
    count = np.bincount(X.row, minlength=X.shape[0])
    out = real[X.row] & (count[X.row] >= min_items) & (draw < share)
    def part(mask):
        return sp.csr_matrix((X.data[mask], (X.row[mask], X.col[mask])), shape=X.shape)
    return part(~out), part(out)


def _scores(train: sp.csr_matrix, keep: np.ndarray, real: np.ndarray, model) -> np.ndarray:
    """``model`` (a copy; default EASE) fitted on the kept users' rows; (n_real, n_items) scores of every
    real user's train history."""
    from ..rec.baselines import EASE

    model = EASE(l2=200.0) if model is None else copy.deepcopy(model)
    if not getattr(model, "fold_in", False):
        raise DataError(f"attack_effect: {type(model).__name__} cannot score users from a history; "
                        "use a fold-in model (EASE, ItemKNN, RP3beta, PureSVD)")
    model.fit(train[np.flatnonzero(keep)])
    return np.asarray(model.score(None, history=train[real]), dtype=np.float64)


def _target_stats(scores: np.ndarray, masked: np.ndarray, targets: np.ndarray, k: int):
    """HR@k of the targets over the (user, target) pairs not in the user's history, and per pair the
    target's score and its rank among the unseen items (1 = top); NaN where the user has the target."""
    t = masked[:, targets]                                      # (n_real, n_targets)
    has = ~np.isfinite(t)
    rank = 1.0 + (masked[:, :, None] > t[:, None, :]).sum(axis=1)   # (n_real, n_targets)
    rank[has] = np.nan
    tscore = np.where(has, np.nan, scores[:, targets])
    hits = (rank <= k)[~has]
    return float(hits.mean()) if hits.size else float("nan"), tscore, rank, int((~has).any(axis=1).sum())


def _ndcg(masked: np.ndarray, test: sp.csr_matrix, k: int) -> float:
    """Mean NDCG@k of ``masked`` scores (seen items at -inf) against the held-out ``test`` rows."""
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    values = ranking_metrics(top, test, [k])[f"ndcg@{k}"]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

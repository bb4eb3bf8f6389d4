"""Per-user ranking metrics of top-k lists: the one definition that model selection during
training (:mod:`feedgan.rec.selection`) and evaluation (:mod:`feedgan.eval.metrics`) share.

Definitions (for one user with relevant set R, ranked list L of length k, ``hit_r`` = 1 when
the item at rank r is in R):

- ``precision@k = hits / k``
- ``recall@k    = hits / |R|``                              (LightGCN / BARS convention)
- ``ndcg@k      = sum_r hit_r / log2(r + 1) / IDCG``,  IDCG over ``min(|R|, k)`` hits
- ``mrr@k       = 1 / rank of the first hit`` (0 without a hit)
- ``hitrate@k   = 1 if any hit``
- ``map@k       = sum_r precision@r * hit_r / min(|R|, k)``   (implicit's and RecBole's convention:
  a perfect list scores 1 even when |R| > k)
- ``map_full@k  = sum_r precision@r * hit_r / |R|``          (trec_eval's ``map_cut_k`` and ranx's
  ``map@k``: a list of k items cannot reach 1 when |R| > k)

A user without relevant items has no value (NaN): averages skip such users.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

METRICS = ("precision", "recall", "ndcg", "mrr", "hitrate", "map", "map_full")


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
            "map_full": (cum_hits[:, :k] / ranks[:k] * h).sum(1) / safe,
        }
        for m, v in vals.items():
            out[f"{m}@{k}"] = np.where(has, v, np.nan)
    return out

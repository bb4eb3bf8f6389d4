"""The ranking metrics of feedgan.eval.metrics against trec_eval (through pytrec_eval).

Each user's ranked list becomes a trec run (score = list length - rank, so trec_eval sees no ties
and keeps our order) and their relevant items the qrels (relevance 1). Measure by measure:

- ``precision@k`` = ``P_k``: hits / k, also when the list holds fewer than k items.
- ``recall@k``    = ``recall_k``: hits / |R|.
- ``ndcg@k``      = ``ndcg_cut_k``: binary gains, 1 / log2(rank + 1), the ideal list cut at k
  (IDCG over min(|R|, k) hits) in both.
- ``hitrate@k``   = ``success_k``.
- ``mrr@k``       = ``recip_rank`` of the run cut to its first k items (trec_eval's reciprocal
  rank has no cut-off of its own).
- ``map_full@k`` = ``map_cut_k``: the summed precisions over |R|. ``map@k`` divides by min(|R|, k)
  instead (so a perfect list scores 1 even when |R| > k); the two agree after rescaling by
  |R| / min(|R|, k).
- Users without relevant items are NaN here (skipped in averages); trec_eval evaluates only
  queries that have qrels. An empty list (every slot -1) scores 0 in both; trec_eval gets one
  unjudged placeholder item, which cannot change any measure.
- Ties: trec_eval orders equal scores by document id, descending; our metrics take a ranked
  list and have no tie rule of their own (the order among equal scores is the ranker's). With the
  list put in trec_eval's order, tied runs agree too.
"""
from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval
import scipy.sparse as sp

from feedgan.eval.metrics import ranking_metrics

KS = (1, 3, 5, 10, 20)
TREC = {"P", "recall", "ndcg_cut", "success", "map_cut", "recip_rank"}
PAIRS = {"precision": "P", "recall": "recall", "ndcg": "ndcg_cut", "hitrate": "success"}


def random_case(seed: int, n_users: int = 60, n_items: int = 40, length: int = 20):
    """Ranked lists (n_users, length) with -1 tails of random length, and relevant sets of size
    0 to 25 (fewer and more than the cut-offs), over ``n_items`` items."""
    rng = np.random.default_rng(seed)
    top = np.stack([rng.permutation(n_items)[:length] for _ in range(n_users)])
    short = rng.random(n_users) < 0.3
    for u in np.flatnonzero(short):
        top[u, rng.integers(0, length + 1):] = -1  # shorter lists, down to empty
    rel = [rng.choice(n_items, size=rng.integers(0, 26), replace=False) for _ in range(n_users)]
    rel[0] = top[0, :3]  # a perfect head
    rel[1] = np.setdiff1d(np.arange(n_items), top[1])[:5]  # no hit at all
    rel[2] = np.array([], dtype=int)  # no relevant item
    return top, rel, n_items


def _csr(rel: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(rel)), [len(r) for r in rel])
    cols = np.concatenate(rel).astype(int)
    return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(rel), n_items))


def trec_eval(top: np.ndarray, rel: list[np.ndarray], cut: int | None = None) -> dict[str, dict[str, float]]:
    """pytrec_eval's measures per user ("u<index>"), on each list cut to ``cut`` items if given."""
    qrels = {f"u{u}": {f"i{i}": 1 for i in r} for u, r in enumerate(rel) if len(r)}
    run = {}
    for u, items in enumerate(top):
        items = [i for i in items[:cut] if i >= 0]
        run[f"u{u}"] = {f"i{i}": float(len(items) - r) for r, i in enumerate(items)} or {"placeholder": 0.0}
    cuts = ",".join(map(str, KS))
    measures = {m if m == "recip_rank" else f"{m}.{cuts}" for m in TREC}
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_agree_with_trec_eval(seed):
    top, rel, n_items = random_case(seed)
    ours = ranking_metrics(top, _csr(rel, n_items), KS)
    theirs = trec_eval(top, rel)
    cut_runs = {k: trec_eval(top, rel, cut=k) for k in KS}
    n_rel = np.array([len(r) for r in rel], dtype=float)
    for u in range(len(top)):
        if n_rel[u] == 0:
            assert f"u{u}" not in theirs and all(np.isnan(ours[f"{m}@{k}"][u]) for m in PAIRS for k in KS)
            continue
        t = theirs[f"u{u}"]
        for k in KS:
            for m, trec in PAIRS.items():
                assert ours[f"{m}@{k}"][u] == pytest.approx(t[f"{trec}_{k}"], abs=1e-12), (u, m, k)
            assert ours[f"mrr@{k}"][u] == pytest.approx(cut_runs[k][f"u{u}"]["recip_rank"], abs=1e-12), (u, k)
            rescale = n_rel[u] / min(n_rel[u], k)
            assert ours[f"map@{k}"][u] == pytest.approx(t[f"map_cut_{k}"] * rescale, abs=1e-12), (u, k)
            assert ours[f"map_full@{k}"][u] == pytest.approx(t[f"map_cut_{k}"], abs=1e-12), (u, k)


def test_map_differs_from_trec_eval_when_more_items_are_relevant_than_the_cut():
    # one user, 4 relevant items, a perfect list of 2: ours (1 + 1) / min(4, 2) = 1, trec_eval (1 + 1) / 4
    top, rel = np.array([[0, 1]]), [np.array([0, 1, 2, 3])]
    assert ranking_metrics(top, _csr(rel, 5), [2])["map@2"][0] == 1.0
    assert ranking_metrics(top, _csr(rel, 5), [2])["map_full@2"][0] == pytest.approx(0.5)
    assert trec_eval(top, rel)["u0"]["map_cut_3"] == pytest.approx(0.5)  # cut 3 > 2 items: still 2 / 4


def test_tied_scores_agree_once_the_list_follows_trec_evals_tie_rule():
    rng = np.random.default_rng(11)
    n_users, n_items, k = 30, 25, 10
    scores = rng.integers(0, 4, size=(n_users, n_items)).astype(float)  # heavy ties
    rel = [rng.choice(n_items, size=rng.integers(1, 8), replace=False) for _ in range(n_users)]
    # trec_eval: score descending, then document id descending (as strings: i9 > i24 > i10 > i0)
    ids = np.array([f"i{i}" for i in range(n_items)])
    top = np.stack([sorted(range(n_items), key=lambda i: (s[i], ids[i]), reverse=True)[:k] for s in scores])
    ours = ranking_metrics(top, _csr(rel, n_items), [k])
    qrels = {f"u{u}": {f"i{i}": 1 for i in r} for u, r in enumerate(rel)}
    run = {f"u{u}": {f"i{i}": float(scores[u, i]) for i in range(n_items)} for u in range(n_users)}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {f"P.{k}", f"ndcg_cut.{k}", f"recall.{k}"}).evaluate(run)
    for u in range(n_users):
        assert ours[f"precision@{k}"][u] == pytest.approx(theirs[f"u{u}"][f"P_{k}"], abs=1e-12)
        assert ours[f"recall@{k}"][u] == pytest.approx(theirs[f"u{u}"][f"recall_{k}"], abs=1e-12)
        assert ours[f"ndcg@{k}"][u] == pytest.approx(theirs[f"u{u}"][f"ndcg_cut_{k}"], abs=1e-12)

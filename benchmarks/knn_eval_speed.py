"""ItemKNN fit and full-ranking evaluation on Gowalla: the previous dense paths, the sparse ones,
and implicit's cosine model, timed interleaved in one process at one thread count.

    python benchmarks/knn_eval_speed.py                      # -> runs/knn-eval-speed.json
    python benchmarks/knn_eval_speed.py --pairs 5 --threads 1
    python benchmarks/knn_eval_speed.py --publish            # -> docs/benchmarks/knn-eval-speed.json

Fit: the previous fit (dense similarity blocks of 1024 rows, ``torch.topk`` per row), the sparse
fit, and ``implicit.nearest_neighbours.CosineRecommender(K=k)`` on the same (n_users, n_items)
matrix, in rotating order. Evaluation: ``feedgan.eval.metrics.evaluate`` on the test part with the
previous scoring (dense score rows, a masked copy, ``torch.topk``) and with the current one, on the
same fitted similarity, beside ``implicit.evaluation.ranking_metrics_at_k`` over an implicit
item-item model holding that same similarity (the same scores: history rows times W).

Checks (asserted): the sparse path's metrics equal, to the last bit, those of ``top_n`` on the
same scores as a dense array; the previous path's lists hold the same scores rank by rank (it
differs only in which of several equal-scored items it lists: ``torch.topk`` picks among them
arbitrarily, the current path takes the lower item). The fit's quality (NDCG@20 etc. on test) is
reported for both fits and implicit's cosine on Gowalla and ML-1M. Data: ``../shared/data``
(override with FEEDGAN_DATA).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.readers import read
from feedgan.eval.metrics import evaluate
from feedgan.io import write_json
from feedgan.rec.base import as_csr, top_n
from feedgan.rec.baselines import ItemKNN, _blockwise_topk, _dense

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
LOCAL = ROOT / "runs" / "knn-eval-speed.json"
PUBLISHED = ROOT / "docs" / "benchmarks" / "knn-eval-speed.json"
SETS = {"gowalla": "lightgcn-gowalla", "ml1m": "movielens-1m/lightgcnpp-implicit-split"}
QUALITY = ("ndcg@20", "recall@20", "precision@20")


def previous_fit(X: sp.csr_matrix, k: int, shrink: float) -> sp.csr_matrix:
    """The previous ItemKNN fit: dense (1024, n_items) similarity blocks, ``torch.topk`` per row."""
    XT = X.T.tocsr()
    n = X.shape[1]
    norms = torch.from_numpy(np.sqrt(np.asarray(X.sum(0)).ravel()).astype(np.float32))

    def block(start, stop):
        co = _dense(XT[start:stop] @ X)
        co[torch.arange(stop - start), torch.arange(start, stop)] = 0.0
        return co / (norms[start:stop, None] * norms[None, :] + shrink + 1e-12)

    return _blockwise_topk(block, n, n, k).T.tocsr()


def previous_top_n(scores: np.ndarray, n: int, exclude: sp.csr_matrix):
    """The previous top-n: a masked copy of dense scores, ``torch.topk``."""
    scores = torch.from_numpy(np.asarray(scores, dtype=np.float32))
    rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
    scores = scores.clone()
    scores[torch.from_numpy(rows), torch.from_numpy(exclude.indices.astype(np.int64))] = -torch.inf
    val, idx = torch.topk(scores, min(n, scores.shape[1]), dim=1)
    idx[torch.isneginf(val)] = -1
    return idx.numpy(), val.numpy()


class PreviousScoring:
    """A fitted ItemKNN behind the previous scoring path (dense score rows), for ``evaluate``."""

    name = "itemknn-previous"

    def __init__(self, model: ItemKNN):
        self.model = model

    def recommend(self, users=None, n=10, exclude_seen=True, history=None, exclude=None):
        h = as_csr(history, self.model.n_items_)
        return previous_top_n((h @ self.model.W_).toarray(), n, h if exclude is None else exclude)


class DenseScoring(PreviousScoring):
    """The same model ranked by ``top_n`` from dense (B, n_items) scores: the identity check."""

    name = "itemknn-dense"

    def recommend(self, users=None, n=10, exclude_seen=True, history=None, exclude=None):
        h = as_csr(history, self.model.n_items_)
        return top_n(self.model.score(None, h), n, exclude=h if exclude is None else exclude)


def same_scores_rank_by_rank(model: ItemKNN, hist: sp.csr_matrix, users: np.ndarray, n: int = 20) -> dict:
    """Lists of the previous and the current path, user by user: their scores must be equal at
    every rank; counts the users whose items differ (equal scores listed in another order)."""
    differ = 0
    for start in range(0, len(users), 2048):
        h = hist[users[start:start + 2048]]
        old_i, old_v = PreviousScoring(model).recommend(history=h, n=n)
        new_i, new_v = model.recommend(None, n=n, history=h)
        np.testing.assert_array_equal(old_v, new_v)
        differ += int((old_i != new_i).any(1).sum())
    return {"users": int(len(users)), "users_with_tied_items_reordered": differ}


def load(name: str):
    inter = read(str(DATA / SETS[name]), format="lightgcn")
    return prepare(inter, DataConfig(split="predefined", valid=0.1, test=0.2, seed=0))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def implicit_cosine(X: sp.csr_matrix, k: int, threads: int):
    from implicit.nearest_neighbours import CosineRecommender

    model = CosineRecommender(K=k, num_threads=threads)
    model.fit(X, show_progress=False)  # implicit's fit returns None
    return model


def implicit_eval(W: sp.csr_matrix, hist: sp.csr_matrix, test: sp.csr_matrix, k: int, threads: int):
    """implicit's evaluation of an item-item model that holds ``W``: scores = history rows @ W."""
    from implicit.evaluation import ranking_metrics_at_k
    from implicit.nearest_neighbours import ItemItemRecommender, NearestNeighboursScorer

    m = ItemItemRecommender(K=k, num_threads=threads)
    m.similarity = W.astype(np.float64).tocsr()
    m.scorer = NearestNeighboursScorer(m.similarity)
    return ranking_metrics_at_k(m, hist.astype(np.float64), test.astype(np.float64), K=20, show_progress=False,
                                num_threads=threads)


def summary(times: dict[str, list[float]], base: str) -> dict:
    out = {}
    for key, ts in times.items():
        ratios = [b / t for b, t in zip(times[base], ts)]
        out[key] = {"seconds": ts, "median_s": statistics.median(ts),
                    f"{base}_over_this": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}}
    return out


def quality(name: str, k: int, shrink: float, threads: int) -> dict:
    """Test metrics of the previous and the current fit on one dataset (same evaluation path)."""
    ds = load(name)
    X = ds.history("test")  # train + valid: the fit a test score is read from
    new = ItemKNN(k=k, shrink=shrink).fit(X)
    old = ItemKNN(k=k, shrink=shrink).fit(X)
    old.W_ = previous_fit(as_csr(X), k, shrink)
    m_new, m_old = evaluate(new, ds, "test"), evaluate(old, ds, "test")
    row = {"previous": {q: m_old[q] for q in QUALITY}, "current": {q: m_new[q] for q in QUALITY},
           "W_equal": bool((new.W_ != old.W_).nnz == 0)}
    ic = implicit_cosine(as_csr(X), k, threads)
    imp = ItemKNN(k=k, shrink=shrink).fit(X)
    imp.W_ = ic.similarity.astype(np.float32).tocsr()  # implicit's cosine through the same evaluation
    m_imp = evaluate(imp, ds, "test")
    row["implicit_cosine"] = {q: m_imp[q] for q in QUALITY}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--shrink", type=float, default=10.0)
    ap.add_argument("--publish", action="store_true", help=f"write {PUBLISHED.relative_to(ROOT)}")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load("gowalla")
    X = as_csr(ds.history("test"))  # (n_users, n_items) train + valid, binary
    test, hist = ds.matrix("test"), ds.history("test")
    fit_t = {"previous": [], "current": [], "implicit": []}
    fitters = {"previous": lambda: previous_fit(X, args.k, args.shrink),
               "current": lambda: ItemKNN(k=args.k, shrink=args.shrink).fit(X),
               "implicit": lambda: implicit_cosine(X, args.k, args.threads)}
    model = None
    for p in range(args.pairs):
        order = list(fitters)[p % 3:] + list(fitters)[:p % 3]  # rotate who goes first
        for key in order:
            s, out = timed(fitters[key])
            fit_t[key].append(s)
            model = out if key == "current" else model
        print("fit", p, {k: round(v[-1], 2) for k, v in fit_t.items()}, flush=True)
    eval_t = {"previous": [], "current": [], "implicit": []}
    previous = PreviousScoring(model)
    results = {}
    evaluators = {"previous": lambda: evaluate(previous, ds, "test"), "current": lambda: evaluate(model, ds, "test"),
                  "implicit": lambda: implicit_eval(model.W_, hist, test, args.k, args.threads)}
    for p in range(args.pairs):
        order = list(evaluators)[p % 3:] + list(evaluators)[:p % 3]
        for key in order:
            s, results[key] = timed(evaluators[key])
            eval_t[key].append(s)
        print("eval", p, {k: round(v[-1], 2) for k, v in eval_t.items()}, flush=True)
    dense = evaluate(DenseScoring(model), ds, "test")
    differ = {k: (dense[k], v) for k, v in results["current"].items() if dense[k] != v}
    assert not differ, f"sparse and dense top-n disagree: {differ}"
    ranks = same_scores_rank_by_rank(model, hist, np.flatnonzero(test.getnnz(1) > 0))
    delta = {k: abs(results["previous"][k] - v) for k, v in results["current"].items() if k.split("@")[0] in
             ("precision", "recall", "ndcg", "mrr", "map", "hitrate")}
    out = {
        "command": "python benchmarks/knn_eval_speed.py" + (f" --pairs {args.pairs}" if args.pairs != 3 else "")
                   + (f" --threads {args.threads}" if args.threads != 1 else ""),
        "threads": args.threads, "k": args.k, "shrink": args.shrink, "pairs": args.pairs,
        "data": {"users": ds.n_users, "items": ds.n_items, "fit_pairs": int(X.nnz), "test_pairs": int(test.nnz)},
        "fit": summary(fit_t, "previous"),
        "evaluate": summary(eval_t, "previous"),
        "metrics_identical_to_dense_top_n": True,
        "previous_path_same_scores_rank_by_rank": ranks,
        "previous_path_max_metric_difference": max(delta.values()),
        "metrics": {q: results["current"][q] for q in QUALITY},
        "previous_path_metrics": {q: results["previous"][q] for q in QUALITY},
        "implicit_metrics": {q: float(v) for q, v in results["implicit"].items()},
        "quality": {name: quality(name, args.k, args.shrink, args.threads) for name in SETS},
    }
    write_json(PUBLISHED if args.publish else LOCAL, out)
    print({part: {k: round(v["median_s"], 2) for k, v in out[part].items()} for part in ("fit", "evaluate")})
    print(out["quality"], ranks, out["previous_path_max_metric_difference"])


if __name__ == "__main__":
    main()

"""Indistinguishability: can a classifier tell synthetic users from real ones?

The classifier two-sample test (C2ST): describe every user by a vector of profile features, label
real holdout users 1 and synthetic users 0 (equal numbers: the larger set is subsampled), and
measure how well a classifier separates them out of fold (stratified k-fold cross-validation). Its
ROC-AUC is 0.5 when the two samples cannot be told apart and 1 when they always can.

Profile features of a user (:func:`profile_features`), computed with statistics of the pooled
real + synthetic users so neither side defines the scale:

* ``log_events[a]`` for each action ``a``, and ``log_events`` over all: ``log1p`` of the counts
* ``pop_mean``, ``pop_std``: mean and standard deviation of ``log1p(item popularity)`` over the
  user's items (popularity = users who touched the item, pooled)
* ``tail_share``: share of the user's items outside the pooled top-20% popular items
* ``mix[a]``: share of the user's events that are action ``a``
* ``svd_0 ..``: a low-rank embedding of the union profile (TruncatedSVD fitted on the pooled
  union matrix, a few components, on L2-normalised rows so it sees *which* items, not how many)

As an outside check, SDMetrics' ``LogisticDetection`` runs on the same per-user features when the
optional ``sdmetrics`` package is importable; its score is ``1 - (2 * max(AUC, 0.5) - 1)``
(1 = indistinguishable), reported as it comes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize
from threadpoolctl import threadpool_limits

from .fidelity import HEAD_SHARE, same_catalogue
from .profiles import Profiles

SVD_COMPONENTS = 8
CLASSIFIERS = ("hgb", "logistic")
# Small fits (a few thousand rows, a few dozen features) run on one thread: on a busy machine the
# default thread pool of gradient boosting spends ten times longer waiting than computing.
ONE_THREAD = 1


def profile_features(a: Profiles, b: Profiles, *, n_components: int = SVD_COMPONENTS,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of the users of ``a`` and of ``b``: ((a.n_users, F), (b.n_users, F), the F names)."""
    same_catalogue(real=a, synth=b)
    actions = list(dict.fromkeys([*a.action_names, *b.action_names]))
    ua, ub = a.union(), b.union()
    pooled = sp.vstack([ua, ub]).tocsr()                          # (n_a + n_b, n_items)
    pop = pooled.getnnz(0).astype(np.float64)                     # (n_items,) users per item
    head = np.zeros(a.n_items, dtype=bool)
    head[np.argsort(-pop, kind="stable")[: int(np.ceil(HEAD_SHARE * a.n_items))]] = True
    k = max(1, min(n_components, a.n_items - 1, pooled.shape[0] - 1))
    svd = TruncatedSVD(n_components=k, random_state=seed).fit(normalize(pooled))
    names = ([f"log_events[{x}]" for x in actions] + ["log_events", "pop_mean", "pop_std", "tail_share"]
             + [f"mix[{x}]" for x in actions] + [f"svd_{i}" for i in range(k)])
    return _features(a, ua, actions, pop, head, svd), _features(b, ub, actions, pop, head, svd), names


def _features(p: Profiles, u: sp.csr_matrix, actions: list[str], pop: np.ndarray, head: np.ndarray,
              svd: TruncatedSVD) -> np.ndarray:
    counts = np.column_stack([p.actions[x].getnnz(1) if x in p.actions else np.zeros(p.n_users) for x in actions])
    total = counts.sum(1)                                          # (n_users,)
    n_items = np.maximum(u.getnnz(1), 1)
    logpop = np.log1p(pop)
    mean = (u @ logpop) / n_items
    std = np.sqrt(np.maximum((u @ logpop ** 2) / n_items - mean ** 2, 0.0))
    tail = (u @ (~head).astype(np.float64)) / n_items
    mix = counts / np.maximum(total, 1)[:, None]
    return np.column_stack([np.log1p(counts), np.log1p(total), mean, std, tail, mix,
                            svd.transform(normalize(u))]).astype(np.float64)


def _classifier(name: str, seed: int):
    if name == "hgb":
        return HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {name!r}")


def _balanced(n_a: int, n_b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = min(n_a, n_b)
    return np.sort(rng.choice(n_a, n, replace=False)), np.sort(rng.choice(n_b, n, replace=False))


def c2st(real: Profiles, synth: Profiles, *, classifier: str = "hgb", folds: int = 5, seed: int = 0) -> dict:
    """Classifier two-sample test, real vs synth: ``{"auc_mean", "auc_std", "fold_aucs", ...}``."""
    xa, xb, names = profile_features(real, synth, seed=seed)
    ia, ib = _balanced(len(xa), len(xb), np.random.default_rng(seed))
    x = np.vstack([xa[ia], xb[ib]])
    y = np.r_[np.ones(len(ia)), np.zeros(len(ib))]
    if len(ia) < folds:
        raise ValueError(f"the two-sample test needs at least {folds} users per side, got {len(ia)}")
    aucs = []
    with threadpool_limits(ONE_THREAD):
        for fit, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            clf = _classifier(classifier, seed).fit(x[fit], y[fit])
            aucs.append(float(roc_auc_score(y[test], clf.predict_proba(x[test])[:, 1])))
    return {"auc_mean": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "fold_aucs": aucs,
            "n_per_class": len(ia), "classifier": classifier, "features": names}


def sdmetrics_detection(real: Profiles, synth: Profiles, *, seed: int = 0) -> dict:
    """SDMetrics' LogisticDetection on the per-user features, or ``{"skipped": reason}`` without it."""
    try:
        from sdmetrics.single_table import LogisticDetection
    except ImportError:
        return {"skipped": "sdmetrics is not installed (optional: pip install sdmetrics)"}
    xa, xb, names = profile_features(real, synth, seed=seed)
    cols = [f"f{i}" for i in range(len(names))]  # plain column names: some metric backends dislike brackets
    meta = {"columns": {c: {"sdtype": "numerical"} for c in cols}}
    try:
        score = LogisticDetection.compute(pd.DataFrame(xa, columns=cols), pd.DataFrame(xb, columns=cols), meta)
    except Exception as err:  # noqa: BLE001 (an optional outside check: its failure is reported, not raised)
        return {"skipped": f"sdmetrics LogisticDetection failed: {type(err).__name__}: {err}"}
    return {"score": float(score), "metric": "sdmetrics.single_table.LogisticDetection"}


def detection(real: Profiles, synth: Profiles, reference: Profiles | None = None, *, classifier: str = "hgb",
              folds: int = 5, seed: int = 0) -> dict:
    """The two-sample test of ``synth`` against the ``real`` holdout, the same for ``reference`` (train)
    against it as the ceiling when given (about 0.5), and the SDMetrics check."""
    out = {"synth": c2st(real, synth, classifier=classifier, folds=folds, seed=seed)}
    if reference is not None:
        out["ceiling"] = c2st(real, reference, classifier=classifier, folds=folds, seed=seed)
    out["sdmetrics"] = sdmetrics_detection(real, synth, seed=seed)
    return out

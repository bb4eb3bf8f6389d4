"""Propensity evaluation on exposure logs: how well a model predicts P(action | user, shown item).

Ranking metrics (:mod:`feedgan.eval.metrics`) ask "is the liked item near the top?"; propensity
metrics ask "when we showed this item to this user, how likely was the like?", pair by pair, over
the *exposures* of a log (rows of action ``impression``, :data:`feedgan.data.schema.EXPOSURE`).

Protocol
--------
Split the log on the exposures, with every action of a held-out exposure held out with it::

    ds = prepare(inter, DataConfig(split="random", target_action="impression", aux_in_train=False))
    model = LogisticPropensity().fit(ds, target="like", aux=("view",))
    evaluate_propensity(model, ds, "test")       # {"like": {"auc": ..., "logloss": ..., ...}}

A test pair is then an impression whose view, like, share ... are all in test, so nothing the
model reads at fit time says what happened on that exposure (no leakage). A pair's label for an
action is 1 when the user took that action on the item in the same part. Actions without an
exposure row in that part (a like on an item never logged as shown) are not pairs: they are left
out, not counted as positives.

Metrics (``y`` binary labels, ``p`` predicted probabilities, both (n,))
---------------------------------------------------------------------
- ``roc_auc``: the probability that a random positive scores above a random negative, ties
  counting one half; computed from average ranks (Mann-Whitney U). With a single class the AUC is
  undefined: :func:`roc_auc` returns NaN (a rare action can have no positive in a small test part,
  and one such action must not abort the evaluation of the others).
- ``log_loss``: mean ``-(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``.
- ``brier``: mean ``(p - y) ** 2``.
- ``ece``: expected calibration error over ``bins`` equal-width bins of ``p`` on [0, 1]: bin ``k``
  holds ``k / bins <= p < (k + 1) / bins`` (the last bin also holds ``p = 1``); ``ece = sum_k
  n_k / n * |mean(p in k) - mean(y in k)|``; empty bins count zero.
- ``reliability``: the per-bin numbers behind the ECE (mean prediction, observed rate, count),
  drawn by :func:`reliability_chart`.

Every metric checks its inputs: 1-D, same length, non-empty, labels in {0, 1}, finite ``p`` (and
in [0, 1] for the probability metrics); anything else is a ``ValueError`` that says what is wrong.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from scipy.stats import rankdata

from ..data.schema import EXPOSURE
from ..sparse import binary, pair_lookup

__all__ = ["brier", "ece", "evaluate_propensity", "log_loss", "propensity_pairs", "reliability",
           "reliability_chart", "roc_auc"]


# -- metrics ---------------------------------------------------------------------------------------
def _check(y, p, probabilities: bool = True) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"labels and predictions must be 1-D, got shapes {y.shape} and {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels for {len(p)} predictions")
    if len(y) == 0:
        raise ValueError("no pairs to score (empty labels and predictions)")
    if y.dtype == bool:
        y = y.astype(np.float64)
    elif y.dtype.kind not in "iuf":
        raise ValueError(f"labels must be numbers 0/1, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        bad = y[~np.isin(y, (0.0, 1.0))][0]
        raise ValueError(f"labels must be 0 or 1, got {bad}")
    if not np.isfinite(p).all():
        raise ValueError("predictions contain NaN or infinity")
    if probabilities and ((p < 0).any() or (p > 1).any()):
        raise ValueError(f"predictions must be probabilities in [0, 1], got range [{p.min():.4g}, {p.max():.4g}]")
    return y, p


def roc_auc(y, p) -> float:
    """ROC-AUC from average ranks: ``(sum of positive ranks - n1 (n1 + 1) / 2) / (n1 n0)``.

    Ties get their average rank, so a tied positive/negative pair counts 1/2. ``p`` may be any
    real score. Returns NaN when ``y`` holds a single class (the AUC is undefined)."""
    y, p = _check(y, p, probabilities=False)
    n1 = float(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(p, method="average")
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def log_loss(y, p, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (natural log); ``p`` clipped to ``[eps, 1 - eps]``."""
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    y, p = _check(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(y, p) -> float:
    """Mean squared error of the probabilities."""
    y, p = _check(y, p)
    return float(np.mean((p - y) ** 2))


def _bins(p: np.ndarray, bins: int) -> np.ndarray:
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    return np.minimum((p * bins).astype(np.int64), bins - 1)  # [k/bins, (k+1)/bins), p = 1 in the last


def reliability(y, p, bins: int = 15) -> dict:
    """Per-bin calibration: ``edges`` (bins + 1,), ``mean_pred``, ``observed`` (bins,) with NaN
    for empty bins, ``count`` (bins,) int. Bins as in :func:`ece`."""
    y, p = _check(y, p)
    b = _bins(p, bins)
    count = np.bincount(b, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(b, weights=p, minlength=bins) / count
        observed = np.bincount(b, weights=y, minlength=bins) / count
    return {"edges": np.linspace(0.0, 1.0, bins + 1), "mean_pred": mean_pred, "observed": observed,
            "count": count.astype(np.int64)}


def ece(y, p, bins: int = 15) -> float:
    """Expected calibration error: bin-count-weighted mean of ``|mean prediction - observed rate|``
    over equal-width bins (see the module docstring)."""
    r = reliability(y, p, bins)
    full = r["count"] > 0
    gap = np.abs(r["mean_pred"][full] - r["observed"][full])
    return float((r["count"][full] * gap).sum() / r["count"].sum())


# -- pairs and evaluation ----------------------------------------------------------------------------
def propensity_pairs(dataset, part: str, action: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exposure pairs of ``part`` and their labels for ``action``.

    Returns ``(users, items, labels)``, each (n,), in (user, item) order: every (user, item) with an
    ``impression`` row in ``part`` (once, however many rows it has), labelled 1 when the user took
    ``action`` on that item in the same part, else 0. Raises ``ValueError`` when the dataset has
    no exposures or ``action`` is the exposure action itself; ``KeyError`` for an unknown part or
    action (as :meth:`Dataset.matrix`)."""
    if EXPOSURE not in dataset.actions:
        raise ValueError(f"the dataset has no {EXPOSURE!r} rows (exposures), so there are no shown pairs to "
                         f"score; its actions are {dataset.actions}")
    if action == EXPOSURE:
        raise ValueError(f"{EXPOSURE!r} is the exposure itself; pick an action taken on shown items, "
                         f"one of {[a for a in dataset.actions if a != EXPOSURE]}")
    E = binary(dataset.matrix(part, EXPOSURE))
    A = dataset.matrix(part, action)
    users = np.repeat(np.arange(E.shape[0], dtype=np.int64), np.diff(E.indptr))
    items = E.indices.astype(np.int64)
    return users, items, pair_lookup(A, users, items).astype(np.int8)


def _metrics(y: np.ndarray, p: np.ndarray, bins: int) -> dict:
    r = reliability(y, p, bins)
    return {"auc": roc_auc(y, p), "logloss": log_loss(y, p), "ece": ece(y, p, bins), "brier": brier(y, p),
            "base_rate": float(y.mean()), "mean_pred": float(p.mean()), "n": int(len(y)),
            "positives": int(y.sum()),
            "reliability": {k: v.tolist() for k, v in r.items()}}


def evaluate_propensity(model, dataset, part: str = "test", actions: Iterable[str] | str | None = None,
                        bins: int = 15) -> dict[str, dict]:
    """Score ``model.predict_proba(users, items)`` on the exposure pairs of ``part``, per action.

    ``model`` is a fitted model with ``predict_proba`` (its internal indices must be the dataset's:
    fit it on ``dataset``), or a mapping action -> model (one propensity model per action).
    ``actions`` default: the mapping's keys, else the model's target (``model.target_``), else
    every non-exposure action of the dataset.

    Returns ``{action: {"auc", "logloss", "ece", "brier", "base_rate", "mean_pred", "n",
    "positives", "reliability"}}``: ``base_rate`` is the observed share of positives among the
    pairs, ``mean_pred`` the mean prediction (calibration in the large), ``n`` the pair count,
    ``reliability`` the per-bin lists of :func:`reliability` (JSON-ready). ``auc`` is NaN when the
    part has no positive (or no negative) for that action."""
    models = dict(model) if isinstance(model, Mapping) else None
    if isinstance(actions, str):
        actions = [actions]
    if actions is None:
        if models is not None:
            actions = list(models)
        elif getattr(model, "target_", None) is not None:
            actions = [model.target_]
        else:
            actions = [a for a in dataset.actions if a != EXPOSURE]
    actions = list(actions)
    out = {}
    for action in actions:
        m = model if models is None else models.get(action)
        if m is None:
            raise ValueError(f"no model for action {action!r}; the mapping has {sorted(models)}")
        if not hasattr(m, "predict_proba"):
            raise TypeError(f"{type(m).__name__} has no predict_proba(users, items); use a propensity model")
        n_users, n_items = getattr(m, "n_users_", None), getattr(m, "n_items_", None)
        if (n_users, n_items) != (dataset.n_users, dataset.n_items):
            raise ValueError(f"the model knows {n_users} users x {n_items} items, the dataset has "
                             f"{dataset.n_users} x {dataset.n_items}: fit the model on this dataset")
        users, items, y = propensity_pairs(dataset, part, action)
        if len(y) == 0:
            raise ValueError(f"part {part!r} has no exposures to score")
        p = np.asarray(m.predict_proba(users, items), dtype=np.float64)
        if p.shape != y.shape:
            raise ValueError(f"predict_proba returned shape {p.shape} for {len(y)} pairs")
        out[action] = _metrics(y, p, bins)
    return out


# -- chart -----------------------------------------------------------------------------------------
def reliability_chart(results_by_model: Mapping[str, Mapping], action: str | None = None,
                      title: str | None = None):
    """Reliability diagram: one line per model (mean prediction vs observed rate per non-empty
    bin), the diagonal for reference, and the pair counts per bin below (log scale).

    ``results_by_model`` maps a model name to a :func:`reliability` dict, or to the result of
    :func:`evaluate_propensity` (then ``action`` picks the action; default: the first one).
    Returns a matplotlib figure (Agg backend; embed with :func:`feedgan.eval.report.figure_html`)."""
    from .report import plt  # Agg backend, set once in report

    if not results_by_model:
        raise ValueError("no models to draw")
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfect calibration")
    top = 0.0
    for name, res in results_by_model.items():
        rel = _reliability_of(res, action, name)
        count = np.asarray(rel["count"])
        full = count > 0
        mean_pred = np.asarray(rel["mean_pred"], dtype=np.float64)[full]
        observed = np.asarray(rel["observed"], dtype=np.float64)[full]
        top = max(top, float(mean_pred.max(initial=0)), float(observed.max(initial=0)))
        line, = ax.plot(mean_pred, observed, marker="o", markersize=3, linewidth=1.2, label=str(name))
        edges = np.asarray(rel["edges"], dtype=np.float64)
        ax_n.step(edges[:-1], np.maximum(count, 0.8), where="post", color=line.get_color(), linewidth=1)
    lim = min(1.0, max(0.05, top * 1.1))  # zoom on the populated range (rates are often small)
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_ylabel("observed rate")
    ax.set_title(title or ("Reliability" + (f" ({action})" if action else "")))
    ax.legend(fontsize=8)
    ax_n.set_yscale("log")
    ax_n.set_xlabel("predicted probability")
    ax_n.set_ylabel("pairs")
    return fig


def _reliability_of(res: Mapping, action: str | None, name: str) -> Mapping:
    if {"mean_pred", "observed", "count", "edges"} <= set(res):
        return res
    if not res:
        raise ValueError(f"model {name!r} has no results")
    key = action if action is not None else next(iter(res))
    if key not in res:
        raise KeyError(f"model {name!r} has no result for action {key!r}; it has {sorted(res)}")
    rel = res[key].get("reliability") if isinstance(res[key], Mapping) else None
    if rel is None:
        raise ValueError(f"the result of {name!r} for {key!r} has no reliability bins")
    return rel

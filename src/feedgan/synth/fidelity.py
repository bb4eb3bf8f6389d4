"""Fidelity: how closely synthetic users reproduce the marginals and co-occurrences of real ones.

Every figure compares the synthetic users with the real **holdout** users, and sits beside the same
figure for the real **reference** (train) users against the holdout: the noise ceiling, what a
perfect generator that draws fresh users from the real population would score at these sample
sizes. Scores are similarities in [0, 1], 1 = identical, and their key names say the measure:

* ``*_1_minus_tvd``: 1 - total variation distance between two histograms over one shared binning
  (``TVD = 0.5 * sum |p - q|``), for counts (events per user, friends per user: log2 bins
  ``0, 1, 2-3, 4-7, ...``) and for categorical shares (events per item, per action).
* ``*_1_minus_ks``: 1 - the two-sample Kolmogorov-Smirnov statistic (largest gap between the
  empirical CDFs), for continuous values (seconds between a user's consecutive events).

Raw statistics (Gini, long-tail share, funnel rates) are reported for the three sets as they are,
with the similarity next to them where one is defined.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.stats import ks_2samp

from ..data.schema import ACTIONS, DataError
from .profiles import Profiles

HEAD_SHARE = 0.2     # the "head": the real top-20% most popular items; the rest is the long tail
TOP_ITEMS = 200      # co-occurrence fidelity looks at the neighbours of the most popular items
NEIGHBOURS = 20      # ... their top-20 co-occurring items


def same_catalogue(**sets: Profiles) -> None:
    """Raise a one-line :class:`DataError` unless every profile set spans the same items, in order."""
    (first, ref), *rest = sets.items()
    for name, p in rest:
        if p.n_items != ref.n_items or not np.array_equal(p.items, ref.items):
            where = (f"{p.n_items} items vs {ref.n_items}" if p.n_items != ref.n_items else
                     f"column {int(np.flatnonzero(p.items != ref.items)[0])} differs")
            raise DataError(f"{name!r} and {first!r} profiles are over different item catalogues ({where})",
                            fix="sample synthetic users from a generator fitted on the same catalogue "
                                "(Profiles.from_interactions(log, items=real.items))")


# -- small statistics ----------------------------------------------------------------------------
def tvd_similarity(p: np.ndarray, q: np.ndarray) -> float:
    """1 - TVD between two histograms (counts or shares over the same bins); 1.0 when both are empty."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return float(p.sum() == q.sum())
    return float(1.0 - 0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def ks_similarity(x: np.ndarray, y: np.ndarray) -> float | None:
    """1 - KS statistic between two samples; None when either is empty."""
    if len(x) == 0 or len(y) == 0:
        return None
    return float(1.0 - ks_2samp(x, y).statistic)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts: 0 = all equal, (n-1)/n = everything on one."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float(2.0 * (np.arange(1, n + 1) * x).sum() / (n * total) - (n + 1) / n)


def log2_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Histogram of non-negative integers over bins 0, 1, 2-3, 4-7, ... (``n_bins`` of them)."""
    v = np.asarray(values, dtype=np.int64)
    b = np.where(v <= 0, 0, np.floor(np.log2(np.maximum(v, 1))).astype(np.int64) + 1)
    return np.bincount(np.minimum(b, n_bins - 1), minlength=n_bins)


def _n_log2_bins(*arrays: np.ndarray) -> int:
    top = max((int(a.max()) for a in arrays if len(a)), default=0)
    return int(np.floor(np.log2(max(top, 1)))) + 2


def _compare(stat, real: Profiles, synth: Profiles, reference: Profiles, similarity) -> dict:
    r, s, f = stat(real), stat(synth), stat(reference)
    return {"synth": similarity(r, s), "ceiling": similarity(r, f)}


# -- per-set summaries ---------------------------------------------------------------------------
def item_events(p: Profiles) -> np.ndarray:
    """(n_items,) events on each item, over every action."""
    return np.asarray(sum(m.getnnz(0) for m in p.actions.values())).ravel()


def head_items(p: Profiles, share: float = HEAD_SHARE) -> np.ndarray:
    """Positions of the ``share`` most popular items of ``p`` (ties broken by catalogue order)."""
    k = int(np.ceil(share * p.n_items))
    return np.argsort(-item_events(p), kind="stable")[:k]


def long_tail_share(p: Profiles, head: np.ndarray) -> float:
    """Fraction of ``p``'s events on items outside ``head``."""
    ev = item_events(p)
    return float(1.0 - ev[head].sum() / ev.sum()) if ev.sum() else 0.0


def funnel_order(real: Profiles) -> list[str]:
    """The funnel: the schema's actions in order (view, like, comment, share, follow), then any other."""
    known = [a for a in ACTIONS if a in real.actions]
    return known + [a for a in real.action_names if a not in known]


def funnel_rate(p: Profiles, a: str, b: str) -> float | None:
    """P(b | a): the fraction of (user, item) pairs with action ``a`` that also have ``b``."""
    if a not in p.actions or p.actions[a].nnz == 0:
        return None
    if b not in p.actions:
        return 0.0
    return float(p.actions[a].multiply(p.actions[b]).nnz / p.actions[a].nnz)


def inter_event_seconds(p: Profiles) -> np.ndarray:
    """Seconds between each user's consecutive events (every action pooled); empty without times."""
    if not p.times:
        return np.zeros(0)
    rows, ts = [], []
    for t in p.times.values():
        t = t.tocsr()
        rows.append(np.repeat(np.arange(t.shape[0]), np.diff(t.indptr)))
        ts.append(t.data)
    rows, ts = np.concatenate(rows), np.concatenate(ts)
    order = np.lexsort((ts, rows))
    rows, ts = rows[order], ts[order]
    same = rows[1:] == rows[:-1]
    return (ts[1:] - ts[:-1])[same]


def neighbours(x: sp.csr_matrix, items: np.ndarray, k: int = NEIGHBOURS) -> list[np.ndarray]:
    """For each of ``items``: its (up to) ``k`` items most often co-occurring in a user's profile.

    ``x`` is (users, n_items) binary; co-occurrence counts are ``x[:, items].T @ x`` (len(items), n_items),
    the item itself left out, ties broken by catalogue order, zero counts never neighbours."""
    counts = (x[:, items].T @ x).toarray()         # (len(items), n_items)
    counts[np.arange(len(items)), items] = 0
    top = np.argsort(-counts, axis=1, kind="stable")[:, :k]
    return [row[counts[i, row] > 0] for i, row in enumerate(top)]


def neighbour_overlap(real_nb: list[np.ndarray], other_nb: list[np.ndarray]) -> float | None:
    """Mean over items with real neighbours of |A ∩ B| / max(|A|, |B|) (= |A ∩ B| / 20 when both are full)."""
    scores = [len(np.intersect1d(a, b)) / max(len(a), len(b)) for a, b in zip(real_nb, other_nb) if len(a)]
    return float(np.mean(scores)) if scores else None


# -- the figure set ------------------------------------------------------------------------------
def friend_degree_similarity(a: Profiles, b: Profiles, seed: int = 0) -> float:
    """1 - TVD of friends per user (log2 bins), compared at the smaller set's size.

    A set holds the friend edges among its own users, so a user's degree grows with the set's
    size: a random 60% of a network keeps about 60% of each user's friends, a 20% part about 20%.
    The larger set's degrees are thinned to the smaller one's size (each friend kept with
    probability ``(m - 1) / (n - 1)``, ``m`` and ``n`` the two sizes; binomial, seeded), so two
    random parts of one network compare as the same distribution."""
    rng = np.random.default_rng(seed)
    m = min(a.n_users, b.n_users)

    def degrees(p: Profiles) -> np.ndarray:
        d = p.friends.getnnz(1)
        return d if p.n_users <= m else rng.binomial(d, (m - 1) / max(p.n_users - 1, 1))

    da, db = degrees(a), degrees(b)
    nd = _n_log2_bins(da, db)
    return tvd_similarity(log2_bins(da, nd), log2_bins(db, nd))


def fidelity(real: Profiles, synth: Profiles, reference: Profiles, *, funnel: Sequence[str] | None = None,
             top_items: int = TOP_ITEMS, k: int = NEIGHBOURS) -> dict:
    """Fidelity of ``synth`` to the ``real`` holdout users, with ``reference`` (train) as the ceiling.

    Returns a JSON-ready dict::

        activity_1_minus_tvd       {synth, ceiling}   events per user, log2 bins shared by all three sets
        popularity_1_minus_tvd     {synth, ceiling}   share of events on each catalogue item
        gini                       {real, synth, reference}   Gini of events per item (0 = flat)
        long_tail_share            {real, synth, reference}   events outside the real top-20% items
        action_mix_1_minus_tvd     {synth, ceiling}   share of events per action
        funnel                     {"b|a": {real_rate, synth_rate, reference_rate, synth, ceiling}}
                                   for every pair a before b in the funnel order present in ``real``;
                                   synth/ceiling = 1 - |rate - real rate| (the TVD of two Bernoullis)
        inter_event_1_minus_ks     {synth, ceiling}   seconds between a user's consecutive events;
                                   null when a set has no times (absent when ``real`` has none)
        friend_degree_1_minus_tvd  {synth, ceiling}   friends per user, log2 bins, at the smaller set's size
                                   (:func:`friend_degree_similarity`; absent without friends)
        cooccurrence_overlap       {synth, ceiling, items}   mean top-``k`` neighbour overlap over the
                                   ``top_items`` most popular real items
    """
    same_catalogue(real=real, synth=synth, reference=reference)
    sets = {"real": real, "synth": synth, "reference": reference}
    out: dict = {}

    acts = [p.activity() for p in (real, synth, reference)]
    nb = _n_log2_bins(*acts)
    out["activity_1_minus_tvd"] = _compare(lambda p: log2_bins(p.activity(), nb), real, synth, reference,
                                           tvd_similarity)
    out["popularity_1_minus_tvd"] = _compare(item_events, real, synth, reference, tvd_similarity)
    out["gini"] = {name: gini(item_events(p)) for name, p in sets.items()}
    head = head_items(real)
    out["long_tail_share"] = {name: long_tail_share(p, head) for name, p in sets.items()}

    names = list(dict.fromkeys([*real.action_names, *synth.action_names, *reference.action_names]))
    mix = lambda p: np.array([p.actions[a].nnz if a in p.actions else 0 for a in names])
    out["action_mix_1_minus_tvd"] = _compare(mix, real, synth, reference, tvd_similarity)

    out["funnel"] = _funnel(sets, list(funnel) if funnel is not None else funnel_order(real))

    if real.times:
        gaps = {name: inter_event_seconds(p) for name, p in sets.items()}
        out["inter_event_1_minus_ks"] = {"synth": ks_similarity(gaps["real"], gaps["synth"]),
                                         "ceiling": ks_similarity(gaps["real"], gaps["reference"])}
    if real.friends is not None:
        out["friend_degree_1_minus_tvd"] = {
            "synth": friend_degree_similarity(real, synth) if synth.friends is not None else None,
            "ceiling": friend_degree_similarity(real, reference) if reference.friends is not None else None}

    items = np.argsort(-real.union().getnnz(0), kind="stable")[:min(top_items, real.n_items)]
    real_nb = neighbours(real.union(), items, k)
    out["cooccurrence_overlap"] = {"synth": neighbour_overlap(real_nb, neighbours(synth.union(), items, k)),
                                   "ceiling": neighbour_overlap(real_nb, neighbours(reference.union(), items, k)),
                                   "items": len(items), "k": int(k)}
    return out


def _funnel(sets: dict[str, Profiles], order: list[str]) -> dict:
    out = {}
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            rates = {name: funnel_rate(p, a, b) for name, p in sets.items()}
            r = rates["real"]
            if r is None:
                continue
            out[f"{b}|{a}"] = {"real_rate": r, "synth_rate": rates["synth"], "reference_rate": rates["reference"],
                               "synth": _rate_similarity(r, rates["synth"]),
                               "ceiling": _rate_similarity(r, rates["reference"])}
    return out


def _rate_similarity(real: float, other: float | None) -> float | None:
    """1 - TVD of two Bernoulli distributions: 1 - |p - q|."""
    return None if other is None else float(1.0 - abs(other - real))

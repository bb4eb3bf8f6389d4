"""Detectors of machine-made accounts and the metrics a review team reads them by.

Every detector gives each user a score (higher = more suspect); :func:`detection_metrics` scores
that ranking against known labels at the operating points that matter for human review.

Profile features (:func:`profile_features`), from the classic shilling-detection literature. A user's
profile is the set of items they acted on (impression rows excluded); the rating of a (user, item)
pair is the largest weight of its rows. The log has **ratings** when the weights of those rows take
more than one value; otherwise it is **implicit** (every weight 1.0). With ``r_ui`` the rating,
``m_i`` the item's mean rating, ``n_i`` the number of users of item ``i`` and ``N_u`` the user's
profile length:

* ``rdma``  = sum_i |r_ui - m_i| / n_i / N_u   (rating deviation from mean agreement)
* ``wdma``  = sum_i |r_ui - m_i| / n_i**2 / N_u  (weighted: rare items count more)
* ``wda``   = sum_i |r_ui - m_i| / n_i           (weighted deviation, not divided by N_u)
* ``length_var`` = |N_u - mean N| / sum_v (N_v - mean N)**2
* ``degsim`` = mean similarity to the user's k = 20 most similar other users; the similarity is the
  cosine of the users' deviations from the item means (``r_ui - m_i`` over the items each rated),
  a Pearson-style agreement that stays defined for a profile of identical ratings
* ``mean_var`` = mean of (r_ui - m_i)**2 over the user's filler items, the items not given the
  user's highest rating (those are taken as the pushed targets); 0 when there is no filler
* ``fmtd`` = |mean rating of the target items - mean rating of the filler items|; 0 without filler

On implicit data: ``m_i`` is the share of all users who took item ``i`` (an absent pair counts 0),
so ``rdma``, ``wdma`` and ``wda`` weigh the user's items by rarity; ``degsim`` is the mean cosine
similarity of the binary profiles to the 20 nearest users; ``mean_var`` and ``fmtd`` are 0 for
everyone (no rating separates targets from filler). ``length_var`` is the same on both kinds.

Further columns: ``length`` (N_u), ``pop_mean`` (mean log1p(n_i) over the user's items), ``mix[a]``
(share of the user's rows that are action ``a``, one column per action of the log, impressions
included); when the log has timestamps, ``span_days`` (last minus first event),
``median_gap_log`` (log1p of the median seconds between consecutive events; 0 with one event) and
``gap_cv`` (std over mean of the gaps longer than five minutes, i.e. between sessions: near 0 for an
account acting on a schedule, above 1 for people's bursts; 0 with fewer than two such gaps); when it has a social graph, ``friends_log``
(log1p of the number of friends) and ``friend_clustering`` (the share of pairs of one's friends who
are friends themselves; 0 with fewer than two friends).
A user with only impression rows gets 0 for every profile feature. Every value is finite.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from ..data.schema import EXPOSURE, DataError, Interactions

DEGSIM_K = 20
LOW_FPR = 0.01
DEFAULT_BUDGET_SHARE = 0.01    # review budget default: 1% of the scored users, never the attack size
SIM_BLOCK_CELLS = 1 << 22      # users x users similarity is built in row blocks of about this many cells
DENSE_SVD_CELLS = 1 << 16      # below this many matrix cells PCA-VarSelect uses a plain dense SVD
SESSION_S = 300                # gap_cv: events closer than this (seconds) are one session
ONE_THREAD = 1                 # small fits on one thread (see feedgan.synth.detect)


class _Profiles:
    """The log as a users x items rating matrix ``R`` (CSR, one entry per acted-on pair)."""

    def __init__(self, inter: Interactions):
        frame = inter.frame
        if len(frame) == 0:
            raise DataError("the log has no rows", file=inter.source, fix="score a non-empty log")
        self.users = pd.Index(pd.unique(frame["user"]))                  # every user of the log
        acted = frame[frame["action"] != EXPOSURE]
        if len(acted) == 0:
            raise DataError("the log holds only impression rows, no user acted on an item",
                            file=inter.source, fix="score a log with views, likes or ratings")
        u = self.users.get_indexer(acted["user"])
        items, i = np.unique(acted["item"].to_numpy(), return_inverse=True)
        w = acted["weight"].to_numpy(dtype=np.float64)
        pairs = pd.DataFrame({"u": u, "i": i, "w": w}).groupby(["u", "i"], sort=True)["w"].max()
        rows = pairs.index.get_level_values(0).to_numpy()
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(self.users)))])
        cols = pairs.index.get_level_values(1).to_numpy()
        self.rated = len(np.unique(w)) > 1
        shape = (len(self.users), len(items))
        # B and R share one pattern (sorted, unique pairs), stored zeros included, so .data align
        self.B = sp.csr_matrix((np.ones(len(pairs)), cols, indptr), shape=shape)   # (n_users, n_items)
        self.R = sp.csr_matrix((pairs.to_numpy(), cols, indptr), shape=shape)
        self.length = np.asarray(self.B.sum(1)).ravel()                  # (n_users,) N_u
        self.n_item = np.asarray(self.B.sum(0)).ravel()                  # (n_items,) n_i

    def item_means(self) -> np.ndarray:
        """(n_items,) m_i: mean rating over the item's users; on implicit data the share of all users."""
        if not self.rated:
            return self.n_item / len(self.users)
        return np.asarray(self.R.sum(0)).ravel() / np.maximum(self.n_item, 1)

    def deviations(self) -> sp.csr_matrix:
        """r_ui - m_i on the stored pairs (same pattern as ``B``)."""
        D = self.R.copy()
        D.data = D.data - self.item_means()[D.indices]
        return D


def _row_mean(M: sp.csr_matrix, count: np.ndarray) -> np.ndarray:
    return np.asarray(M.sum(1)).ravel() / np.maximum(count, 1)


def _deviation_features(p: _Profiles) -> dict[str, np.ndarray]:
    absdev = abs(p.deviations())                                     # |r_ui - m_i|, CSR
    by_n = absdev.multiply(1.0 / np.maximum(p.n_item, 1)[None, :]).tocsr()
    by_n2 = absdev.multiply(1.0 / np.maximum(p.n_item, 1)[None, :] ** 2).tocsr()
    spread = p.length - p.length.mean()
    denom = float((spread ** 2).sum())
    return {"rdma": _row_mean(by_n, p.length), "wdma": _row_mean(by_n2, p.length),
            "wda": np.asarray(by_n.sum(1)).ravel(),
            "length_var": np.abs(spread) / denom if denom > 0 else np.zeros(len(spread))}


def _target_filler_features(p: _Profiles) -> dict[str, np.ndarray]:
    """mean_var and fmtd: the user's top-rated items are the targets, the rest the filler."""
    n = len(p.users)
    if not p.rated:
        return {"mean_var": np.zeros(n), "fmtd": np.zeros(n)}
    R, dev2 = p.R, p.deviations().power(2)
    per_row = np.diff(R.indptr)
    has = per_row > 0
    top = np.zeros(n)                                                    # (n_users,) highest rating
    top[has] = np.maximum.reduceat(R.data, R.indptr[:-1][has])
    is_top = R.copy()
    is_top.data = (R.data == np.repeat(top, per_row)).astype(np.float64)
    filler = p.B - is_top                                                # 1 on filler pairs
    n_top, n_fill = np.asarray(is_top.sum(1)).ravel(), np.asarray(filler.sum(1)).ravel()
    fill_mean = _row_mean(R.multiply(filler).tocsr(), n_fill)
    mean_var = _row_mean(dev2.multiply(filler).tocsr(), n_fill)
    fmtd = np.where(n_fill > 0, np.abs(top - fill_mean), 0.0)
    return {"mean_var": np.where(n_top > 0, mean_var, 0.0), "fmtd": fmtd}


def _degsim(p: _Profiles, k: int = DEGSIM_K) -> np.ndarray:
    """(n_users,) mean cosine similarity to the k most similar other users: one users x users product
    built in row blocks (memory bounded by SIM_BLOCK_CELLS, time quadratic in the users)."""
    n = len(p.users)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n)
    X = p.deviations() if p.rated else p.B
    X = normalize(X.tocsr(), norm="l2", axis=1)
    XT = X.T.tocsc()
    out = np.zeros(n)
    step = max(1, SIM_BLOCK_CELLS // n)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        S = (X[lo:hi] @ XT).toarray()                                    # (block, n_users) cosines
        S[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf               # never one's own neighbour
        out[lo:hi] = np.partition(S, n - k, axis=1)[:, n - k:].mean(1)
    return out


def _mix(inter: Interactions, users: pd.Index) -> dict[str, np.ndarray]:
    frame = inter.frame
    counts = pd.crosstab(frame["user"], frame["action"]).reindex(users, fill_value=0)
    shares = counts.to_numpy(dtype=np.float64) / counts.to_numpy().sum(1, keepdims=True)
    return {f"mix[{a}]": shares[:, j] for j, a in enumerate(counts.columns.astype(str))}


def _timing(inter: Interactions, users: pd.Index) -> dict[str, np.ndarray]:
    if not inter.has_timestamps:
        return {}
    acted = inter.frame.loc[inter.frame["action"] != EXPOSURE, ["user", "timestamp"]]
    acted = acted.sort_values(["user", "timestamp"], kind="stable")
    ts = acted.groupby("user")["timestamp"]
    span = (ts.max() - ts.min()).reindex(users, fill_value=0) / 86400.0
    gap = ts.diff().astype(np.float64)                     # per row, seconds since the user's previous event
    by_user = acted["user"]
    return {"span_days": span.to_numpy(dtype=np.float64),
            "median_gap_log": np.log1p(gap.groupby(by_user).median().reindex(users).fillna(0.0)
                                       .to_numpy(dtype=np.float64)),
            "gap_cv": _gap_cv(gap, by_user).reindex(users, fill_value=0.0).to_numpy(dtype=np.float64)}


def _gap_cv(gap: pd.Series, user: pd.Series) -> pd.Series:
    """Per user, std / mean of the gaps between sessions (consecutive events more than :data:`SESSION_S`
    apart; a like seconds after its view is not a gap); 0 below two such gaps."""
    keep = gap > SESSION_S
    g = gap[keep].groupby(user[keep])
    mean = g.mean()
    return (g.std(ddof=0) / mean.where(mean > 0)).where(g.size() >= 2).fillna(0.0)


def _social(inter: Interactions, users: pd.Index) -> dict[str, np.ndarray]:
    """Friend count and clustering from the social graph (edges to users outside the log are kept)."""
    s = inter.social
    if s is None or s.empty:
        return {}
    nodes = pd.Index(pd.unique(pd.concat([pd.Series(users), s["src"], s["dst"]], ignore_index=True)))
    src, dst = nodes.get_indexer(s["src"]), nodes.get_indexer(s["dst"])
    A = sp.csr_matrix((np.ones(2 * len(src)), (np.r_[src, dst], np.r_[dst, src])), shape=(len(nodes), len(nodes)))
    A.data[:] = 1.0                                        # (n_nodes, n_nodes) symmetric 0/1, no weights
    A.setdiag(0)
    A.eliminate_zeros()
    deg = np.asarray(A.sum(axis=1)).ravel()
    triangles = np.asarray((A @ A).multiply(A).sum(axis=1)).ravel() / 2
    pairs = deg * (deg - 1) / 2
    clustering = np.divide(triangles, pairs, out=np.zeros_like(pairs), where=pairs > 0)
    at = nodes.get_indexer(users)
    return {"friends_log": np.log1p(deg[at]), "friend_clustering": clustering[at]}


def profile_features(inter: Interactions) -> pd.DataFrame:
    """One row per user of the log (index: user id), the columns described in the module docstring."""
    p = _Profiles(inter)
    log_pop = sp.csr_matrix(p.B.multiply(np.log1p(p.n_item)[None, :]))
    cols = {**_deviation_features(p), "degsim": _degsim(p), **_target_filler_features(p),
            "length": p.length, "pop_mean": _row_mean(log_pop, p.length),
            **_mix(inter, p.users), **_timing(inter, p.users), **_social(inter, p.users)}
    return pd.DataFrame(cols, index=p.users.rename("user"))


def _zscored(p: _Profiles) -> sp.csr_matrix | LinearOperator:
    """The users x items matrix with each item (a variable) z-scored over the users (observations).

    Ratings: z-scores over the item's raters; an unrated pair takes the item's mean, i.e. z = 0, so
    the matrix stays sparse and exact. Implicit: the binary column over all users (absent = 0)
    z-scored as a whole, which is dense; it is applied as a LinearOperator ``(B - 1 q^T) D``
    (``q`` = the item's share of users, ``D`` = 1 / its standard deviation).
    An item without spread (one rater, all ratings equal, taken by everyone) is a column of zeros.
    """
    if p.rated:
        Z = p.R.tocsc(copy=True)
        n = np.diff(Z.indptr)                                            # (n_items,) raters
        mean = np.asarray(Z.sum(0)).ravel() / np.maximum(n, 1)
        sq = np.asarray(Z.power(2).sum(0)).ravel() / np.maximum(n, 1)
        inv = _inverse_std(sq - mean ** 2)
        Z.data = (Z.data - np.repeat(mean, n)) * np.repeat(inv, n)
        return Z.tocsr()
    q = p.n_item / p.B.shape[0]
    inv = _inverse_std(q * (1 - q))
    B, BT = p.B, p.B.T.tocsr()
    return LinearOperator(
        B.shape, dtype=np.float64,
        matvec=lambda x: B @ (inv * np.ravel(x)) - (q * inv * np.ravel(x)).sum(),
        rmatvec=lambda y: inv * (BT @ np.ravel(y)) - q * inv * np.ravel(y).sum())


def _inverse_std(var: np.ndarray) -> np.ndarray:
    std = np.sqrt(np.maximum(var, 0.0))
    return np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-12)


def _left_vectors(Z, k: int) -> np.ndarray:
    """(n_users, k) left singular vectors of the k largest singular values."""
    n_users, n_items = Z.shape
    if n_users * n_items <= DENSE_SVD_CELLS or k >= min(n_users, n_items) - 1:
        dense = Z.toarray() if sp.issparse(Z) else Z @ np.eye(n_items)
        U = np.linalg.svd(dense, full_matrices=False)[0]
        return U[:, :k]
    v0 = np.random.default_rng(0).standard_normal(min(n_users, n_items))
    U, _, _ = svds(Z, k=k, v0=v0)
    return U


def pca_varselect(inter: Interactions, n_components: int = 3) -> pd.Series:
    """PCA-VarSelect (Mehta & Nejdl): a score in [0, 1] for every user, higher = more suspect.

    PCA of the z-scored users x items matrix, items as the variables (see :func:`_zscored`), by a
    truncated SVD ``Z = U S V^T``. A user's contribution to component ``j`` is their share of its
    variance, ``U[u, j]**2``; summed over the ``n_components`` leading components it is small for
    profiles that follow neither the items' consensus nor each other (random and average attacks,
    whose z-scores sit near 0). The score is ``1 - contribution / largest contribution``. No attack
    size is given or needed: every user is ranked. A large group of near-identical profiles can
    become a leading component of its own and then ranks as least suspect.
    """
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise DataError(f"n_components must be a positive integer, got {n_components!r}",
                        fix="pass n_components=3 (the default) or another integer >= 1")
    p = _Profiles(inter)
    k = min(int(n_components), *p.B.shape)
    U = _left_vectors(_zscored(p), k)
    contrib = (U ** 2).sum(1)
    top = contrib.max()
    score = 1.0 - contrib / top if top > 0 else np.zeros(len(contrib))
    return pd.Series(score, index=p.users.rename("user"), name="pca_varselect")


def _checked_features(features: pd.DataFrame) -> np.ndarray:
    if not isinstance(features, pd.DataFrame) or features.empty:
        raise DataError("features must be a non-empty DataFrame (one row per user)",
                        fix="pass the output of profile_features")
    X = features.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"feature {features.columns[c]!r} of user {features.index[r]!r} is not finite",
                        fix="fill or drop that user's row")
    return X


class AnomalyDetector:
    """Unsupervised: an IsolationForest (seeded) on the features; higher = more anomalous. Fitted on
    one population, it scores other users against it (accounts not in the fitted log)."""

    def __init__(self, seed: int = 0, n_estimators: int = 200):
        self.seed, self.n_estimators = seed, n_estimators
        self.columns: list[str] | None = None
        self._forest: IsolationForest | None = None

    def fit(self, features: pd.DataFrame) -> AnomalyDetector:
        X = _checked_features(features)
        self._forest = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed)
        with threadpool_limits(ONE_THREAD):
            self._forest.fit(X)
        self.columns = list(features.columns)
        return self

    def score(self, features: pd.DataFrame) -> pd.Series:
        """The anomaly score of every user of ``features`` (the fitted columns, in any order)."""
        if self._forest is None:
            raise DataError("AnomalyDetector.score before fit", fix="call fit(features) first")
        missing = [c for c in self.columns if c not in features.columns]
        if missing:
            raise DataError(f"features lack column {missing[0]!r} the detector was fitted on",
                            fix="compute the features the same way as for the fitted users")
        X = _checked_features(features[self.columns])
        with threadpool_limits(ONE_THREAD):
            score = -self._forest.score_samples(X)
        return pd.Series(score, index=features.index, name="anomaly")


def anomaly_scores(features: pd.DataFrame, seed: int = 0) -> pd.Series:
    """Unsupervised: IsolationForest (seeded) on the features; higher = more anomalous."""
    return AnomalyDetector(seed).fit(features).score(features)


def _aligned_labels(labels: pd.Series, index: pd.Index, what: str) -> np.ndarray:
    """0/1 labels of the users of ``index``; a DataError when a user has none or a label is not 0/1."""
    if not isinstance(labels, pd.Series):
        raise DataError("labels must be a pandas Series (user id -> 0 real / 1 injected)",
                        fix="pass Injected.labels or an equivalent Series")
    if labels.index.has_duplicates:
        raise DataError(f"labels list user {labels.index[labels.index.duplicated()][0]!r} more than once",
                        fix="give each user one label")
    missing = index.difference(labels.index)
    if len(missing):
        raise DataError(f"labels do not cover {len(missing)} of the {len(index)} users of the {what} "
                        f"(first: {missing[0]!r})", fix="label every scored user (1 injected, 0 real)")
    y = labels.reindex(index).to_numpy()
    ok = np.isin(y, (0, 1))
    if not ok.all():
        bad = y[~ok][0]
        bad = bad.item() if isinstance(bad, np.generic) else bad
        raise DataError(f"label {bad!r} of user {index[~ok][0]!r} is not 0 or 1",
                        fix="use 1 for injected and 0 for real users")
    y = y.astype(np.int8)
    if y.min() == y.max():
        raise DataError(f"every user of the {what} has label {int(y[0])}",
                        fix="score a set holding both injected and real users")
    return y


class FeatureDetector:
    """Supervised: a HistGradientBoostingClassifier on profile features (classes balanced)."""

    def __init__(self, seed: int = 0, max_iter: int = 200):
        self.seed, self.max_iter = seed, max_iter
        self.columns: list[str] | None = None
        self._model: HistGradientBoostingClassifier | None = None

    def fit(self, features: pd.DataFrame, labels: pd.Series) -> FeatureDetector:
        X = _checked_features(features)
        y = _aligned_labels(labels, features.index, "features")
        self._model = HistGradientBoostingClassifier(max_iter=self.max_iter, class_weight="balanced",
                                                     random_state=self.seed)
        with threadpool_limits(ONE_THREAD):
            self._model.fit(X, y)
        self.columns = list(features.columns)
        return self

    def _same_columns(self, features: pd.DataFrame) -> pd.DataFrame:
        """The training columns; an action absent from this log is a share of 0, any other gap an error."""
        missing = [c for c in self.columns if c not in features.columns]
        hard = [c for c in missing if not c.startswith("mix[")]
        if hard:
            raise DataError(f"features lack column {hard[0]!r} the detector was trained on",
                            fix="compute the features the same way (a log with timestamps needs them)")
        return features.assign(**{c: 0.0 for c in missing})[self.columns]

    def score(self, features: pd.DataFrame) -> pd.Series:
        """P(injected) of every user of ``features``, in [0, 1]."""
        if self._model is None:
            raise DataError("FeatureDetector.score before fit", fix="call fit(features, labels) first")
        X = _checked_features(self._same_columns(features))
        with threadpool_limits(ONE_THREAD):
            prob = self._model.predict_proba(X)[:, 1]
        return pd.Series(prob, index=features.index, name="feature_detector")


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, at: float) -> float:
    """TPR of the ROC curve at FPR ``at``, linear between its points (a random pick inside a tie
    group or between two thresholds reaches exactly that line)."""
    i = int(np.searchsorted(fpr, at, side="right")) - 1                 # last point with fpr <= at
    if fpr[i] == at or i == len(fpr) - 1:
        return float(tpr[i])
    t = (at - fpr[i]) / (fpr[i + 1] - fpr[i])
    return float(tpr[i] + t * (tpr[i + 1] - tpr[i]))


def _precision_at(score: np.ndarray, y: np.ndarray, budget: int) -> float:
    """Expected precision of the ``budget`` top-scored users, ties at the cut filled at random."""
    cut = np.sort(score)[::-1][budget - 1]
    above, tied = score > cut, score == cut
    slots = budget - int(above.sum())
    hits = y[above].sum() + slots * y[tied].mean()
    return float(hits / budget)


def detection_metrics(scores: pd.Series, labels: pd.Series, *, review_budget: int | None = None) -> dict:
    """ROC-AUC, PR-AUC (average precision), TPR at 1% FPR and precision at a review budget.

    Scored are the users of ``scores`` (``labels`` must cover each; labels of other users are
    ignored). ``review_budget`` is the number of top-scored users a team reviews; by default 1% of
    the scored users (at least 1), fixed in advance: never the true attack size, which a platform
    does not know. Tied scores count as a random order (ROC-AUC 0.5 within a tie; the TPR at 1% FPR
    is read off the ROC curve, linear between its points; precision fills a tie at the cut at random).
    """
    if not isinstance(scores, pd.Series) or scores.empty:
        raise DataError("scores must be a non-empty pandas Series (user id -> score)",
                        fix="pass a detector's output")
    s = scores.to_numpy(dtype=np.float64)
    if not np.isfinite(s).all():
        raise DataError(f"score of user {scores.index[~np.isfinite(s)][0]!r} is not finite",
                        fix="fill or drop that user's score")
    y = _aligned_labels(labels, scores.index, "scores")
    n = len(s)
    budget = max(1, int(np.ceil(DEFAULT_BUDGET_SHARE * n))) if review_budget is None else review_budget
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or not 1 <= budget <= n:
        raise DataError(f"review_budget must be an integer between 1 and {n} (the scored users), "
                        f"got {review_budget!r}", fix="pass the number of accounts the team can review")
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"roc_auc": float(roc_auc_score(y, s)), "pr_auc": float(average_precision_score(y, s)),
            "tpr_at_1pct_fpr": _tpr_at(fpr, tpr, LOW_FPR),
            "precision_at_budget": _precision_at(s, y, int(budget)), "budget": int(budget)}

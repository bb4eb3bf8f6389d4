"""Propensity models: P(target action | user, shown item) from exposure logs.

Two classifiers over a handful of cheap count features, both full :class:`Recommender` s (they rank
every item by the predicted probability, so the registry, the service and the ranking evaluation
can use them), plus ``predict_proba(users, items)`` for paired internal indices::

    ds = prepare(inter, DataConfig(split="random", target_action="impression", aux_in_train=False))
    lr = LogisticPropensity(C=1.0).fit(ds, target="like", aux=("view",))
    p = lr.predict_proba(users, items)                    # (n,) float64 in (0, 1)
    from feedgan.eval.propensity import evaluate_propensity
    evaluate_propensity(lr, ds, "test")                   # AUC, log-loss, ECE, Brier on test exposures

=====================  ===================  ===============================================
model                  name                 learner
=====================  ===================  ===============================================
LogisticPropensity     logreg-propensity    L2 logistic regression (scikit-learn, L-BFGS) on
                                            standardised features; ``C`` the inverse penalty
GBTPropensity          gbt-propensity       histogram gradient-boosted trees (scikit-learn),
                                            ``max_iter`` / ``learning_rate`` /
                                            ``max_leaf_nodes`` / ``min_samples_leaf`` / ``l2``;
                                            ``n_threads`` OpenMP threads (default 1)
=====================  ===================  ===============================================

Training examples
-----------------
Over the fit parts (``parts``, default train): the *shown* pairs are the exposure pairs
(``impression`` rows) plus the target pairs (a like implies a showing). Positives are the target
pairs; negatives the shown pairs without the target. Without exposures (a dataset with no
``impression`` rows, a plain matrix, a fit without a target) the negatives are ``neg_ratio``
items per positive drawn uniformly (seeded) among the items the user has no target action on; the
probabilities are then P(target | the pair is a positive or such a sampled negative), a ranking
score calibrated to the sampling ratio, **not** P(action | shown). Without a target (a fit on a
plain matrix, or a dataset split on every pair) the target is the union of all actions.

Fit on a dataset split on the exposures (above). A dataset split on the target action with
``aux_in_train=True`` keeps the exposures of its held-out targets in train, where they count as
negatives: the model then learns that those (liked) pairs were not liked.

Features (per pair (u, i); ``D`` = the shown pairs, or without exposures the pairs with any
action; counts over the fit parts; ``a`` = ``smoothing``)
--------------------------------------------------------------------------------------------
==========================  ==================================================================
user_rate                   logit((t_u + a p0) / (d_u + a)): the user's target count over their
                            shown (or active) pairs, smoothed toward ``p0 = sum t / sum d``
user_log_activity           log(1 + d_u)
user_<aux>_rate             logit of the user's <aux> count over d_u, smoothed toward its mean
item_rate                   logit((t_i + a p0) / (d_i + a)), the item's target rate
item_log_popularity         log(1 + d_i)
item_<aux>_rate             logit of the item's <aux> count over d_i, smoothed toward its mean
friends_share               share of u's friends (social graph, self-loops dropped) who took the
                            target on i; only when the dataset has a social graph
friends_log_count           log(1 + number of those friends)
affinity                    log(1 + lift) of i to u's *other* engaged items (any action but an
                            exposure) by item-item co-occurrence, the pair itself left out
                            (``affinity="engaged"``, the default; see Affinity below)
shown_affinity              the same on the shown pairs ``D`` (``affinity="shown"`` or ``"both"``)
pair_<aux>                  1 when u took <aux> on i (``pair_aux=True`` only, see below)
==========================  ==================================================================

One feature per auxiliary action given as ``aux`` (``friends`` in ``aux`` adds nothing: the social
features are there whenever the dataset has a graph). Rates are clipped to [1e-6, 1 - 1e-6]
before the logit.

A training pair's own outcome never feeds its own features (``encoding``):

- ``"loo"`` (leave-one-out, the logistic model's default): its label is subtracted from ``t_u``
  and ``t_i``, its own auxiliary actions from the <aux> counts, and the pair itself from ``d_u``
  and ``d_i``, so it sees the statistics of *the other* pairs, exactly what a held-out pair sees at
  prediction time (prediction uses the full fit-time counts).
- ``"kfold"`` (the tree model's default): the training pairs are dealt into ``folds`` folds
  (seeded) and a pair's user and item statistics come from the other folds, scaled by
  ``folds / (folds - 1)`` to the size of the full data.

Without either, the rate features would carry the label. Leave-one-out is not enough for trees:
a tree that recognises an item (by its exact exposure count, say) sees the item's positives sit one
like below its negatives, learns that shift, and fails on held-out pairs (test AUC 0.58 against
0.71 with k-fold on the known-truth log of the tests); a linear model cannot exploit it, and
leave-one-out uses all the data.

``pair_aux`` is off by default. A pair's own auxiliary action (its view) is an outcome of the same
exposure, not something known when the item is shown: under the propensity protocol
(``aux_in_train=False``) a held-out exposure's view is held out with it, so at test time the flag
is always 0 while in training it is nearly the label (likes follow views), and the predictions
come out far too low. Turn it on only to score pairs whose auxiliary action is already in the fit
data and precedes the target (P(share | viewed), or ranking items a user viewed but has not liked).

Affinity
--------
The rate features describe the user and the item apart; what a feed's conversions mostly depend
on is whether *this* item matches *this* user's interests. ``affinity`` measures that
collaboratively, as in item-based k-NN. With ``X`` the binary (users x items) matrix of the
channel over the fit parts (``"engaged"``: every action but exposures, the target included;
``"shown"``: the shown pairs ``D``), ``n_j`` its item counts, ``C = X^T X`` the item-item
co-occurrence counts with a zero diagonal, ``N`` the number of users and ``s =
affinity_shrink``::

    lift(u, i) = mean over j in X_u, j != i of  C[j, i] / (n_j + s)   *   N / (n_i + s)
    affinity   = log(1 + lift)

``C[j, i] / n_j`` is the share of j's users who also have i, and ``N / n_i`` divides by i's
overall share: ``lift`` is how much more often i goes with the user's items than with anyone's
(about 1 for an unrelated item, 0 when no co-occurrence), shrunk toward 0 for rare items. Users
with no other item get 0.

The pair itself is always left out, in training and at prediction alike: ``X``, ``C``, ``n_i``
and the user's item count are taken as if (u, i) were not in the fit data (``C[j, i] - 1`` for
the user's other items, ``n_i - 1``, when u has i in ``X``; nothing changes otherwise). A
training pair's own label or view therefore never feeds its own affinity, and a training pair
looks exactly like a held-out exposure, which is not in the fit data at all. The subtraction is
exact and vectorised: the normalisation is by item, so the pair's share of the sum is one
per-user total (``sum over the user's items of 1 / (n_j + s)``), with no per-pair loop. This
leave-one-out also suits the trees (``encoding`` only concerns the rate features): within one
item the affinity varies with each user's whole history, so the small label-dependent shift gives
a tree little to latch on to (on the simulator's valid part, a k-fold affinity gave the tree model
about the same view AUC, 0.754 against 0.753, and a worse ECE, 0.023 against 0.014).

There is no top-k pruning of the neighbours on purpose: choosing an item's neighbours on the
full co-occurrences lets the pair itself decide which neighbours are kept, a leak that the
subtraction cannot undo (on the simulator, the logistic model's valid view AUC with 20 / 50 / 100
neighbours kept was 0.68 / 0.70 / 0.72 against 0.73 with all, its ECE 0.07 / 0.05 / 0.03 against
0.017). The co-occurrence matrix has at most ``sum_u |X_u|^2`` entries (0.5M on the 3,000-user,
2,000-item simulator with ``"engaged"``, 1.9M of the 4M possible with ``"shown"``); scoring a
block of users is one sparse product ``X[users] @ (C / (n + s))``, a (B, n_items) pair term like
the friends' features (the logistic model scores 3,000 users x 2,000 items in about 1 s with the
affinity, 0.4 s without). ``affinity=None`` drops the feature; a model saved before the feature
existed loads with ``affinity=None``.

Scoring and persistence
-----------------------
``fold_in = False``: the features are the fit-time statistics of known users; a ``history``
passed with ``users`` only changes what ``recommend`` excludes (as for BPR). ``score`` gives the
probabilities (B, n_items): the logistic model splits its logit into a user term, an item term
and sparse pair terms (no (B x n_items x features) array); the tree model builds the feature rows
in chunks. Both save as data (JSON + safetensors, no pickle): the statistics, the social graph and
the coefficients, or every tree as flat node arrays (feature, threshold, children, leaf values)
evaluated by a small NumPy traversal (:func:`tree_raw`) that is also what a freshly fitted model
uses, so a loaded model scores exactly as the fitted one. The affinity channels are saved as
binary matrices and their co-occurrences recomputed (exactly) on load.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from ..data.dataset import Dataset
from ..data.schema import EXPOSURE
from ..sparse import binary, pair_lookup
from .base import FRIENDS, Recommender, _aux_weights

_CLIP = 1e-6
ENCODINGS = ("loo", "kfold")  # how training rows keep their own outcome out of their features
AFFINITIES = {"engaged": ("engaged",), "shown": ("shown",), "both": ("engaged", "shown")}
_AFFINITY_NAMES = {"engaged": "affinity", "shown": "shown_affinity"}


def _logit(r: np.ndarray) -> np.ndarray:
    r = np.clip(r, _CLIP, 1 - _CLIP)
    return np.log(r) - np.log1p(-r)


def _rate(num: np.ndarray, den: np.ndarray, prior: float, alpha: float) -> np.ndarray:
    """(num + alpha prior) / (den + alpha); the prior where the denominator is 0."""
    d = den + alpha
    safe = np.where(d > 0, d, 1.0)
    return np.where(d > 0, (num + alpha * prior) / safe, prior)


def _csr_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {f"{prefix}.indptr": m.indptr.astype(np.int64), f"{prefix}.indices": m.indices.astype(np.int64)}


def _csr_load(state: dict, prefix: str, shape) -> sp.csr_matrix:
    idx = state[f"{prefix}.indices"]
    return sp.csr_matrix((np.ones(len(idx), np.float32), idx, state[f"{prefix}.indptr"]), shape=shape)


class _Propensity:
    """Shared fit, features, scoring and persistence of the propensity models (a mixin placed
    before :class:`Recommender`, so that it registers no model of its own)."""

    fold_in = False
    _pair_chunk = 1024  # users per block when pair features are looked up for paired indices

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, data, *, target=None, aux=None, parts=("train",), progress=None):
        """As :meth:`Recommender.fit`; the exposures (``impression`` rows) of the fit parts give the
        negatives. The target cannot be the exposure action (the propensity protocol splits the
        dataset on exposures, so pass ``target=`` explicitly)."""
        resolved = target if target is not None else (data.target_action if isinstance(data, Dataset) else None)
        if resolved == EXPOSURE:
            how = "" if target is not None else " (the dataset was split on exposures)"
            raise ValueError(f"{self.name}: the target cannot be the exposure action {EXPOSURE!r}{how}; "
                             f"pass the action to predict, e.g. target='like'")
        if EXPOSURE in _aux_weights(aux):
            raise ValueError(f"{self.name}: {EXPOSURE!r} cannot be an auxiliary action: exposures are the "
                             f"negatives of a propensity model, not an input")
        if not isinstance(self.neg_ratio, (int, np.integer)) or self.neg_ratio < 1:
            raise ValueError(f"{self.name}: neg_ratio must be an integer >= 1, got {self.neg_ratio!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"{self.name}: encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.encoding == "kfold" and (not isinstance(self.folds, (int, np.integer)) or self.folds < 2):
            raise ValueError(f"{self.name}: folds must be an integer >= 2, got {self.folds!r}")
        if not self.smoothing >= 0:
            raise ValueError(f"{self.name}: smoothing must be >= 0, got {self.smoothing!r}")
        self._affinity_channels()  # raises on a bad value
        if not (isinstance(self.affinity_shrink, (int, float, np.integer, np.floating))
                and np.isfinite(self.affinity_shrink) and self.affinity_shrink >= 0):
            raise ValueError(f"{self.name}: affinity_shrink must be a finite number >= 0, got {self.affinity_shrink!r}")
        self._context_ = (data, tuple(parts))  # read by _fit; removed again below
        try:
            return super().fit(data, target=target, aux=aux, parts=parts, progress=progress)
        finally:
            self.__dict__.pop("_context_", None)

    def _fit(self, X, progress=None):
        data, parts = self.__dict__.get("_context_", (X, ("train",)))
        T = binary(self.seen)
        channels = self._channels()
        if isinstance(data, Dataset):
            use = [p for p in parts if p in data.parts]
            E = binary(sum(data.matrix(p, EXPOSURE) for p in use)) if EXPOSURE in data.actions else None
            if E is not None and E.nnz == 0:
                E = None
            activity = binary(sum(data.matrix(p) for p in use) + T)
            A = [binary(sum(data.matrix(p, a) for p in use)) for a in channels]
            social = data.social
        else:
            E, activity, A, social = None, binary(X), [], None
        D = binary(E + T) if E is not None else activity
        self.exposure_based_ = np.array([E is not None], dtype=np.uint8)
        # per-user / per-item counts (float64: they enter the features as they are)
        self.user_t_ = T.getnnz(1).astype(np.float64)
        self.user_d_ = D.getnnz(1).astype(np.float64)
        self.item_t_ = T.getnnz(0).astype(np.float64)
        self.item_d_ = D.getnnz(0).astype(np.float64)
        self.user_aux_ = np.stack([a.getnnz(1) for a in A], 1).astype(np.float64) if A else \
            np.zeros((T.shape[0], 0))
        self.item_aux_ = np.stack([a.getnnz(0) for a in A], 1).astype(np.float64) if A else \
            np.zeros((T.shape[1], 0))
        self.prior_ = np.array([T.nnz / D.nnz, *(a.nnz / D.nnz for a in A)], dtype=np.float64)
        self.friends_ = None
        if social is not None:
            S = binary(social)
            S = binary(S - sp.diags(S.diagonal()))  # drop self-loops
            if S.nnz:
                self.friends_ = S
        self.aux_pairs_ = A if self.pair_aux else []
        by_channel = {"engaged": activity, "shown": D}
        self.affinity_x_ = [by_channel[c] for c in self._affinity_channels()]
        self.affinity_stats_ = [self._cooccurrence(m) for m in self.affinity_x_]

        users, items, y, in_d = self._examples(T, D, E is not None)
        own_aux = np.stack([pair_lookup(a, users, items) for a in A], 1).astype(np.float64) if A else None
        if y.min() == y.max():
            what = "negative (every shown pair has the target)" if y.min() == 1 else "positive"
            raise ValueError(f"{self.name}: the training pairs have no {what}; a classifier needs both")
        Xf = self._training_features(users, items, y, in_d, own_aux)
        self._fit_classifier(Xf, y)

    def _channels(self) -> list[str]:
        return [a for a in self.aux_ if a != FRIENDS]

    def _affinity_channels(self) -> tuple[str, ...]:
        """The channels of the affinity features: ``affinity`` as a tuple (True = "engaged")."""
        a = self.affinity
        if a is None or a is False:
            return ()
        if a is True:
            return AFFINITIES["engaged"]
        if isinstance(a, str) and a in AFFINITIES:
            return AFFINITIES[a]
        raise ValueError(f"{self.name}: affinity must be one of {sorted(AFFINITIES)}, True or None, got {a!r}")

    def _cooccurrence(self, X: sp.csr_matrix) -> dict:
        """What the affinity of channel ``X`` (binary, users x items) needs: ``n`` (n_items,) item
        counts, ``cnt`` (n_users,) user counts, ``rw = 1 / (n + s)`` (at least 1 in the
        denominator), ``M = diag(rw) C`` the scaled co-occurrences (zero diagonal, CSR) and
        ``W = X rw`` (n_users,), the term that takes the pair itself out of ``C``."""
        X = sp.csr_matrix(X, dtype=np.float64)
        s = float(self.affinity_shrink)
        n = np.asarray(X.sum(0)).ravel()
        C = (X.T @ X).tocsr()
        C = (C - sp.diags(C.diagonal())).tocsr()  # no self-co-occurrence
        C.eliminate_zeros()
        rw = 1.0 / np.maximum(n + s, 1.0)
        return {"n": n, "cnt": np.asarray(X.sum(1)).ravel(), "rw": rw, "M": (sp.diags(rw) @ C).tocsr(),
                "W": np.asarray(X @ rw).ravel()}

    def _affinity_grid(self, k: int, users) -> sp.csr_matrix:
        """The affinity of ``users`` x every item on channel ``k``: sparse (B, n_items) float64,
        log(1 + lift) with each pair itself left out of the co-occurrences (module docstring)."""
        st = self.affinity_stats_[k]
        s = float(self.affinity_shrink)
        Xb = self.affinity_x_[k][users]
        G = (Xb @ st["M"]).tocsr()  # sum over the user's items j of C[j, i] / (n_j + s)
        G.sort_indices()
        rows = np.repeat(np.arange(G.shape[0]), np.diff(G.indptr))
        cols = G.indices.astype(np.int64)
        x = pair_lookup(Xb, rows, cols).astype(np.float64)  # 1 where the pair is in the channel
        rw = st["rw"]
        # leave the pair out: each other item j of the user loses one co-occurrence with i
        num = np.maximum(G.data - x * (st["W"][users][rows] - rw[cols]), 0.0)
        others = st["cnt"][users][rows] - x
        n_i = st["n"][cols] - x
        G.data = np.log1p(num / np.maximum(others, 1.0) * (self.n_users_ / np.maximum(n_i + s, 1.0)))
        return G

    def _examples(self, T, D, exposure_based: bool):
        """(users, items, labels, in-D flags) of the training pairs (see the module docstring)."""
        if exposure_based:
            users = np.repeat(np.arange(D.shape[0], dtype=np.int64), np.diff(D.indptr))
            items = D.indices.astype(np.int64)
            y = pair_lookup(T, users, items).astype(np.float64)
            return users, items, y, np.ones(len(users))
        pu = np.repeat(np.arange(T.shape[0], dtype=np.int64), np.diff(T.indptr))
        pi = T.indices.astype(np.int64)
        rng = np.random.default_rng(self.seed)
        nu = np.repeat(pu, int(self.neg_ratio))
        ni = rng.integers(0, T.shape[1], len(nu))
        for _ in range(10):  # redraw the items the user has: a few rounds, then drop what is left
            bad = pair_lookup(T, nu, ni)
            if not bad.any():
                break
            ni[bad] = rng.integers(0, T.shape[1], int(bad.sum()))
        keep = ~pair_lookup(T, nu, ni)
        nu, ni = nu[keep], ni[keep]
        users, items = np.r_[pu, nu], np.r_[pi, ni]
        y = np.r_[np.ones(len(pu)), np.zeros(len(nu))]
        return users, items, y, pair_lookup(D, users, items).astype(np.float64)

    # -- features ---------------------------------------------------------------------------------
    def feature_names(self) -> list[str]:
        """Column names of the feature matrix, in order (user, item, then pair features)."""
        self._check_fitted()
        ch = self._channels()
        names = ["user_rate", "user_log_activity", *(f"user_{a}_rate" for a in ch),
                 "item_rate", "item_log_popularity", *(f"item_{a}_rate" for a in ch)]
        return names + self._pair_names()

    def _pair_names(self) -> list[str]:
        names = ["friends_share", "friends_log_count"] if self.friends_ is not None else []
        names += [_AFFINITY_NAMES[c] for c in self._affinity_channels()]
        return names + [f"pair_{a}" for a in self._channels()[:len(self.aux_pairs_)]]

    def _n_user_features(self) -> int:
        return 2 + self.user_aux_.shape[1]

    def _side_block(self, idx, t, d, aux, sub=None, scale: float = 1.0) -> np.ndarray:
        """Rate and count features of users or items ``idx`` from their counts ``t``, ``d``,
        ``aux`` (n_side, k); ``sub = (t, d, aux)`` per row are subtracted first (the row's own
        share, for training rows), then the rest is multiplied by ``scale``."""
        a, p0 = float(self.smoothing), float(self.prior_[0])
        st, sd, sa = (0.0, 0.0, None) if sub is None else sub
        dd = (d[idx] - sd) * scale
        cols = [_logit(_rate((t[idx] - st) * scale, dd, p0, a)), np.log1p(dd)]
        for j in range(aux.shape[1]):
            num = (aux[idx, j] - (0.0 if sa is None else sa[:, j])) * scale
            cols.append(_logit(_rate(num, dd, float(self.prior_[1 + j]), a)))
        return np.column_stack(cols)

    def _user_block(self, users, sub=None, scale: float = 1.0) -> np.ndarray:
        return self._side_block(users, self.user_t_, self.user_d_, self.user_aux_, sub, scale)

    def _item_block(self, items, sub=None, scale: float = 1.0) -> np.ndarray:
        return self._side_block(items, self.item_t_, self.item_d_, self.item_aux_, sub, scale)

    def _pair_grid(self, users) -> list[sp.csr_matrix]:
        """The pair features of ``users`` x every item, one sparse (B, n_items) float64 matrix each
        (zero where the feature is 0), in :meth:`_pair_names` order."""
        out = []
        if self.friends_ is not None:
            F = self.friends_[users]
            cnt = (F @ self.seen).tocsr().astype(np.float64)  # (B, n_items) friends with the target
            deg = np.maximum(F.getnnz(1), 1).astype(np.float64)
            share = sp.diags(1.0 / deg) @ cnt
            log = cnt.copy()
            log.data = np.log1p(log.data)
            out += [share.tocsr(), log]
        out += [self._affinity_grid(k, users) for k in range(len(self.affinity_x_))]
        out += [m[users].astype(np.float64) for m in self.aux_pairs_]
        return out

    def _pair_block(self, users, items) -> np.ndarray:
        n_pair = len(self._pair_names())
        out = np.zeros((len(users), n_pair))
        if not n_pair:
            return out
        uniq, local = np.unique(users, return_inverse=True)
        step = self._pair_chunk
        order = np.argsort(local, kind="stable")  # rows grouped by user, so each chunk is a slice
        bounds = np.searchsorted(local[order], np.arange(0, len(uniq) + step, step))
        for c, start in enumerate(range(0, len(uniq), step)):
            sel = order[bounds[c]:bounds[c + 1]]
            grid = self._pair_grid(uniq[start:start + step])  # (<= step users, n_items) each
            rows, cols = local[sel] - start, items[sel]
            for f, G in enumerate(grid):
                out[sel, f] = np.asarray(G[rows, cols]).ravel()
        return out

    def _features(self, users, items, user_sub=None, item_sub=None, scale: float = 1.0) -> np.ndarray:
        """Feature rows (n, n_features) float64 for pairs. ``user_sub`` / ``item_sub`` (each a
        tuple of per-row target, denominator and (n, k) aux counts) are subtracted from the
        user's / item's counts for training rows, which are then scaled by ``scale`` (see
        :meth:`_training_features`); prediction uses the full counts."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        return np.hstack([self._user_block(users, user_sub, scale), self._item_block(items, item_sub, scale),
                          self._pair_block(users, items)])

    def _training_features(self, users, items, y, in_d, own_aux) -> np.ndarray:
        """Features of the training rows with their own outcome kept out of their statistics.

        ``encoding="loo"``: each row's own label, aux flags and presence in D are subtracted
        (leave-one-out). ``"kfold"``: the rows are dealt into ``folds`` folds (seeded) and a row's
        statistics come from the other folds only, scaled by folds / (folds - 1) to the full-data
        size. Both keep a row's label out of its own features. With k-fold, moreover, all the rows
        of one user (or item) in one fold share the same statistics; with leave-one-out its
        positives get one count less than its negatives, a shift that a flexible model which
        recognises the user or item (by its exact activity, say) learns, and that never holds at
        prediction time. Use k-fold for trees; leave-one-out is fine (and uses all the data) for a
        linear model."""
        k = own_aux.shape[1] if own_aux is not None else 0
        own_aux = own_aux if own_aux is not None else np.zeros((len(y), 0))
        if self.encoding == "loo":
            own = (y, in_d, own_aux)
            return self._features(users, items, own, own)
        K = int(self.folds)
        fold = np.random.default_rng([int(self.seed), 1]).integers(0, K, len(y))

        def fold_sums(idx, n):
            key = fold * n + idx
            tot = lambda w: np.bincount(key, weights=w, minlength=K * n)[key]  # noqa: E731
            return tot(y), tot(in_d), np.column_stack([tot(own_aux[:, j]) for j in range(k)]) if k else None

        return self._features(users, items, fold_sums(users, self.n_users_), fold_sums(items, self.n_items_),
                              scale=K / (K - 1))

    # -- prediction -------------------------------------------------------------------------------
    def predict_proba(self, users, items) -> np.ndarray:
        """P(target | user, shown item) for paired internal indices: (n,) float64."""
        self._check_fitted()
        users, items = np.atleast_1d(np.asarray(users)), np.atleast_1d(np.asarray(items))
        for name, idx, n in (("users", users, self.n_users_), ("items", items, self.n_items_)):
            if idx.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {idx.shape}")
            if idx.dtype.kind not in "iu":
                raise TypeError(f"{name} must be integer indices, got {idx.dtype}")
            bad = (idx < 0) | (idx >= n)
            if bad.any():
                raise KeyError(f"{name[:-1]} index {int(idx[bad][0])} does not exist (the model knows {n})")
        if len(users) != len(items):
            raise ValueError(f"{len(users)} users for {len(items)} items: give one user per item")
        out = np.empty(len(users))
        for start in range(0, len(users), 1 << 18):
            sl = slice(start, start + (1 << 18))
            out[sl] = self._proba_rows(self._features(users[sl], items[sl]))
        return out

    # -- persistence ------------------------------------------------------------------------------
    def _state(self):
        state = {k: getattr(self, k) for k in ("exposure_based_", "user_t_", "user_d_", "item_t_", "item_d_",
                                               "user_aux_", "item_aux_", "prior_")}
        if self.friends_ is not None:
            state.update(_csr_state("friends", self.friends_))
        for j, m in enumerate(self.aux_pairs_):
            state.update(_csr_state(f"pair_aux{j}", m))
        for j, m in enumerate(self.affinity_x_):
            state.update(_csr_state(f"affinity{j}", m))
        state.update(self._classifier_state())
        return state

    def _set_state(self, state):
        state = dict(state)
        for k in ("exposure_based_", "user_t_", "user_d_", "item_t_", "item_d_", "user_aux_", "item_aux_", "prior_"):
            setattr(self, k, state.pop(k))
        shape = (self.n_users_, self.n_items_)
        self.friends_ = _csr_load(state, "friends", (shape[0], shape[0])) if "friends.indptr" in state else None
        n_pairs = len(self._channels()) if self.pair_aux else 0
        self.aux_pairs_ = [_csr_load(state, f"pair_aux{j}", shape) for j in range(n_pairs)]
        if "affinity0.indptr" not in state:  # saved before the affinity feature existed (or without it)
            self.affinity = None
        self.affinity_x_ = [_csr_load(state, f"affinity{j}", shape) for j in range(len(self._affinity_channels()))]
        self.affinity_stats_ = [self._cooccurrence(m) for m in self.affinity_x_]
        self._set_classifier_state({k: v for k, v in state.items()
                                    if not k.startswith(("friends.", "pair_aux", "affinity"))})


class LogisticPropensity(_Propensity, Recommender):
    """L2-regularised logistic regression on the propensity features (module docstring).

    Features are standardised for the fit (so ``C`` means the same whatever their scale); the
    stored coefficients ``coef_`` (n_features,) and ``intercept_`` (1,) act on the raw features,
    so ``logit = features @ coef_ + intercept_``."""

    name = "logreg-propensity"

    def __init__(self, C: float = 1.0, max_iter: int = 500, neg_ratio: int = 4, smoothing: float = 5.0,
                 encoding: str = "loo", folds: int = 5, pair_aux: bool = False, affinity: str | None = "engaged",
                 affinity_shrink: float = 10.0, seed: int = 0):
        self.C, self.max_iter, self.neg_ratio = C, max_iter, neg_ratio
        self.smoothing, self.encoding, self.folds = smoothing, encoding, folds
        self.pair_aux, self.affinity, self.affinity_shrink, self.seed = pair_aux, affinity, affinity_shrink, seed

    def _fit_classifier(self, X, y):
        from sklearn.linear_model import LogisticRegression

        mu, sd = X.mean(0), X.std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        clf = LogisticRegression(C=self.C, max_iter=self.max_iter).fit((X - mu) / sd, y)
        w = clf.coef_.ravel()
        self.coef_ = (w / sd).astype(np.float64)
        self.intercept_ = np.array([float(clf.intercept_[0]) - float((w * mu / sd).sum())])

    def _proba_rows(self, X):
        return expit(X @ self.coef_ + self.intercept_[0])

    def _score(self, users, history):
        # logit(u, i) = user term + item term + sparse pair terms: never a (B, n_items, F) array
        nu = self._n_user_features()
        nu_i = nu + 2 + self.item_aux_.shape[1]
        user_term = self._user_block(users) @ self.coef_[:nu]  # (B,)
        item_term = self._item_block(np.arange(self.n_items_)) @ self.coef_[nu:nu_i]  # (n_items,)
        logit = user_term[:, None] + item_term[None, :] + self.intercept_[0]
        for c, G in zip(self.coef_[nu_i:], self._pair_grid(users)):
            logit += c * G.toarray()
        return expit(logit)

    def _classifier_state(self):
        return {"coef_": self.coef_, "intercept_": self.intercept_}

    def _set_classifier_state(self, state):
        self.coef_, self.intercept_ = state["coef_"], state["intercept_"]


# -- gradient-boosted trees as data ------------------------------------------------------------------
def tree_arrays(estimator) -> dict[str, np.ndarray]:
    """Flatten a fitted binary ``HistGradientBoostingClassifier`` into node arrays: ``feature``,
    ``threshold``, ``missing_left``, ``left``, ``right`` (global node indices), ``leaf``, ``value``
    (one entry per node of every tree), ``roots`` (the first node of each tree) and ``baseline``.
    Numerical splits only (a categorical split raises)."""
    predictors = estimator._predictors  # per iteration, one tree per class column (1 for binary)
    if any(len(it) != 1 for it in predictors):
        raise ValueError("only binary classifiers can be flattened")
    nodes = [it[0].nodes for it in predictors]
    sizes = np.array([len(n) for n in nodes], dtype=np.int64)
    roots = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
    cat = np.concatenate(nodes) if nodes else np.zeros(0, dtype=[("is_categorical", "u1")])
    if len(cat) and cat["is_categorical"].any():
        raise ValueError("categorical splits cannot be flattened")
    offset = np.repeat(roots, sizes)
    leaf = cat["is_leaf"].astype(np.uint8)
    return {"feature": cat["feature_idx"].astype(np.int64), "threshold": cat["num_threshold"].astype(np.float64),
            "missing_left": cat["missing_go_to_left"].astype(np.uint8),
            "left": np.where(leaf, 0, cat["left"].astype(np.int64) + offset),
            "right": np.where(leaf, 0, cat["right"].astype(np.int64) + offset),
            "leaf": leaf, "value": cat["value"].astype(np.float64), "roots": roots,
            "baseline": np.array([float(np.ravel(estimator._baseline_prediction)[0])])}


def tree_raw(trees: dict[str, np.ndarray], X: np.ndarray, block: int = 1 << 22) -> np.ndarray:
    """Raw scores (n,) (the log-odds) of flattened trees on feature rows ``X`` (n, F): every row
    walks every tree at once, one depth level per step (``x <= threshold`` goes left, NaN follows
    ``missing_left``), as scikit-learn's predictor does."""
    X = np.asarray(X, dtype=np.float64)
    roots = trees["roots"]
    out = np.full(len(X), float(trees["baseline"][0]))
    if len(roots) == 0:
        return out
    feature, threshold, left, right = trees["feature"], trees["threshold"], trees["left"], trees["right"]
    leaf, miss, value = trees["leaf"].astype(bool), trees["missing_left"].astype(bool), trees["value"]
    step = max(1, block // len(roots))
    for start in range(0, len(X), step):
        Xb = X[start:start + step]
        node = np.broadcast_to(roots, (len(Xb), len(roots))).copy()  # (rows, trees)
        rows = np.arange(len(Xb))[:, None]
        while True:
            active = ~leaf[node]
            if not active.any():
                break
            x = Xb[rows, feature[node]]
            go_left = np.where(np.isnan(x), miss[node], x <= threshold[node])
            node = np.where(active, np.where(go_left, left[node], right[node]), node)
        out[start:start + step] += value[node].sum(1)
    return out


class GBTPropensity(_Propensity, Recommender):
    """Histogram gradient-boosted trees on the propensity features (module docstring).

    scikit-learn's ``HistGradientBoostingClassifier`` with a fixed number of boosting rounds
    (``max_iter``, no early stopping, so a fit is deterministic for its data); the trees are
    stored as node arrays (:func:`tree_arrays`) and evaluated by :func:`tree_raw`.

    ``n_threads`` caps the OpenMP threads of the fit (None: OpenMP's default, every core). The
    default is 1: on a machine whose cores are busy with other work, OpenMP's spinning threads made
    a 8000-row, 50-round fit take 90 s instead of 0.1 s; raise it on a machine of your own.

    ``l2`` (the leaf values' L2 penalty) defaults to 10: with the affinity feature, unpenalised
    trees overfit rare targets (on the simulator's valid part, share log-loss 0.0164 with ``l2=0``
    against 0.0124 with 10, below the base rate's 0.0130; view and like also gain a little)."""

    name = "gbt-propensity"

    def __init__(self, max_iter: int = 100, learning_rate: float = 0.1, max_leaf_nodes: int = 31,
                 min_samples_leaf: int = 20, l2: float = 10.0, neg_ratio: int = 4, smoothing: float = 5.0,
                 encoding: str = "kfold", folds: int = 5, pair_aux: bool = False, affinity: str | None = "engaged",
                 affinity_shrink: float = 10.0, n_threads: int | None = 1, seed: int = 0):
        self.max_iter, self.learning_rate, self.max_leaf_nodes = max_iter, learning_rate, max_leaf_nodes
        self.min_samples_leaf, self.l2, self.neg_ratio = min_samples_leaf, l2, neg_ratio
        self.smoothing, self.encoding, self.folds = smoothing, encoding, folds
        self.pair_aux, self.affinity, self.affinity_shrink = pair_aux, affinity, affinity_shrink
        self.n_threads, self.seed = n_threads, seed

    def _fit_classifier(self, X, y):
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        clf = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2, early_stopping=False,
            random_state=self.seed)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            clf.fit(X, y.astype(np.int64))
        self.trees_ = tree_arrays(clf)

    def _proba_rows(self, X):
        return expit(tree_raw(self.trees_, X))

    def _score(self, users, history):
        n = self.n_items_
        Xi = self._item_block(np.arange(n))  # (n_items, Fi)
        out = np.empty((len(users), n))
        step = max(1, (1 << 17) // n)  # users per chunk: about 131k feature rows
        for start in range(0, len(users), step):
            u = users[start:start + step]
            Xu = self._user_block(u)
            cols = [np.repeat(Xu, n, 0), np.tile(Xi, (len(u), 1))]
            cols += [G.toarray().reshape(-1, 1) for G in self._pair_grid(u)]
            out[start:start + len(u)] = self._proba_rows(np.hstack(cols)).reshape(len(u), n)
        return out

    def _classifier_state(self):
        return {f"tree.{k}": v for k, v in self.trees_.items()}

    def _set_classifier_state(self, state):
        self.trees_ = {k[5:]: v for k, v in state.items() if k.startswith("tree.")}

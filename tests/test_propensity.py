"""Propensity: metrics against hand-worked cases and scikit-learn, exposure pairs, leave-one-out
features, the affinity feature (by hand, against a direct recomputation, no leakage), models on
logs whose truth is known, and the shared recommender contract."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from feedgan.data.dataset import DataConfig, Dataset, prepare
from feedgan.data.schema import validate
from feedgan.eval.propensity import (brier, ece, evaluate_propensity, log_loss, propensity_pairs, reliability,
                                     reliability_chart, roc_auc)
from feedgan.rec.base import Recommender
from feedgan.rec.propensity import GBTPropensity, LogisticPropensity, tree_arrays, tree_raw
from rec_contract import RecommenderContract


# -- the shared contract (no exposures, no target: union as target, sampled negatives) -------------
class TestLogisticPropensity(RecommenderContract):
    def make_model(self):
        return LogisticPropensity(C=1.0, seed=0)


class TestGBTPropensity(RecommenderContract):
    def make_model(self):
        return GBTPropensity(max_iter=15, max_leaf_nodes=7, min_samples_leaf=5, seed=0)


# -- metrics: hand-worked ---------------------------------------------------------------------------
def test_auc_with_a_tie_by_hand():
    # positives score 0.35, 0.8, 0.9; negatives 0.1, 0.4, 0.8. Over the 3 x 3 (pos, neg) pairs:
    #   0.35 beats 0.1 only                         -> 1
    #   0.8  beats 0.1 and 0.4, ties the 0.8        -> 2 + 1/2
    #   0.9  beats all three                        -> 3
    # AUC = 6.5 / 9. By ranks: 0.1:1 0.35:2 0.4:3 0.8,0.8:4.5 0.9:6 -> (2 + 4.5 + 6 - 3*4/2) / 9
    y = [0, 0, 1, 1, 0, 1]
    p = [0.1, 0.4, 0.35, 0.8, 0.8, 0.9]
    assert roc_auc(y, p) == pytest.approx(6.5 / 9)
    assert roc_auc(y, np.asarray(p) * 10 - 3) == pytest.approx(6.5 / 9)  # any real score, rank-based
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)


def test_auc_single_class_is_nan():
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert math.isnan(roc_auc([0, 0], [0.1, 0.5]))


def test_log_loss_by_hand():
    # -(ln 0.8 + ln 0.7 + ln 0.6 + ln 0.9) / 4 = (0.22314 + 0.35667 + 0.51083 + 0.10536) / 4 = 0.29900
    y, p = [1, 0, 1, 0], [0.8, 0.3, 0.6, 0.1]
    assert log_loss(y, p) == pytest.approx(0.299002, abs=1e-6)
    # clipping: a confident miss costs -ln(eps), not infinity
    assert log_loss([1], [0.0], eps=1e-7) == pytest.approx(-math.log(1e-7))


def test_ece_two_bins_and_brier_by_hand():
    # p = 0.1 0.3 0.4 | 0.6 0.8 0.9 with 2 bins [0, 0.5) and [0.5, 1]
    # bin 0: mean p = 0.8 / 3 = 0.26667, observed 1/3      -> gap 0.06667
    # bin 1: mean p = 2.3 / 3 = 0.76667, observed 2/3      -> gap 0.10000
    # ECE = 3/6 * 0.06667 + 3/6 * 0.1 = 0.08333
    # Brier = (0.01 + 0.49 + 0.16 + 0.16 + 0.04 + 0.81) / 6 = 1.67 / 6 = 0.27833
    y = [0, 1, 0, 1, 1, 0]
    p = [0.1, 0.3, 0.4, 0.6, 0.8, 0.9]
    assert ece(y, p, bins=2) == pytest.approx(0.25 / 3)
    assert brier(y, p) == pytest.approx(1.67 / 6)
    r = reliability(y, p, bins=2)
    np.testing.assert_allclose(r["mean_pred"], [0.8 / 3, 2.3 / 3])
    np.testing.assert_allclose(r["observed"], [1 / 3, 2 / 3])
    assert r["count"].tolist() == [3, 3]
    np.testing.assert_allclose(r["edges"], [0, 0.5, 1])


def test_bin_edges_and_empty_bins():
    # 0.5 opens the upper bin, 1.0 is in the last bin; an empty bin is NaN and weighs nothing
    r = reliability([1, 0, 1], [0.5, 1.0, 0.49], bins=4)
    assert r["count"].tolist() == [0, 1, 1, 1]
    assert math.isnan(r["mean_pred"][0]) and math.isnan(r["observed"][0])
    assert ece([1, 0, 1], [0.5, 1.0, 0.49], bins=4) == pytest.approx((0.5 + 1.0 + 0.51) / 3)
    assert ece([0, 1], [0.0, 1.0]) == 0.0


@pytest.mark.parametrize("call", [roc_auc, log_loss, ece, brier, reliability])
def test_metric_input_errors(call):
    with pytest.raises(ValueError, match="1 labels for 2"):
        call([1], [0.1, 0.2])
    with pytest.raises(ValueError, match="1-D"):
        call([[1, 0]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="empty"):
        call([], [])
    with pytest.raises(ValueError, match="0 or 1"):
        call([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        call([0, 1], [0.1, np.nan])
    if call is not roc_auc:
        with pytest.raises(ValueError, match="probabilities"):
            call([0, 1], [0.1, 1.5])
    else:
        assert roc_auc([0, 1], [0.1, 1.5]) == 1.0  # any score ranks


def test_metrics_match_sklearn_on_random_data():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.metrics import log_loss as sk_log_loss

    rng = np.random.default_rng(3)
    p = rng.beta(0.7, 3, 5000)
    y = (rng.random(5000) < np.clip(p * 1.2, 0, 1)).astype(int)
    pr = np.round(p, 2)  # with ties
    assert roc_auc(y, pr) == pytest.approx(roc_auc_score(y, pr), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    r = reliability(y, p, bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    full = r["count"] > 0
    np.testing.assert_allclose(r["observed"][full], prob_true, rtol=1e-12)
    np.testing.assert_allclose(r["mean_pred"][full], prob_pred, rtol=1e-12)
    # ECE by a plain loop over the bins
    by_loop = 0.0
    for k in range(10):
        m = (p >= k / 10) & ((p < (k + 1) / 10) | (k == 9))
        if m.any():
            by_loop += m.sum() / len(p) * abs(p[m].mean() - y[m].mean())
    assert ece(y, p, bins=10) == pytest.approx(by_loop, rel=1e-12)


# -- exposure pairs -----------------------------------------------------------------------------------
def tiny_log(drop_like_ax: bool = False) -> Dataset:
    """3 users x 3 items, everything in train.

    shown: a: x y z   b: x y z   c: x y       likes: a-x a-y b-x c-y
    views: a-x a-y a-z b-x c-y                c follows a
    """
    rows = [("a", "x", "impression"), ("a", "y", "impression"), ("a", "z", "impression"),
            ("b", "x", "impression"), ("b", "y", "impression"), ("b", "z", "impression"),
            ("c", "x", "impression"), ("c", "y", "impression"),
            ("a", "x", "like"), ("a", "y", "like"), ("b", "x", "like"), ("c", "y", "like"),
            ("a", "x", "view"), ("a", "y", "view"), ("a", "z", "view"), ("b", "x", "view"), ("c", "y", "view")]
    if drop_like_ax:
        rows.remove(("a", "x", "like"))
    frame = pd.DataFrame(rows, columns=["user", "item", "action"])
    return Dataset.from_interactions(validate(frame, social=pd.DataFrame({"src": ["c"], "dst": ["a"]})))


def test_propensity_pairs_by_hand():
    frame = pd.DataFrame([("a", "x", "impression"), ("a", "y", "impression"), ("a", "y", "impression"),
                          ("b", "x", "impression"), ("b", "z", "impression"),
                          ("a", "x", "like"), ("b", "z", "like"), ("a", "z", "like"),  # a-z never shown
                          ("a", "y", "view")], columns=["user", "item", "action"])
    ds = Dataset.from_interactions(validate(frame))
    users, items, labels = propensity_pairs(ds, "train", "like")
    got = list(zip(ds.user_ids.raw(users), ds.item_ids.raw(items), labels.tolist()))
    # one row per shown pair (a-y was shown twice), in (user, item) order; a-z is not an exposure
    assert got == [("a", "x", 1), ("a", "y", 0), ("b", "x", 0), ("b", "z", 1)]
    assert propensity_pairs(ds, "train", "view")[2].tolist() == [0, 1, 0, 0]
    assert len(propensity_pairs(ds, "test", "like")[0]) == 0
    with pytest.raises(ValueError, match="exposure itself"):
        propensity_pairs(ds, "train", "impression")
    with pytest.raises(KeyError):
        propensity_pairs(ds, "train", "share")
    no_exposure = Dataset.from_interactions(validate(frame[frame["action"] != "impression"]))
    with pytest.raises(ValueError, match="no 'impression' rows"):
        propensity_pairs(no_exposure, "train", "like")


# -- leave-one-out features ----------------------------------------------------------------------------
def _rows(ds, pairs):
    u = ds.user_ids.index([p[0] for p in pairs])
    i = ds.item_ids.index([p[1] for p in pairs])
    return u, i


def test_leave_one_out_features_by_hand():
    ds = tiny_log()
    m = LogisticPropensity(smoothing=2.0, affinity=None).fit(ds, target="like", aux=("view",))
    assert m.feature_names() == ["user_rate", "user_log_activity", "user_view_rate", "item_rate",
                                 "item_log_popularity", "item_view_rate", "friends_share", "friends_log_count"]
    assert m.exposure_based_[0] == 1
    # D = the 8 shown pairs; p0 = 4 likes / 8 = 0.5; view prior = 5 views / 8 = 0.625; a = 2
    # (a, x), liked and viewed: user a has t=2, d=3, views=3 -> without the pair t=1, d=2, views=2
    #   user_rate = (1 + 2*0.5) / (2 + 2) = 0.5, user_view_rate = (2 + 1.25) / 4 = 0.8125
    #   item x: t=2 (a, b), d=3, views=2 -> t=1, d=2, views=1: rate 0.5, view rate 2.25/4 = 0.5625
    #   friends: a has no friends -> 0, 0
    # (a, z), not liked, viewed: user a -> t=2, d=2, views=2: rate 3/4 = 0.75, view rate 0.8125
    #   item z: t=0, d=2 (a, b), views=1 -> t=0, d=1, views=0: rate 1/3, view rate 1.25/3
    # (c, x), not liked, not viewed: c follows a, who liked x -> friends_share 1, count log(2)
    #   user c: t=1, d=2, views=1 -> t=1, d=1, views=1: rate 2/3, view rate 2.25/3 = 0.75
    logit = lambda r: math.log(r / (1 - r))  # noqa: E731
    u, i = _rows(ds, [("a", "x"), ("a", "z"), ("c", "x")])
    y, in_d, own_view = np.array([1.0, 0, 0]), np.ones(3), np.array([[1.0], [1.0], [0.0]])
    X = m._training_features(u, i, y, in_d, own_view)
    expect = [[logit(0.5), math.log1p(2), logit(0.8125), logit(0.5), math.log1p(2), logit(0.5625), 0, 0],
              [logit(0.75), math.log1p(2), logit(0.8125), logit(1 / 3), math.log1p(1), logit(1.25 / 3), 0, 0],
              [logit(2 / 3), math.log1p(1), logit(0.75), logit(3 / 4), math.log1p(2), logit(3.25 / 4),
               1.0, math.log(2)]]
    # (c, x) item x without the pair: t=2, d=2, views=2 -> rate (2+1)/4, view rate (2+1.25)/4
    np.testing.assert_allclose(X, expect, rtol=1e-12)
    # at prediction time the pair's own outcome counts: (a, x) sees a's full t=2 of d=3
    X_full = m._features(u[:1], i[:1])
    assert X_full[0, 0] == pytest.approx(logit((2 + 1) / (3 + 2)))


@pytest.mark.parametrize("encoding", ["loo", "kfold"])
def test_own_label_does_not_feed_own_features(encoding):
    # the same log with and without one like: that training row must get the same features
    # (smoothing 0, so the global prior, which the like moves, plays no part)
    inter, _ = known_log(n_users=40, n_items=30, per_user=10)
    frame = inter.frame
    likes = np.flatnonzero((frame["action"] == "like").to_numpy())
    pair = (frame["user"].iloc[likes[0]], frame["item"].iloc[likes[0]])
    feats = []
    for drop in (False, True):
        ds = Dataset.from_interactions(validate(frame.drop(frame.index[likes[0]]) if drop else frame))
        m = LogisticPropensity(smoothing=0.0, encoding=encoding).fit(ds, target="like", aux=("view",))
        T = m.seen_.tocsr()
        D = sp.csr_matrix(ds.matrix("train", "impression"))
        users, items, y, in_d = m._examples(T, D, True)
        V = ds.matrix("train", "view").tocsr()
        own = np.asarray(V[users, items]).reshape(-1, 1)
        X = m._training_features(users, items, y, in_d, own)
        u, i = _rows(ds, [pair])
        row = np.flatnonzero((users == u[0]) & (items == i[0]))[0]
        assert y[row] == (0 if drop else 1)
        feats.append((X[row, :6], m._features(u, i)[0, :6]))
    np.testing.assert_array_equal(feats[0][0], feats[1][0])  # training row: blind to its label
    assert feats[0][1][0] != feats[1][1][0]  # prediction-time features do see the like


# -- the affinity feature ---------------------------------------------------------------------------
def affinity_log() -> Dataset:
    """4 users x 3 items, everything in train.

    engaged (viewed): a: x y z   b: x y   c: y z   d: x      likes: a-x b-y c-z
    shown, not engaged: b-z c-x d-y d-z                     (so every user was shown every item)
    """
    engaged = [("a", "x"), ("a", "y"), ("a", "z"), ("b", "x"), ("b", "y"), ("c", "y"), ("c", "z"), ("d", "x")]
    shown_only = [("b", "z"), ("c", "x"), ("d", "y"), ("d", "z")]
    rows = [(u, i, "impression") for u, i in engaged + shown_only] + [(u, i, "view") for u, i in engaged]
    rows += [("a", "x", "like"), ("b", "y", "like"), ("c", "z", "like")]
    return Dataset.from_interactions(validate(pd.DataFrame(rows, columns=["user", "item", "action"])))


def test_affinity_by_hand():
    ds = affinity_log()
    m = LogisticPropensity(affinity="both", affinity_shrink=1.0).fit(ds, target="like")
    assert m.feature_names()[-2:] == ["affinity", "shown_affinity"]
    # engaged channel X: n_x = 3 (a b d), n_y = 3 (a b c), n_z = 2 (a c); N = 4 users, s = 1
    # co-occurrences C[x,y] = 2 (a b), C[x,z] = 1 (a), C[y,z] = 2 (a c); 1 / (n_j + s): x, y 1/4, z 1/3
    # lift(u, i) = mean over u's other items j of C[j,i] / (n_j + s), times N / (n_i + s)
    # (d, y) not engaged: j = x: 2/4                      -> 0.5 / 1 * 4 / 4  = 1/2
    # (d, z):             j = x: 1/4                      -> 0.25 * 4 / 3    = 1/3
    # (b, z):             j = x, y: 1/4 + 2/4 = 3/4       -> 3/8 * 4 / 3     = 1/2
    # (c, x):             j = y, z: 2/4 + 1/3 = 5/6       -> 5/12 * 4 / 4    = 5/12
    # (a, y) engaged, so left out: C[x,y] = 1 (b), C[z,y] = 1 (c), n_y = 2
    #                     j = x, z: 1/4 + 1/3 = 7/12      -> 7/24 * 4 / 3    = 7/18
    # (b, x) engaged: C[y,x] = 1 (a), n_x = 2:  1/4       -> 1/4 * 4 / 3     = 1/3
    # (d, x) engaged: d has no other item                 -> 0
    pairs = [("d", "y"), ("d", "z"), ("b", "z"), ("c", "x"), ("a", "y"), ("b", "x"), ("d", "x")]
    lift = np.array([1 / 2, 1 / 3, 1 / 2, 5 / 12, 7 / 18, 1 / 3, 0.0])
    # shown channel: everyone was shown everything, n = 4, C = 4 off the diagonal; each pair is
    # shown, so left out: C = 3 with the two other items, n_i = 3: (3/5 + 3/5) / 2 * 4 / 4 = 3/5
    u, i = _rows(ds, pairs)
    X = m._features(u, i)
    np.testing.assert_allclose(X[:, -2], np.log1p(lift), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(X[:, -1], np.log1p(0.6), rtol=1e-12)
    # training rows: the same values (the pair is left out in training and prediction alike)
    T = m.seen_.tocsr()
    tu, ti, ty, tin = m._examples(T, sp.csr_matrix(ds.matrix("train", "impression")), True)
    Xt = m._training_features(tu, ti, ty, tin, None)
    for k, (uu, ii) in enumerate(zip(u, i)):
        row = np.flatnonzero((tu == uu) & (ti == ii))[0]
        assert Xt[row, -2] == pytest.approx(np.log1p(lift[k]), abs=1e-15)
    # the full-ranking grid agrees
    grid = m._affinity_grid(0, u).toarray()
    np.testing.assert_allclose(grid[np.arange(len(u)), i], np.log1p(lift), atol=1e-15)
    # the shrinkage: s = 10 on (d, y): 2 / 13 * 4 / 13
    m10 = LogisticPropensity().fit(ds, target="like")
    assert m10.feature_names()[-1] == "affinity" and "shown_affinity" not in m10.feature_names()
    assert m10._features(u[:1], i[:1])[0, -1] == pytest.approx(np.log1p(2 / 13 * 4 / 13), rel=1e-12)
    assert "affinity" not in LogisticPropensity(affinity=None).fit(ds, target="like").feature_names()


def _affinity_direct(X: np.ndarray, u: int, i: int, s: float) -> float:
    """The affinity of (u, i) straight from its definition, with the pair removed from X first."""
    X = X.copy()
    X[u, i] = 0
    n = X.sum(0)
    others = [j for j in np.flatnonzero(X[u]) if j != i]
    if not others:
        return 0.0
    co = [(X[:, j] * X[:, i]).sum() / (n[j] + s) for j in others]
    return float(np.log1p(np.mean(co) * X.shape[0] / (n[i] + s)))


@pytest.mark.parametrize("channel", ["engaged", "shown"])
def test_affinity_matches_a_direct_recomputation(channel):
    inter, _ = known_log(n_users=30, n_items=20, per_user=8, seed=4)
    ds = prepare(inter, DataConfig(split="random", target_action="impression", aux_in_train=False,
                                   valid=0.0, test=0.3, seed=0))
    m = GBTPropensity(max_iter=5, affinity=channel, affinity_shrink=2.0).fit(ds, target="like")
    X = (ds.matrix("train") if channel == "engaged" else ds.matrix("train", "impression")).toarray() > 0
    X = X.astype(np.float64)
    uu, ii = np.meshgrid(np.arange(m.n_users_), np.arange(m.n_items_), indexing="ij")
    direct = np.array([_affinity_direct(X, a, b, 2.0) for a, b in zip(uu.ravel(), ii.ravel())])
    col = m.feature_names().index("affinity" if channel == "engaged" else "shown_affinity")
    np.testing.assert_allclose(m._features(uu.ravel(), ii.ravel())[:, col], direct, atol=1e-12)
    np.testing.assert_allclose(m._affinity_grid(0, np.arange(m.n_users_)).toarray().ravel(), direct, atol=1e-12)


def test_own_outcome_does_not_feed_own_affinity():
    # flip one training pair from liked-and-viewed to shown-only: its own affinity must not move,
    # while a pair of the same user that co-occurs with it does
    inter, _ = known_log(n_users=60, n_items=40, per_user=12)
    frame = inter.frame
    full = Dataset.from_interactions(inter)
    liked = frame[frame["action"] == "like"]
    lu, li = _rows(full, list(zip(liked["user"], liked["item"])))
    aff = LogisticPropensity().fit(full, target="like")._affinity_grid(0, lu).toarray()[np.arange(len(li)), li]
    pick = liked.iloc[int(np.flatnonzero(aff > 0)[0])]  # a liked pair whose items co-occur with others
    pair = (pick["user"], pick["item"])
    own = (frame["user"] == pair[0]) & (frame["item"] == pair[1]) & (frame["action"] != "impression")
    assert own.sum() == 2  # its view and its like
    views = frame[(frame["user"] == pair[0]) & (frame["action"] == "view")]
    other_item = views[views["item"] != pair[1]]["item"].iloc[0]  # another item the user viewed
    feats = []
    for drop in (False, True):
        ds = Dataset.from_interactions(validate(frame[~own] if drop else frame))
        m = LogisticPropensity().fit(ds, target="like")
        T = m.seen_.tocsr()
        users, items, y, in_d = m._examples(T, sp.csr_matrix(ds.matrix("train", "impression")), True)
        X = m._training_features(users, items, y, in_d, None)
        col = m.feature_names().index("affinity")
        u, i = _rows(ds, [pair, (pair[0], other_item)])
        rows = [np.flatnonzero((users == u[k]) & (items == i[k]))[0] for k in range(2)]
        assert y[rows[0]] == (0 if drop else 1)
        feats.append((X[rows, col], m._features(u, i)[:, col]))
    assert feats[0][0][0] > 0
    assert feats[0][0][0] == pytest.approx(feats[1][0][0], rel=1e-12, abs=1e-15)  # training row: blind
    assert feats[0][1][0] == pytest.approx(feats[1][1][0], rel=1e-12, abs=1e-15)  # prediction too
    assert feats[0][0][1] != pytest.approx(feats[1][0][1])  # the pair does feed its neighbours


def topic_log(seed: int = 0, n_users: int = 400, n_items: int = 200, per_user: int = 40, topics: int = 5):
    """Users with topic interests (Dirichlet 0.3), items with one topic each, random exposures;
    P(view) = min(0.9, 0.25 * topics * interest in the item's topic): what the rate features miss."""
    rng = np.random.default_rng(seed)
    theta = rng.dirichlet(np.full(topics, 0.3), n_users)
    topic = rng.integers(0, topics, n_items)
    u = np.repeat(np.arange(n_users), per_user)
    i = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    view = rng.random(len(u)) < np.minimum(0.9, 0.25 * topics * theta[u, topic[i]])
    frame = pd.concat([pd.DataFrame({"user": u, "item": i, "action": "impression"}),
                       pd.DataFrame({"user": u[view], "item": i[view], "action": "view"})], ignore_index=True)
    return validate(frame)


@pytest.mark.parametrize("cls", [LogisticPropensity, GBTPropensity])
def test_affinity_recovers_topic_interest(cls):
    ds = prepare(topic_log(), DataConfig(split="random", target_action="impression", aux_in_train=False,
                                         valid=0.0, test=0.3, seed=0))
    kw = {"max_iter": 50} if cls is GBTPropensity else {}
    res = {a: evaluate_propensity(cls(affinity=a, **kw).fit(ds, target="view"), ds)["view"] for a in (None, "engaged")}
    assert res["engaged"]["auc"] > res[None]["auc"] + 0.1, res
    assert res["engaged"]["logloss"] < res[None]["logloss"] - 0.03
    assert res["engaged"]["ece"] < 0.05
    assert abs(res["engaged"]["mean_pred"] - res["engaged"]["base_rate"]) < 0.02


def test_fit_errors_and_exposure_protocol():
    inter, _ = known_log(n_users=40, n_items=30, per_user=10)
    ds = prepare(inter, DataConfig(split="random", target_action="impression", aux_in_train=False))
    with pytest.raises(ValueError, match="target='like'"):
        LogisticPropensity().fit(ds)  # the split's target is the exposure itself
    with pytest.raises(ValueError, match="auxiliary"):
        LogisticPropensity().fit(ds, target="like", aux=("impression",))
    with pytest.raises(ValueError, match="encoding"):
        LogisticPropensity(encoding="target").fit(ds, target="like")
    with pytest.raises(ValueError, match="affinity must be one of"):
        GBTPropensity(affinity="views").fit(ds, target="like")
    with pytest.raises(ValueError, match="affinity_shrink"):
        LogisticPropensity(affinity_shrink=-1.0).fit(ds, target="like")
    # the protocol: a test exposure carries its actions along, none of them is in train
    test_pairs = ds.matrix("test", "impression")
    for action in ("like", "view"):
        assert ds.matrix("train", action).multiply(test_pairs).nnz == 0
        assert (ds.matrix("test", action) - ds.matrix("test", action).multiply(test_pairs)).nnz == 0


# -- models on a log whose truth is known --------------------------------------------------------------
def known_log(seed: int = 0, n_users: int = 300, n_items: int = 150, per_user: int = 40):
    """Users with a latent like rate, items with an appeal; ``per_user`` random exposures each;
    like ~ Bernoulli(sigmoid(logit(rate_u) + appeal_i)); every like is viewed, 30 % of the rest
    too; a random follow graph. Returns the log and the true P(like) per shown (user, item)."""
    rng = np.random.default_rng(seed)
    rate = rng.beta(1.5, 10, n_users)
    appeal = rng.normal(0, 0.7, n_items)
    u = np.repeat(np.arange(n_users), per_user)
    i = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    p = 1 / (1 + np.exp(-(np.log(rate / (1 - rate))[u] + appeal[i])))
    like = rng.random(len(u)) < p
    view = like | (rng.random(len(u)) < 0.3)
    frame = pd.concat([pd.DataFrame({"user": u, "item": i, "action": "impression"}),
                       pd.DataFrame({"user": u[view], "item": i[view], "action": "view"}),
                       pd.DataFrame({"user": u[like], "item": i[like], "action": "like"})], ignore_index=True)
    social = pd.DataFrame({"src": rng.integers(0, n_users, 2 * n_users), "dst": rng.integers(0, n_users, 2 * n_users)})
    truth = pd.Series(p, index=pd.MultiIndex.from_arrays([u, i]))
    return validate(frame, social=social, source="known.csv"), truth


@pytest.fixture(scope="module")
def known():
    inter, truth = known_log()
    ds = prepare(inter, DataConfig(split="random", target_action="impression", aux_in_train=False,
                                   valid=0.0, test=0.3, seed=0))
    users, items, y = propensity_pairs(ds, "test", "like")
    p_true = truth.loc[list(zip(ds.user_ids.raw(users), ds.item_ids.raw(items)))].to_numpy()
    train_rate = ds.matrix("train", "like").nnz / ds.matrix("train", "impression").nnz
    return {"ds": ds, "y": y, "p_true": p_true, "const": log_loss(y, np.full(len(y), train_rate))}


@pytest.fixture(scope="module")
def fitted_lr(known):
    return LogisticPropensity(C=1.0).fit(known["ds"], target="like", aux=("view",))


@pytest.fixture(scope="module")
def fitted_gbt(known):
    return GBTPropensity(max_iter=50, seed=0).fit(known["ds"], target="like", aux=("view",))


def test_logistic_recovers_known_propensity(known, fitted_lr):
    res = evaluate_propensity(fitted_lr, known["ds"], "test")["like"]
    y, p_true = known["y"], known["p_true"]
    best_auc = roc_auc(y, p_true)  # what the true probabilities achieve (~0.77)
    assert res["n"] == len(y) and res["positives"] == int(y.sum())
    assert res["base_rate"] == pytest.approx(y.mean())
    assert res["auc"] > 0.5 + 0.7 * (best_auc - 0.5), (res["auc"], best_auc)
    assert res["ece"] < 0.04
    assert res["logloss"] < known["const"] - 0.02  # beats the training base rate as a constant
    assert res["logloss"] > log_loss(y, p_true) - 0.01  # and not the truth (sanity)
    assert abs(res["mean_pred"] - res["base_rate"]) < 0.02
    assert res["brier"] < brier(y, np.full(len(y), y.mean()))
    coef = dict(zip(fitted_lr.feature_names(), fitted_lr.coef_))
    assert coef["user_rate"] > 0.3 and coef["item_rate"] > 0.3  # the two latent factors


def test_gbt_kfold_beats_leave_one_out(known, fitted_gbt):
    res = evaluate_propensity(fitted_gbt, known["ds"], "test")["like"]
    assert res["auc"] > 0.65 and res["ece"] < 0.05
    assert res["logloss"] < known["const"] - 0.01
    # trees recognise an item by its exact exposure count, and with leave-one-out its positives
    # sit one like below its negatives: they learn that shift and fail on test
    loo = GBTPropensity(max_iter=50, encoding="loo", seed=0).fit(known["ds"], target="like", aux=("view",))
    res_loo = evaluate_propensity(loo, known["ds"], "test")["like"]
    assert res_loo["auc"] < res["auc"] - 0.05, (res_loo["auc"], res["auc"])


def test_pair_aux_flag_is_a_leak_under_the_protocol(known, fitted_lr):
    # a pair's own view is held out with it: 0 on every test pair, nearly the label in training
    m = LogisticPropensity(pair_aux=True).fit(known["ds"], target="like", aux=("view",))
    assert "pair_view" in m.feature_names()
    res = evaluate_propensity(m, known["ds"], "test")["like"]
    assert res["mean_pred"] < 0.5 * res["base_rate"]
    assert res["logloss"] > evaluate_propensity(fitted_lr, known["ds"], "test")["like"]["logloss"] + 0.1


@pytest.mark.parametrize("which", ["lr", "gbt"])
def test_score_is_predict_proba_on_every_item(known, fitted_lr, fitted_gbt, which, monkeypatch):
    m = fitted_lr if which == "lr" else fitted_gbt
    users = np.array([0, 5, 17, 299, 42])
    s = m.score(users)
    uu = np.repeat(users, m.n_items_)
    ii = np.tile(np.arange(m.n_items_), len(users))
    order = np.random.default_rng(0).permutation(len(uu))  # pairs in any order, users in chunks of 2
    monkeypatch.setattr(type(m), "_pair_chunk", 2)
    p = np.empty(len(uu))
    p[order] = m.predict_proba(uu[order], ii[order])
    p = p.reshape(len(users), -1)
    np.testing.assert_allclose(s, p, rtol=1e-5, atol=1e-7)
    assert ((p > 0) & (p < 1)).all()


@pytest.mark.parametrize("which", ["lr", "gbt", "lr-pair-aux", "gbt-both-affinities"])
def test_save_load_round_trip(known, fitted_lr, fitted_gbt, which, tmp_path):
    ds = known["ds"]
    m = {"lr": fitted_lr, "gbt": fitted_gbt}.get(which)
    if which == "lr-pair-aux":
        m = LogisticPropensity(pair_aux=True).fit(ds, target="like", aux=("view",))
    elif which == "gbt-both-affinities":
        m = GBTPropensity(max_iter=20, affinity="both").fit(ds, target="like", aux=("view",))
    m.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert type(back) is type(m) and back.get_params() == m.get_params()
    assert back.feature_names() == m.feature_names()
    users, items, _ = propensity_pairs(ds, "test", "like")
    np.testing.assert_array_equal(back.predict_proba(users, items), m.predict_proba(users, items))
    np.testing.assert_array_equal(back.score(np.arange(20)), m.score(np.arange(20)))
    a, b = evaluate_propensity(m, ds), evaluate_propensity(back, ds)
    assert a["like"]["logloss"] == b["like"]["logloss"]


def test_model_saved_before_the_affinity_feature_loads_without_it(known, tmp_path):
    import json

    ds = known["ds"]
    m = LogisticPropensity(affinity=None).fit(ds, target="like")
    m.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    for key in ("affinity", "affinity_shrink"):  # what an older version wrote
        del meta["params"][key]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    back = Recommender.load(tmp_path / "m")
    assert back.affinity is None and back.feature_names() == m.feature_names()
    users, items, _ = propensity_pairs(ds, "test", "like")
    np.testing.assert_array_equal(back.predict_proba(users, items), m.predict_proba(users, items))


def test_tree_arrays_match_sklearn():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 5))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take the learned side
    y = (np.nan_to_num(X[:, 0]) - np.nan_to_num(X[:, 1]) ** 2 + rng.normal(size=3000) > 0).astype(int)
    with threadpool_limits(1, user_api="openmp"):
        clf = HistGradientBoostingClassifier(max_iter=30, early_stopping=False).fit(X, y)
    trees = tree_arrays(clf)
    assert len(trees["roots"]) == 30
    X_new = rng.normal(size=(600, 5))
    X_new[rng.random(X_new.shape) < 0.05] = np.nan
    # rows that sit exactly on split thresholds: `x <= threshold` goes left
    split = np.flatnonzero(trees["leaf"] == 0)[:100]
    X_new[np.arange(len(split)), trees["feature"][split]] = trees["threshold"][split]
    np.testing.assert_allclose(tree_raw(trees, X_new, block=64), clf.decision_function(X_new), atol=1e-10)


def test_no_exposures_samples_negatives(known):
    # the same log without impressions: negatives are sampled, seeded, never a liked item
    inter, _ = known_log(n_users=60, n_items=40, per_user=12)
    frame = inter.frame[inter.frame["action"] != "impression"]
    ds = prepare(validate(frame), DataConfig(split="random", target_action="like", seed=0))
    m = LogisticPropensity(neg_ratio=3).fit(ds, target="like", aux=("view",))
    assert m.exposure_based_[0] == 0
    T = m.seen_.tocsr()
    users, items, y, _ = m._examples(T, sp.csr_matrix(ds.matrix("train")), False)
    assert y.sum() == T.nnz and (y == 0).sum() > 2.5 * T.nnz
    assert np.asarray(T[users[y == 0], items[y == 0]]).sum() == 0
    again = m._examples(T, sp.csr_matrix(ds.matrix("train")), False)
    np.testing.assert_array_equal(again[1], items)


def test_predict_proba_errors(fitted_lr):
    with pytest.raises(ValueError, match="one user per item"):
        fitted_lr.predict_proba([0, 1], [2])
    with pytest.raises(KeyError, match="item index 150"):
        fitted_lr.predict_proba([0], [150])
    with pytest.raises(TypeError):
        fitted_lr.predict_proba([0.0], [1])


def test_evaluate_propensity_mapping_and_checks(known, fitted_lr, fitted_gbt):
    ds = known["ds"]
    by_model = {"logreg": evaluate_propensity(fitted_lr, ds), "gbt": evaluate_propensity({"like": fitted_gbt}, ds)}
    assert set(by_model["gbt"]) == {"like"}
    assert {"auc", "logloss", "ece", "brier", "base_rate", "n", "positives"} <= set(by_model["gbt"]["like"])
    fig = reliability_chart(by_model, action="like")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["perfect calibration", "logreg", "gbt"]
    fig2 = reliability_chart({"raw": reliability(known["y"], known["p_true"])})
    assert len(fig2.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="no model for action"):
        evaluate_propensity({"like": fitted_lr}, ds, actions=["view"])
    small, _ = known_log(n_users=20, n_items=10, per_user=5)
    other = prepare(small, DataConfig(split="random", target_action="impression", aux_in_train=False))
    with pytest.raises(ValueError, match="fit the model on this dataset"):
        evaluate_propensity(fitted_lr, other)

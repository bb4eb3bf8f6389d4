"""Account detectors on small generated logs with fake users planted by hand, and the metrics on
hand-made scores."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from feedgan.data.schema import DataError, validate
from feedgan.data.simulate import simulate
from feedgan.moderation.detect import (
    FeatureDetector,
    anomaly_scores,
    detection_metrics,
    pca_varselect,
    profile_features,
)

N_FAKE = 25
N_FILLER = 10


def _sim_frame(seed: int) -> pd.DataFrame:
    return simulate(n_users=400, n_items=300, exposures_per_user=200, seed=seed).interactions.frame


def _rated(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The viewed pairs of a simulated log, rated 1..5 = item quality + user leniency + noise."""
    rng = np.random.default_rng(seed)
    pairs = frame[frame["action"] == "view"].drop_duplicates(["user", "item"])[["user", "item", "timestamp"]]
    item_bias = pd.Series(rng.normal(0, 0.7, frame["item"].max() + 1))
    user_bias = pd.Series(rng.normal(0, 0.5, frame["user"].max() + 1))
    raw = 3.5 + item_bias[pairs["item"]].to_numpy() + user_bias[pairs["user"]].to_numpy() \
        + rng.normal(0, 1.0, len(pairs))
    return pairs.assign(action="view", weight=np.clip(np.round(raw), 1, 5))


def _popular(frame: pd.DataFrame, n: int) -> np.ndarray:
    return frame.groupby("item")["user"].nunique().sort_values(ascending=False).index[:n].to_numpy()


def _target(frame: pd.DataFrame) -> int:
    """An item with few users: the one an attacker pushes."""
    return int(frame.groupby("item")["user"].nunique().sort_values(kind="stable").index[0])


def _fake_rows(frame: pd.DataFrame, kind: str, rng: np.random.Generator, first_id: int) -> pd.DataFrame:
    """N_FAKE hand-made attack profiles, all pushing one rare item with the highest rating.

    bandwagon: the 10 most popular items and the target, all rated 5 (implicit: just those items);
    random: the target plus N_FILLER random filler items rated uniformly 1..5;
    average: the target plus N_FILLER random filler items rated the item's rounded mean.
    Timestamps: each fake acts in one burst of a minute.
    """
    items = np.unique(frame["item"])
    target, popular = _target(frame), _popular(frame, 10)
    means = frame.groupby("item")["weight"].mean()
    rows = []
    for f in range(N_FAKE):
        if kind == "bandwagon":
            chosen, rating = np.append(popular, target), np.full(11, 5.0)
        else:
            filler = rng.choice(items[items != target], N_FILLER, replace=False)
            fr = rng.integers(1, 6, N_FILLER) if kind == "random" else np.round(means[filler].to_numpy())
            chosen, rating = np.append(filler, target), np.append(fr, 5.0)
        start = int(frame["timestamp"].min()) + int(rng.integers(0, 86400 * 20))
        rows.append(pd.DataFrame({"user": first_id + f, "item": chosen, "action": "view",
                                  "timestamp": start + np.sort(rng.integers(0, 60, len(chosen))),
                                  "weight": rating}))
    return pd.concat(rows, ignore_index=True)


def _planted(kind: str, *, rated: bool, seed: int = 3):
    """A log with N_FAKE fakes of ``kind`` added; returns (interactions, labels)."""
    frame = _sim_frame(seed)
    if rated:
        frame = _rated(frame, seed)
    first = int(frame["user"].max()) + 1
    fakes = _fake_rows(frame, kind, np.random.default_rng(seed), first)
    if not rated:
        fakes["weight"] = 1.0
    full = pd.concat([frame.astype({"action": str}), fakes], ignore_index=True)
    inter = validate(full)
    users = pd.unique(inter.frame["user"])
    labels = pd.Series((users >= first).astype(np.int8), index=users)
    return inter, labels


def _auc(feature: pd.Series, labels: pd.Series) -> float:
    return roc_auc_score(labels.reindex(feature.index), feature)


@pytest.fixture(scope="module")
def implicit_bandwagon():
    return _planted("bandwagon", rated=False)


@pytest.fixture(scope="module")
def rated_random():
    return _planted("random", rated=True)


# --- features -----------------------------------------------------------------------------------------

def test_features_finite_for_every_user(implicit_bandwagon, rated_random):
    for inter, labels in (implicit_bandwagon, rated_random):
        feats = profile_features(inter)
        assert set(feats.index) == set(labels.index)
        assert np.isfinite(feats.to_numpy()).all()
        for col in ("rdma", "wdma", "wda", "length_var", "degsim", "mean_var", "fmtd", "length", "pop_mean",
                    "span_days", "median_gap_log"):
            assert col in feats.columns


def test_implicit_bandwagon_fakes_look_alike_popular_and_bursty(implicit_bandwagon):
    inter, labels = implicit_bandwagon
    feats = profile_features(inter)
    assert _auc(feats["degsim"], labels) > 0.95           # identical profiles: nearest neighbours are clones
    assert feats.loc[labels == 1, "degsim"].min() == pytest.approx(1.0)
    assert _auc(feats["pop_mean"], labels) > 0.95         # popular items
    assert _auc(feats["mix[view]"], labels) > 0.7         # views only, never a like
    assert _auc(feats["median_gap_log"], labels) < 0.1    # one burst of a minute
    assert _auc(feats["span_days"], labels) < 0.1
    # no ratings: the target/filler split does not exist
    assert (feats["mean_var"] == 0).all() and (feats["fmtd"] == 0).all()
    assert feats["rdma"].gt(0).all()


def test_random_attack_deviates_from_item_means(rated_random):
    inter, labels = rated_random
    feats = profile_features(inter)
    for col in ("rdma", "wdma", "fmtd", "mean_var", "length_var"):
        assert _auc(feats[col], labels) > 0.75, col
    assert _auc(feats["wda"], labels) < 0.5               # not divided by length: short fake profiles sum less


@pytest.fixture(scope="module")
def rated_average():
    return _planted("average", rated=True)


def test_average_attack_hugs_item_means(rated_average):
    inter, labels = rated_average
    feats = profile_features(inter)
    assert _auc(feats["mean_var"], labels) < 0.25         # filler sits on the item means
    assert _auc(feats["rdma"], labels) < 0.25


def test_rated_bandwagon_degsim():
    inter, labels = _planted("bandwagon", rated=True)
    feats = profile_features(inter)
    assert _auc(feats["degsim"], labels) > 0.95


def test_rdma_by_hand():
    # items a (rated by u1: 5, u2: 1) and b (u1: 3): m_a = 3, m_b = 3, n_a = 2, n_b = 1
    inter = validate(pd.DataFrame({"user": ["u1", "u1", "u2"], "item": ["a", "b", "a"],
                                   "weight": [5.0, 3.0, 1.0]}))
    feats = profile_features(inter)
    assert feats.loc["u1", "rdma"] == pytest.approx((2 / 2 + 0 / 1) / 2)
    assert feats.loc["u1", "wda"] == pytest.approx(2 / 2)
    assert feats.loc["u1", "wdma"] == pytest.approx((2 / 4) / 2)
    assert feats.loc["u1", "fmtd"] == pytest.approx(5 - 3)     # target a at 5, filler b at 3
    assert feats.loc["u1", "mean_var"] == pytest.approx(0.0)  # filler b equals its mean
    assert feats.loc["u2", "fmtd"] == 0.0                      # one rating: no filler


# --- detectors ----------------------------------------------------------------------------------------

def test_pca_varselect_ranks_planted_group_first(implicit_bandwagon, rated_average):
    for inter, labels in (implicit_bandwagon, rated_average):
        score = pca_varselect(inter)
        assert set(score.index) == set(labels.index) and np.isfinite(score).all()
        assert score.between(0, 1).all()
        assert detection_metrics(score, labels)["roc_auc"] > 0.9


def _untimed(kind: str, seed: int):
    """A planted rated log without timestamps: the bursts of the fakes cannot give them away."""
    inter, labels = _planted(kind, rated=True, seed=seed)
    return profile_features(validate(inter.frame.drop(columns="timestamp"))), labels


def test_anomaly_detector_beats_chance(implicit_bandwagon):
    inter, labels = implicit_bandwagon
    feats = profile_features(inter)
    anomaly = anomaly_scores(feats, seed=0)
    assert anomaly.equals(anomaly_scores(feats, seed=0))
    assert detection_metrics(anomaly, labels)["roc_auc"] > 0.85
    feats, labels = _untimed("random", seed=4)
    assert detection_metrics(anomaly_scores(feats), labels)["roc_auc"] > 0.75


def test_supervised_detector_on_unseen_users_and_attack():
    train, train_labels = _untimed("random", seed=3)
    det = FeatureDetector(seed=0).fit(train, train_labels)
    same, same_labels = _untimed("random", seed=4)            # other real users, other fakes
    prob = det.score(same)
    assert prob.between(0, 1).all() and prob.index.equals(same.index)
    assert detection_metrics(prob, same_labels)["roc_auc"] > 0.9
    other, other_labels = _untimed("average", seed=4)         # an attack it was not trained on
    assert detection_metrics(det.score(other), other_labels)["roc_auc"] > 0.8
    with pytest.raises(DataError, match="lack column 'rdma'"):
        det.score(same.drop(columns="rdma"))
    assert det.score(same.drop(columns="mix[view]")).notna().all()   # an absent action is a share of 0


def test_detector_errors_are_one_line():
    feats = pd.DataFrame({"a": [1.0, np.nan]}, index=["u1", "u2"])
    with pytest.raises(DataError, match="feature 'a' of user 'u2' is not finite"):
        anomaly_scores(feats)
    with pytest.raises(DataError, match="before fit"):
        FeatureDetector().score(feats)
    with pytest.raises(DataError, match="every user of the features has label 0"):
        FeatureDetector().fit(feats.fillna(0), pd.Series([0, 0], index=["u1", "u2"]))
    inter = validate(pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 2]}))
    with pytest.raises(DataError, match="n_components"):
        pca_varselect(inter, n_components=0)


# --- metrics ------------------------------------------------------------------------------------------

def _labels(n_pos: int, n_neg: int) -> pd.Series:
    return pd.Series([1] * n_pos + [0] * n_neg, index=[f"u{i}" for i in range(n_pos + n_neg)])


def test_metrics_perfect_and_reversed():
    labels = _labels(10, 90)
    perfect = pd.Series(np.arange(100, 0, -1, dtype=float), index=labels.index)
    m = detection_metrics(perfect, labels)
    assert m == pytest.approx({"roc_auc": 1.0, "pr_auc": 1.0, "tpr_at_1pct_fpr": 1.0, "precision_at_budget": 1.0,
                               "budget": 1})
    rev = detection_metrics(-perfect, labels)
    assert rev["roc_auc"] == 0.0 and rev["tpr_at_1pct_fpr"] == 0.0 and rev["precision_at_budget"] == 0.0


def test_metrics_ties_count_as_random_order():
    labels = _labels(10, 90)
    flat = pd.Series(np.ones(100), index=labels.index)
    m = detection_metrics(flat, labels, review_budget=20)
    assert m["roc_auc"] == 0.5
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.01)     # on the diagonal
    assert m["precision_at_budget"] == pytest.approx(0.1)  # the base rate, not 0 or 1
    assert m["budget"] == 20


def test_tpr_at_1pct_fpr_by_hand():
    # 4 positives, 50 negatives (one negative = 2% FPR). Order: P P {P N tied} N ... N P.
    # ROC points: (0, .25) (0, .5) then the tie goes diagonally to (.02, .75); FPR .01 is halfway: .625
    labels = _labels(4, 50)
    s = np.concatenate([[0.9, 0.8, 0.7, 0.0], [0.7], np.linspace(0.6, 0.1, 49)])
    scores = pd.Series(s, index=labels.index)
    m = detection_metrics(scores, labels, review_budget=3)
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.625)
    assert m["precision_at_budget"] == pytest.approx((2 + 0.5) / 3)
    # no tie: P P N P ...: the curve is flat at .5 between FPR 0 and .02
    s2 = s.copy()
    s2[4] = 0.75
    assert detection_metrics(pd.Series(s2, index=labels.index), labels)["tpr_at_1pct_fpr"] == pytest.approx(0.5)


def test_default_budget_is_one_percent_not_attack_size():
    labels = _labels(30, 270)      # 10% attack
    scores = pd.Series(np.arange(300, 0, -1, dtype=float), index=labels.index)
    assert detection_metrics(scores, labels)["budget"] == 3


def test_metric_errors():
    labels = _labels(2, 3)
    scores = pd.Series([1.0, 0.5, 0.2, 0.1, 0.0], index=labels.index)
    with pytest.raises(DataError, match="labels do not cover 1 of the 5 users of the scores .first: 'u4'"):
        detection_metrics(scores, labels.drop("u4"))
    with pytest.raises(DataError, match="review_budget must be an integer between 1 and 5"):
        detection_metrics(scores, labels, review_budget=6)
    with pytest.raises(DataError, match="label 2 of user 'u0' is not 0 or 1"):
        detection_metrics(scores, labels.replace({1: 2}))
    with pytest.raises(DataError, match="every user of the scores has label 0"):
        detection_metrics(scores, labels * 0)
    with pytest.raises(DataError, match="score of user 'u1' is not finite"):
        detection_metrics(scores.replace({0.5: np.inf}), labels)


def test_degsim_by_hand():
    # a and b took the same two items, c another one: k = 2 (every other user), one's own row excluded
    inter = validate(pd.DataFrame({"user": ["a", "a", "b", "b", "c"], "item": [1, 2, 1, 2, 3]}))
    feats = profile_features(inter)
    assert feats["degsim"].to_dict() == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})
    assert feats.loc["a", "pop_mean"] == pytest.approx(np.log1p(2))

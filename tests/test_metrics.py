"""ranking_metrics and evaluate against hand-computed examples."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from feedgan.data.dataset import Dataset, IdMap, Part
from feedgan.eval.metrics import evaluate
from feedgan.ranking import ranking_metrics
from feedgan.rec.base import Recommender

L3 = 1 / math.log2(3)  # discount at rank 2 = 0.6309...
L4 = 1 / math.log2(4)  # discount at rank 3 = 0.5


def _csr(rows, n_items):
    r = [i for i, items in enumerate(rows) for _ in items]
    c = [j for items in rows for j in items]
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items))


# n_items = 6. Item 5 is the last column, so a -1 slot must never be mistaken for it.
TOP = np.array([[3, 1, 4],     # u0, relevant {1, 4, 5}: hits 0 1 1
                [2, -1, -1],   # u1, relevant {2, 5}:    hits 1 0 0 (empty slots are no hits)
                [0, 1, 2],     # u2, relevant {}:        NaN everywhere
                [5, 0, -1]])   # u3, relevant {0}:       hits 0 1 0
REL = _csr([[1, 4, 5], [2, 5], [], [0]], 6)
nan = float("nan")

EXPECTED = {
    # k = 1: only the first slot counts
    "precision@1": [0, 1, nan, 0],
    "recall@1":    [0, 1 / 2, nan, 0],
    "ndcg@1":      [0, 1, nan, 0],           # u1: 1 / IDCG(min(2,1)=1 hit) = 1
    "mrr@1":       [0, 1, nan, 0],
    "hitrate@1":   [0, 1, nan, 0],
    "map@1":       [0, 1, nan, 0],           # u1: precision@1 * 1 / min(2, 1)
    "map_full@1":  [0, 1 / 2, nan, 0],       # u1: precision@1 * 1 / |R| = 1 / 2
    # k = 2
    "precision@2": [1 / 2, 1 / 2, nan, 1 / 2],
    "recall@2":    [1 / 3, 1 / 2, nan, 1 / 1],
    # u0: DCG = L3, IDCG = 1 + L3 (min(3,2)=2 hits); u1: DCG = 1, IDCG = 1 + L3; u3: DCG = L3, IDCG = 1
    "ndcg@2":      [L3 / (1 + L3), 1 / (1 + L3), nan, L3],
    "mrr@2":       [1 / 2, 1, nan, 1 / 2],
    "hitrate@2":   [1, 1, nan, 1],
    # u0: precision@2 * hit_2 / min(3, 2) = (1/2) / 2; u1: 1 / min(2, 2); u3: (1/2) / 1
    "map@2":       [1 / 4, 1 / 2, nan, 1 / 2],
    "map_full@2":  [1 / 6, 1 / 2, nan, 1 / 2],   # u0: (1/2) / |R| = (1/2) / 3
    # k = 3
    "precision@3": [2 / 3, 1 / 3, nan, 1 / 3],
    "recall@3":    [2 / 3, 1 / 2, nan, 1],
    # u0: DCG = L3 + L4, IDCG = 1 + L3 + L4; u1: IDCG = 1 + L3 (only 2 relevant)
    "ndcg@3":      [(L3 + L4) / (1 + L3 + L4), 1 / (1 + L3), nan, L3],
    "mrr@3":       [1 / 2, 1, nan, 1 / 2],
    "hitrate@3":   [1, 1, nan, 1],
    # u0: (precision@2 + precision@3) / min(3, 3) = (1/2 + 2/3) / 3 = 7/18
    "map@3":       [7 / 18, 1 / 2, nan, 1 / 2],
    "map_full@3":  [7 / 18, 1 / 2, nan, 1 / 2],  # |R| <= 3 for everyone: the same as map@3
}


def test_ranking_metrics_hand_example():
    out = ranking_metrics(TOP, REL, ks=[3, 1, 2, 2])
    assert set(out) == set(EXPECTED)
    for key, want in EXPECTED.items():
        assert out[key].shape == (4,)
        np.testing.assert_allclose(out[key], want, rtol=1e-12, atol=0, equal_nan=True, err_msg=key)


def test_user_without_relevant_items_is_nan():
    out = ranking_metrics(np.array([[0, 1]]), _csr([[]], 3), ks=[2])
    assert all(np.isnan(v).all() for v in out.values())


def test_all_empty_slots_give_zero():
    out = ranking_metrics(np.full((1, 2), -1), _csr([[1]], 2), ks=[2])
    # relevant item 1 is the last column: -1 must not hit it
    assert all(v[0] == 0 for v in out.values())


def test_perfect_list():
    out = ranking_metrics(np.array([[4, 2, 0]]), _csr([[0, 2, 4]], 5), ks=[3])
    for m in ("precision", "recall", "ndcg", "mrr", "hitrate", "map", "map_full"):
        assert out[f"{m}@3"][0] == pytest.approx(1.0), m


def test_top_too_short():
    with pytest.raises(ValueError, match="columns"):
        ranking_metrics(TOP[:, :2], REL, ks=[3])


# -- evaluate ---------------------------------------------------------------------------------------
class FixedScores(Recommender):
    """Every user gets the same scores: item 0 best, then 1, 2, 3 ..."""

    name = "test-fixed-scores"

    def __init__(self):
        pass

    def _fit(self, X, progress=None):
        self.seen_histories_ = []

    def _score(self, users, history):
        self.seen_histories_.append(history.toarray())
        return np.tile(-np.arange(self.n_items_, dtype=np.float32), (history.shape[0], 1))


def _dataset(train, valid, test, n_items):
    n_users = len(train)
    part = lambda rows: Part({"view": _csr(rows, n_items)})  # noqa: E731
    return Dataset(IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"),
                   {"train": part(train), "valid": part(valid), "test": part(test)})


@pytest.fixture
def tiny():
    # 4 users x 4 items
    #        train     valid   test
    # u0     {0}       {2}     {1}
    # u1     {0, 1}    {}      {3}
    # u2     {1}       {}      {0}
    # u3     {2}       {}      {}     <- no test item: skipped
    return _dataset(train=[[0], [0, 1], [1], [2]], valid=[[2], [], [], []], test=[[1], [3], [0], []], n_items=4)


def test_evaluate_hand_example(tiny):
    model = FixedScores().fit(tiny)
    res = evaluate(model, tiny, "test", ks=(1, 2))
    # history(test) = train + valid, so unseen items in score order (0 > 1 > 2 > 3):
    #   u0 (seen 0, 2): [1, 3]  test {1} -> hit at rank 1
    #   u1 (seen 0, 1): [2, 3]  test {3} -> hit at rank 2
    #   u2 (seen 1):    [0, 2]  test {0} -> hit at rank 1
    assert res["users_evaluated"] == 3 and res["users_skipped"] == 1
    assert res["precision@1"] == pytest.approx(2 / 3)
    assert res["hitrate@1"] == pytest.approx(2 / 3)
    assert res["recall@2"] == pytest.approx(1.0)
    assert res["precision@2"] == pytest.approx(1 / 2)
    assert res["ndcg@2"] == pytest.approx((1 + L3 + 1) / 3)
    assert res["mrr@2"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    # coverage: k=1 recommends {1, 2, 0} of 4 items; k=2 adds 3 -> all 4
    assert res["coverage@1"] == pytest.approx(3 / 4)
    assert res["coverage@2"] == pytest.approx(1.0)
    # popularity = train users per item / 4 users: item0 2/4, item1 2/4, item2 1/4, item3 0
    #   k=1: items 1, 2, 0 -> (0.5 + 0.25 + 0.5) / 3
    #   k=2: [1,3] [2,3] [0,2] -> (0.5 + 0 + 0.25 + 0 + 0.5 + 0.25) / 6
    assert res["popularity@1"] == pytest.approx(1.25 / 3)
    assert res["popularity@2"] == pytest.approx(1.5 / 6)
    # the model was fed train + valid as history, only for the evaluated users
    np.testing.assert_array_equal(model.seen_histories_[-1], [[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 0]])


def test_evaluate_valid_part_uses_train_history(tiny):
    model = FixedScores().fit(tiny)
    res = evaluate(model, tiny, "valid", ks=(1,))
    # only u0 has a valid item (2); history = train {0} -> top-1 is item 1: a miss
    assert res["users_evaluated"] == 1 and res["users_skipped"] == 3
    assert res["hitrate@1"] == 0.0
    assert res["coverage@1"] == pytest.approx(1 / 4)
    np.testing.assert_array_equal(model.seen_histories_[-1], [[1, 0, 0, 0]])


def test_evaluate_batches_agree(tiny):
    model = FixedScores().fit(tiny)
    assert evaluate(model, tiny, ks=(1, 2), batch_size=1) == evaluate(model, tiny, ks=(1, 2))


def test_popularity_ignores_empty_slots():
    # u0 has seen items 0 and 1 of 3: its top-2 is [2, -1]; pop(2) = 1/2 (u1 of 2 users)
    ds = _dataset(train=[[0, 1], [2]], valid=[[], []], test=[[2], []], n_items=3)
    res = evaluate(FixedScores().fit(ds), ds, ks=(2,))
    assert res["popularity@2"] == pytest.approx(0.5)


# -- a target action: per-action histories and the two masks ---------------------------------------
def _target_dataset(meta=None):
    # 4 users x 5 items; FixedScores ranks 0 > 1 > 2 > 3 > 4
    #            train like  train view   impression  valid like  valid view  test like  test view
    # u0         {0}         {0, 1, 2}    {}          {3}         {}          {1}        {}
    # u1         {1}         {0, 1}       {2}         {}          {}          {2}        {}
    # u2         {}          {0}          {}          {}          {1}         {0}        {}
    # u3         {0}         {}           {}          {}          {}          {}         {4}  <- no test like
    n = 5
    part = lambda like, view, shown=([], [], [], []): Part({"like": _csr(like, n), "view": _csr(view, n),  # noqa: E731
                                                           "impression": _csr(shown, n)})
    parts = {"train": part([[0], [1], [], [0]], [[0, 1, 2], [0, 1], [0], []], [[], [2], [], []]),
             "valid": part([[3], [], [], []], [[], [], [1], []]),
             "test": part([[1], [2], [0], []], [[], [], [], [4]])}
    return Dataset(IdMap(np.arange(4), "user"), IdMap(np.arange(n), "item"), parts, meta=meta)


@pytest.fixture
def target_tiny():
    return _target_dataset()


def test_evaluate_action_target_mask_by_hand(target_tiny):
    model = FixedScores().fit(target_tiny, target="like", aux={"view": 1.0})
    res = evaluate(model, target_tiny, "test", ks=(1, 2), action="like", mask="target")
    # history(test) = train + valid. Excluded: the user's likes only.
    #   u0 likes {0, 3}: [1, 2]  test {1} -> rank 1
    #   u1 likes {1}:    [0, 2]  test {2} -> rank 2
    #   u2 likes {}:     [0, 1]  test {0} -> rank 1
    # u3 has a test view but no test like: not evaluated
    assert res["users_evaluated"] == 3 and res["users_skipped"] == 1
    assert res["hitrate@1"] == pytest.approx(2 / 3)
    assert res["hitrate@2"] == pytest.approx(1.0)
    assert res["ndcg@2"] == pytest.approx((1 + L3 + 1) / 3)
    assert res["mrr@2"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    # the model read like + 1.0 * view of train + valid
    np.testing.assert_array_equal(model.seen_histories_[-1], [[2, 1, 1, 1, 0], [1, 2, 0, 0, 0], [1, 1, 0, 0, 0]])


def test_evaluate_action_all_mask_by_hand(target_tiny):
    model = FixedScores().fit(target_tiny, target="like", aux={"view": 1.0})
    res = evaluate(model, target_tiny, "test", ks=(1, 2), action="like", mask="all")
    # Excluded: everything the user liked or viewed in train + valid (never an exposure):
    #   u0 {0, 1, 2, 3}: [4]      test {1} was viewed -> miss
    #   u1 {0, 1}:       [2, 3]   test {2} (only shown before) -> rank 1
    #   u2 {0, 1}:       [2, 3]   test {0} was viewed -> miss
    assert res["users_evaluated"] == 3
    assert res["hitrate@1"] == pytest.approx(1 / 3)
    assert res["hitrate@2"] == pytest.approx(1 / 3)
    assert res["ndcg@2"] == pytest.approx(1 / 3)
    assert res["recall@2"] == pytest.approx(1 / 3)
    # coverage: k=2 lists [4, -1], [2, 3], [2, 3] -> items 2, 3, 4 of 5
    assert res["coverage@2"] == pytest.approx(3 / 5)
    # the input is the same as with the target mask: the mask changes only what is excluded
    np.testing.assert_array_equal(model.seen_histories_[-1], [[2, 1, 1, 1, 0], [1, 2, 0, 0, 0], [1, 1, 0, 0, 0]])


def test_evaluate_action_masks_on_valid(target_tiny):
    # valid: history = train only; only u0 has a valid like (item 3)
    model = FixedScores().fit(target_tiny, target="like", aux={"view": 1.0})
    target = evaluate(model, target_tiny, "valid", ks=(1, 3), action="like", mask="target")
    everything = evaluate(model, target_tiny, "valid", ks=(1, 3), action="like", mask="all")
    # target mask: u0's list [1, 2, 3] -> item 3 at rank 3;  all mask: [3, 4] -> rank 1
    assert target["users_evaluated"] == everything["users_evaluated"] == 1
    assert target["hitrate@1"] == 0 and target["mrr@3"] == pytest.approx(1 / 3)
    assert target["ndcg@3"] == pytest.approx(L4)
    assert everything["hitrate@1"] == 1 and everything["ndcg@3"] == pytest.approx(1.0)


def test_evaluate_action_of_a_model_without_target(target_tiny):
    # a model fitted without a target reads the target's own history rows only
    model = FixedScores().fit(target_tiny.matrix("train", "like"))
    res = evaluate(model, target_tiny, "test", ks=(1, 2), action="like")
    assert res["hitrate@1"] == pytest.approx(2 / 3) and res["ndcg@2"] == pytest.approx((1 + L3 + 1) / 3)
    np.testing.assert_array_equal(model.seen_histories_[-1], [[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    res = evaluate(model, target_tiny, "test", ks=(1, 2), action="like", mask="all")
    assert res["hitrate@1"] == pytest.approx(1 / 3)


def test_evaluate_default_action_is_the_split_target():
    ds = _target_dataset(meta={"config": {"target_action": "like"}})
    assert ds.target_action == "like"
    model = FixedScores().fit(ds, aux={"view": 1.0})
    assert model.target_ == "like"
    assert evaluate(model, ds, "test", ks=(1, 2)) == evaluate(model, ds, "test", ks=(1, 2), action="like")
    assert evaluate(model, ds, "test", ks=(1, 2), mask="all")["hitrate@1"] == pytest.approx(1 / 3)


def test_evaluate_without_action_scores_every_pair(target_tiny):
    # no action, no target: the union of like and view is the relevant set, so u3 counts too
    model = FixedScores().fit(target_tiny)
    res = evaluate(model, target_tiny, "test", ks=(1,))
    assert res["users_evaluated"] == 4


def test_evaluate_action_errors(target_tiny):
    model = FixedScores().fit(target_tiny, target="like", aux={"view": 1.0})
    with pytest.raises(ValueError, match="like"):
        evaluate(model, target_tiny, "test", ks=(1,), action="view")
    with pytest.raises(ValueError, match="mask"):
        evaluate(model, target_tiny, "test", ks=(1,), action="like", mask="viewed")

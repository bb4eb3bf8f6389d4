"""Multi-behaviour baselines (SeenFirst, SeenEASE): the shared contract plus hand-worked cases."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from feedgan.data.dataset import Dataset, IdMap, Part
from feedgan.rec.base import Recommender
from feedgan.rec.baselines import EASE
from feedgan.rec.behaviour import SeenEASE, SeenFirst
from rec_contract import RecommenderContract


class TestSeenFirst(RecommenderContract):
    # the rule reads the user's own auxiliary rows and the target popularity only: by design the
    # friends channel changes nothing (behaviour.py skips it)
    input_sensitive = False

    def make_model(self):
        return SeenFirst()


class TestSeenEASE(RecommenderContract):
    def make_model(self):
        return SeenEASE(l2=10.0, shrink=5.0, ease=0.1)


def _csr(rows, n_items):
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items))


def _dataset(n_items, **actions) -> Dataset:
    """A train-only dataset from per-user item lists per action (valid and test empty)."""
    n_users = len(next(iter(actions.values())))
    empty = [[] for _ in range(n_users)]
    parts = {"train": Part({a: _csr(rows, n_items) for a, rows in actions.items()})}
    for p in ("valid", "test"):
        parts[p] = Part({a: _csr(empty, n_items) for a in actions})
    return Dataset(IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"), parts)


# -- SeenFirst --------------------------------------------------------------------------------------
# six items; u0 carted 1, viewed 2 and 4, carted *and* viewed 3, bought 5.
# Buyers per item (target popularity): item0 3, item1 0, item2 1, item3 0, item4 2, item5 1.
SF = _dataset(6,
              buy=[[5], [0, 4], [0, 4], [0, 2]],
              cart=[[1, 3], [], [], []],
              view=[[2, 3, 4], [], [1], []])
POP = np.array([3, 0, 1, 0, 2, 1]) / 4.0  # / (max + 1): below one step of auxiliary weight


def test_seen_first_order_by_hand():
    m = SeenFirst().fit(SF, target="buy", aux={"cart": 2.0, "view": 1.0})
    np.testing.assert_allclose(m.popularity_, POP, rtol=1e-6)
    # level = 2 * cart + 1 * view over the smallest gap between levels (sums 0, 1, 2, 3: gap 1), plus
    # the popularity: item3 (cart + view) 3, item1 (cart) 2, item4 (view, pop 2) 1.5, item2 (view,
    # pop 1) 1.25, then untouched item0 by its popularity; item5 is bought, so not recommended
    np.testing.assert_allclose(m.score([0])[0], [0.75, 2.0, 1.25, 3.0, 1.5, 0.25], rtol=1e-6)
    items, _ = m.recommend([0], n=6)
    assert items[0].tolist() == [3, 1, 4, 2, 0, -1]
    # u2 viewed item 1, which nobody bought: it still comes before every untouched item
    items, _ = m.recommend([2], n=4)
    assert items[0, 0] == 1 and set(items[0, 1:3].tolist()) == {2, 5} and items[0, 3] == 3
    # u1 touched nothing through cart or view: pure target popularity
    np.testing.assert_allclose(m.score([1])[0], POP, rtol=1e-6)


def test_seen_first_fold_in_by_action():
    m = SeenFirst().fit(SF, target="buy", aux={"cart": 2.0, "view": 1.0})
    # a new user who viewed items 0 and 5 and carted item 2, bought nothing
    H = {"buy": _csr([[]], 6), "view": _csr([[0, 5]], 6), "cart": _csr([[2]], 6)}
    # cart 2 -> 2 + pop 0.25; views 0 and 5 -> 1 + 0.75 and 1 + 0.25; then 4 (0.5); 1 and 3 tie at 0
    items, scores = m.recommend(None, n=6, history=H)
    assert items[0, :4].tolist() == [2, 0, 5, 4] and set(items[0, 4:].tolist()) == {1, 3}
    np.testing.assert_allclose(scores[0, :4], [2.25, 1.75, 1.25, 0.5], rtol=1e-6)


def test_seen_first_weights_only_matter_in_order():
    a = SeenFirst().fit(SF, target="buy", aux={"cart": 2.0, "view": 1.0}).recommend(np.arange(4), n=6)[0]
    b = SeenFirst().fit(SF, target="buy", aux={"cart": 20.0, "view": 10.0}).recommend(np.arange(4), n=6)[0]
    np.testing.assert_array_equal(a, b)


def test_seen_first_close_weights_still_put_cart_before_view():
    m = SeenFirst().fit(SF, target="buy", aux={"cart": 1.0, "view": 0.9})
    # u2-like user: carted item 1 (bought by nobody), viewed item 0 (the most bought)
    H = {"buy": _csr([[]], 6), "view": _csr([[0]], 6), "cart": _csr([[1]], 6)}
    items, _ = m.recommend(None, n=2, history=H)
    assert items[0].tolist() == [1, 0]


def test_seen_first_without_a_target_is_most_popular():
    X = SF.matrix("train")  # union of buy, cart, view: users per item 3 2 2 1 3 1
    m = SeenFirst().fit(X)
    assert m.target_ is None and m.aux_ == {}
    expect = np.array([3, 2, 2, 1, 3, 1]) / 4.0
    np.testing.assert_allclose(m.score([0, 3]), np.tile(expect, (2, 1)), rtol=1e-6)
    items, _ = m.recommend([3], n=6)  # u3 has 0 and 2
    assert items[0, :2].tolist() == [4, 1] and set(items[0, 2:4].tolist()) == {3, 5}
    assert items[0, 4:].tolist() == [-1, -1]
    # on a dataset without a target action the input is the union too
    m2 = SeenFirst().fit(SF)
    np.testing.assert_allclose(m2.score([0]), m.score([0]), rtol=1e-6)


def test_seen_first_aux_list_gives_weight_one():
    m = SeenFirst().fit(SF, target="buy", aux=["cart", "view"])
    assert m.aux_ == {"cart": 1.0, "view": 1.0}
    # cart and view now weigh the same: item3 (both) first, then 1, 2, 4 by popularity
    items, _ = m.recommend([0], n=4)
    assert items[0].tolist() == [3, 4, 2, 1]


# -- SeenEASE ---------------------------------------------------------------------------------------
# 4 users x 3 items.  view: u0 {0,1}, u1 {0,1}, u2 {0,2}, u3 {1};  buy: u0 {0}, u1 {0,1}, u2 {2}
#   viewers per item      n = 3, 3, 1;   viewers who bought  both = 2, 1, 1
#   prior = 4 / 7;  shrink = 2:  conv = (both + 2 * 4/7) / (n + 2) = 22/35, 15/35, 15/21
#   cart: u1 {1}, u2 {2}, u3 {1}: n = 0, 2, 1; both = 0, 1, 1; prior = 2/3
#   conv_cart = (both + 4/3) / (n + 2) = 2/3, 7/12, 7/9
SE = _dataset(3, buy=[[0], [0, 1], [2], []], view=[[0, 1], [0, 1], [0, 2], [1]], cart=[[], [1], [2], [1]])
CONV_VIEW = np.array([22 / 35, 15 / 35, 15 / 21])
CONV_CART = np.array([2 / 3, 7 / 12, 7 / 9])


def test_seen_ease_conversion_rates_by_hand():
    m = SeenEASE(l2=1.0, shrink=2.0, ease=0.0).fit(SE, target="buy", aux={"view": 1.0})
    np.testing.assert_allclose(m.conv_, CONV_VIEW[None, :], rtol=1e-6)
    m2 = SeenEASE(l2=1.0, shrink=2.0, ease=0.0).fit(SE, target="buy", aux={"view": 0.5, "cart": 1.0})
    np.testing.assert_allclose(m2.conv_, np.stack([CONV_VIEW, CONV_CART]), rtol=1e-6)
    # ease=0: the noisy-or of the conversions of what the user did: u3 viewed and carted item 1
    np.testing.assert_allclose(m2.score([3])[0], [0, 1 - (1 - CONV_VIEW[1]) * (1 - CONV_CART[1]), 0], rtol=1e-6)
    np.testing.assert_allclose(m.score([3])[0], [0, CONV_VIEW[1], 0], rtol=1e-6)


def test_seen_ease_zero_ranks_viewed_items_by_conversion():
    m = SeenEASE(l2=1.0, shrink=2.0, ease=0.0).fit(SE, target="buy", aux={"view": 1.0})
    # a new user who viewed every item: conversion order 2 (15/21) > 0 (22/35) > 1 (15/35), although
    # item 0 is the most bought
    H = {"buy": _csr([[]], 3), "view": _csr([[0, 1, 2]], 3)}
    items, scores = m.recommend(None, n=3, history=H)
    assert items[0].tolist() == [2, 0, 1]
    np.testing.assert_allclose(scores[0], CONV_VIEW[[2, 0, 1]], rtol=1e-6)
    # viewed items come before an unviewed one, whatever its popularity
    H = {"buy": _csr([[]], 3), "view": _csr([[1]], 3)}
    items, scores = m.recommend(None, n=3, history=H)
    assert items[0, 0] == 1 and scores[0, 1] == 0 and scores[0, 2] == 0


def test_seen_ease_adds_normalised_stacked_ease():
    aux = {"view": 0.5, "cart": 1.0}
    m = SeenEASE(l2=3.0, shrink=2.0, ease=0.3).fit(SE, target="buy", aux=aux)
    ease = EASE(l2=3.0).fit(SE, target="buy", aux=aux)
    np.testing.assert_allclose(m.B_, ease.B_, rtol=1e-5, atol=1e-6)  # EASE on target + weighted aux
    s = ease.score(np.arange(4))
    s = s / (np.abs(s).max(1, keepdims=True) + 1e-9)
    A_v, A_c = SE.matrix("train", "view").toarray(), SE.matrix("train", "cart").toarray()
    p = 1 - (1 - A_v * CONV_VIEW) * (1 - A_c * CONV_CART)
    np.testing.assert_allclose(m.score(np.arange(4)), p + 0.3 * s, rtol=1e-5, atol=1e-6)


def test_seen_ease_without_a_target_is_scaled_ease(tmp_path):
    X = SE.matrix("train")
    m = SeenEASE(l2=3.0, ease=0.1).fit(X)
    assert m.target_ is None and m.conv_.shape == (0, 3)
    s = EASE(l2=3.0).fit(X).score(np.arange(4))
    np.testing.assert_allclose(m.score(np.arange(4)), 0.1 * s / (np.abs(s).max(1, keepdims=True) + 1e-9),
                               rtol=1e-5, atol=1e-6)
    m.save(tmp_path / "m")
    np.testing.assert_array_equal(Recommender.load(tmp_path / "m").score(np.arange(4)), m.score(np.arange(4)))


def test_behaviour_models_on_a_prepared_target_split():
    """End to end: on a funnel log split on likes, both beat popularity at finding held-out likes
    of items the user viewed (the likes follow the views)."""
    from feedgan.data.dataset import DataConfig, prepare
    from feedgan.data.schema import validate
    from feedgan.eval.metrics import evaluate
    from feedgan.rec.baselines import MostPopular
    from test_split import funnel_log

    ds = prepare(validate(funnel_log(n_users=40, seed=5).drop(columns="part")),
                 DataConfig(split="random", target_action="like", seed=0))
    pop = evaluate(MostPopular().fit(ds), ds, "test", ks=(10,))["recall@10"]
    for model in (SeenFirst(), SeenEASE(l2=10.0, ease=0.0)):
        res = evaluate(model.fit(ds, aux={"view": 1.0}), ds, "test", ks=(10,))
        assert res["recall@10"] > pop + 0.1, (model.name, res["recall@10"], pop)


def test_aux_is_tuned_like_a_hyperparameter():
    from feedgan.data.dataset import DataConfig, prepare
    from feedgan.data.schema import validate
    from feedgan.eval.protocol import ModelSpec, refit_and_test, tune
    from test_split import funnel_log

    ds = prepare(validate(funnel_log(n_users=30, seed=6).drop(columns="part")),
                 DataConfig(split="random", target_action="like", seed=0))
    spec = ModelSpec(SeenFirst, grid={"aux": [{}, {"view": 1.0}]})
    assert spec.fit_kwargs({"aux": {}}) == {} and spec.fit_kwargs({"aux": {"view": 1.0}}) == {"aux": {"view": 1.0}}
    best, trials = tune(spec, ds, metric="recall@10", ks=(10,))
    assert len(trials) == 2 and best == {"aux": {"view": 1.0}}
    assert trials[1]["valid"]["recall@10"] > trials[0]["valid"]["recall@10"]
    out = refit_and_test(spec, best, ds, ks=(10,), masks=("target", "all"))
    assert out["model"].target_ == "like" and out["model"].aux_ == {"view": 1.0}
    assert {"test", "test_all"} <= set(out)
    # the default aux of a spec applies when the grid has none
    assert ModelSpec(SeenFirst, aux={"view": 2.0}).fit_kwargs({}) == {"aux": {"view": 2.0}}

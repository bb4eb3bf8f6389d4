"""The contract every feedgan recommender must honour, as a reusable test mixin.

Use it by subclassing and giving an unfitted model::

    class TestEASE(RecommenderContract):
        def make_model(self):
            return EASE(l2=10.0)

Models with a seed should return it fixed in ``make_model`` so the determinism test is meaningful.
Everything runs on a tiny random dataset (60 users + 2 users seen only in the social graph, 40
items), so a contract run costs well under a second for a baseline.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from feedgan.data.dataset import DataConfig, Dataset, prepare
from feedgan.data.schema import validate
from feedgan.rec.base import NotFittedError, Recommender, registry

N_USERS, N_ITEMS = 60, 40
LURKERS = ("lurker-a", "lurker-b")  # users with no interaction at all (social graph only)


def contract_log(seed: int = 0) -> pd.DataFrame:
    """~10 interactions per user, popularity skewed so scores are rarely tied."""
    rng = np.random.default_rng(seed)
    n = N_USERS * 10
    pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.7
    items = rng.choice(N_ITEMS, n, p=pop / pop.sum())
    users = np.r_[np.arange(N_USERS), rng.integers(0, N_USERS, n - N_USERS)]  # every user appears
    # every item appears too: give item j to user j once
    items[:N_ITEMS] = np.arange(N_ITEMS)
    return pd.DataFrame({"user": [f"u{u:03d}" for u in users], "item": [f"i{i:03d}" for i in items],
                         "action": rng.choice(["view", "like"], n, p=[0.8, 0.2]),
                         "timestamp": rng.integers(1_600_000_000, 1_600_500_000, n)})


def contract_dataset(seed: int = 0) -> Dataset:
    social = pd.DataFrame({"src": list(LURKERS), "dst": ["u000", "u001"]})
    inter = validate(contract_log(seed), social=social, source="contract.csv")
    return prepare(inter, DataConfig(split="random", valid=0.1, test=0.2, seed=seed))


class RecommenderContract:
    """Mixin: subclass as ``TestX(RecommenderContract)`` and implement :meth:`make_model`."""

    def make_model(self) -> Recommender:  # pragma: no cover - hook
        raise NotImplementedError("return an unfitted model (with a fixed seed if it has one)")

    # -- fixtures ---------------------------------------------------------------------------------
    # class-scoped fixtures are classmethods (pytest deprecates instance-method ones)
    @pytest.fixture(scope="class")
    @classmethod
    def dataset(cls) -> Dataset:
        ds = contract_dataset()
        assert ds.n_users == N_USERS + len(LURKERS) and ds.n_items == N_ITEMS
        return ds

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, dataset) -> Recommender:
        return cls().make_model().fit(dataset)

    @pytest.fixture(scope="class")
    @classmethod
    def lurker(cls, dataset) -> int:
        u = int(dataset.user_ids.index([LURKERS[0]])[0])
        assert dataset.matrix("train")[u].nnz == 0
        return u

    # -- scikit-learn surface -----------------------------------------------------------------------
    def test_registered(self):
        model = self.make_model()
        assert registry()[model.name] is type(model)

    def test_fit_returns_self_and_sets_underscore_attributes(self, dataset):
        model = self.make_model()
        before = set(vars(model))
        assert not [k for k in before if k.endswith("_") and not k.startswith("__")]
        assert model.fit(dataset) is model
        new = set(vars(model)) - before
        assert {"n_users_", "n_items_", "train_", "user_ids_", "item_ids_"} <= new
        assert all(k.endswith("_") for k in new), sorted(k for k in new if not k.endswith("_"))
        assert (model.n_users_, model.n_items_) == (dataset.n_users, dataset.n_items)

    def test_constructor_stores_params_only(self):
        model = self.make_model()
        params = model.get_params()
        assert {k for k in vars(model) if not k.startswith("_")} == set(params)
        clone = type(model)(**params)
        assert clone.get_params() == params
        assert type(model).__name__ in repr(model)
        if params:
            key = next(iter(params))
            assert model.set_params(**{key: params[key]}) is model
        with pytest.raises(ValueError, match="no hyperparameter"):
            model.set_params(not_a_param_xyz=1)

    def test_fit_on_matrix(self, dataset):
        X = dataset.matrix("train")
        model = self.make_model().fit(X)
        assert model.user_ids_.values.tolist() == list(range(X.shape[0]))
        assert model.item_ids_.values.tolist() == list(range(X.shape[1]))
        assert model.score([0, 1]).shape == (2, X.shape[1])

    def test_fit_on_empty_matrix_fails(self):
        with pytest.raises(ValueError):
            self.make_model().fit(sp.csr_matrix((5, 4), dtype=np.float32))

    # -- scoring ----------------------------------------------------------------------------------
    def test_score_shape_and_dtype(self, fitted, dataset):
        s = fitted.score([0, 3, 5])
        assert s.shape == (3, dataset.n_items) and s.dtype == np.float32
        assert np.isfinite(s).all()
        assert fitted.score(7).shape == (1, dataset.n_items)

    def test_batch_equals_single(self, fitted):
        batch = fitted.score([0, 1, 2])
        for i in range(3):
            np.testing.assert_allclose(batch[i], fitted.score([i])[0], rtol=1e-5, atol=1e-6)

    def test_recommend_excludes_seen_and_sorts(self, fitted, dataset):
        users = np.arange(10)
        n = 8
        items, scores = fitted.recommend(users, n=n)
        assert items.shape == scores.shape == (10, n)
        full = fitted.score(users)
        X = dataset.matrix("train")
        for row, u in enumerate(users):
            seen = set(X[u].indices.tolist())
            got = items[row]
            assert (got >= 0).all()
            assert not seen & set(got.tolist()), f"user {u} was recommended an item they have"
            assert len(set(got.tolist())) == n
            assert np.all(np.diff(scores[row]) <= 1e-6)
            np.testing.assert_allclose(scores[row], full[row, got], rtol=1e-5, atol=1e-6)
            # nothing unseen and left out scores higher than the last slot
            unseen = np.setdiff1d(np.arange(dataset.n_items), list(seen) + got.tolist())
            assert (full[row, unseen] <= scores[row, -1] + 1e-5).all()

    def test_recommend_without_exclusion_may_repeat_seen(self, fitted, dataset):
        items, _ = fitted.recommend([0], n=dataset.n_items, exclude_seen=False)
        assert sorted(items[0].tolist()) == list(range(dataset.n_items))

    def test_empty_history_row(self, fitted, dataset, lurker):
        n = 5
        items, scores = fitted.recommend([lurker], n=n)
        assert items.shape == (1, n) and (items >= 0).all() and len(set(items[0].tolist())) == n
        H = sp.csr_matrix((2, dataset.n_items), dtype=np.float32)
        items, _ = fitted.recommend([0, 1], n=n, history=H)  # explicit empty histories
        assert items.shape == (2, n) and (items >= 0).all()
        if fitted.fold_in:
            items, _ = fitted.recommend(None, n=n, history=H)
            assert items.shape == (2, n) and (items >= 0).all()

    def test_n_larger_than_n_items_pads(self, fitted, dataset):
        n = dataset.n_items + 5
        items, scores = fitted.recommend([0, 1], n=n)
        X = dataset.matrix("train")
        for row, u in enumerate([0, 1]):
            n_free = dataset.n_items - X[u].nnz
            assert (items[row, :n_free] >= 0).all()
            assert sorted(items[row, :n_free].tolist()) == sorted(set(range(dataset.n_items)) - set(X[u].indices))
            assert (items[row, n_free:] == -1).all()
            assert np.isneginf(scores[row, n_free:]).all()

    # -- persistence ------------------------------------------------------------------------------
    def test_save_load_round_trip(self, fitted, tmp_path):
        fitted.save(tmp_path / "m")
        back = Recommender.load(tmp_path / "m")
        assert type(back) is type(fitted)
        assert back.get_params() == fitted.get_params()
        assert (back.n_users_, back.n_items_) == (fitted.n_users_, fitted.n_items_)
        users = np.arange(fitted.n_users_)
        np.testing.assert_array_equal(back.score(users), fitted.score(users))
        np.testing.assert_array_equal(back.recommend(users, n=5)[0], fitted.recommend(users, n=5)[0])
        assert back.user_ids_.values.tolist() == fitted.user_ids_.values.tolist()
        assert back.item_ids_.values.tolist() == fitted.item_ids_.values.tolist()
        assert back.user_ids_.index(["u005"]).tolist() == fitted.user_ids_.index(["u005"]).tolist()
        assert (back.train_ != fitted.train_).nnz == 0

    def test_save_before_fit(self, tmp_path):
        with pytest.raises(NotFittedError):
            self.make_model().save(tmp_path / "m")

    def test_deterministic(self, dataset):
        users = np.arange(dataset.n_users)
        a = self.make_model().fit(dataset).score(users)
        b = self.make_model().fit(dataset).score(users)
        np.testing.assert_array_equal(a, b)

    # -- fold-in ----------------------------------------------------------------------------------
    def test_fold_in(self, fitted, dataset):
        users = np.array([0, 4, 9, 20])
        rows = dataset.matrix("train")[users]
        if not fitted.fold_in:
            with pytest.raises(ValueError, match="fold in"):
                fitted.recommend(None, n=5, history=rows)
            return
        a_items, a_scores = fitted.recommend(None, n=5, history=rows)
        b_items, b_scores = fitted.recommend(users, n=5)
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fitted.score(None, history=rows), fitted.score(users), rtol=1e-5, atol=1e-6)

    # -- errors -----------------------------------------------------------------------------------
    @pytest.mark.parametrize("bad", [-1, "n_users"])
    def test_unknown_user_index(self, fitted, bad):
        idx = fitted.n_users_ if bad == "n_users" else bad
        with pytest.raises(KeyError, match=str(idx)):
            fitted.score([0, idx])
        with pytest.raises(KeyError):
            fitted.recommend([idx], n=3)

    @pytest.mark.parametrize("users", [["u000"], [0.0, 1.0], np.array([1.5])])
    def test_non_integer_users(self, fitted, users):
        with pytest.raises(TypeError):
            fitted.score(users)
        with pytest.raises(TypeError):
            fitted.recommend(users, n=3)

    @pytest.mark.parametrize("n", [0, -3])
    def test_bad_n(self, fitted, n):
        with pytest.raises(ValueError):
            fitted.recommend([0], n=n)

    def test_no_users_no_history(self, fitted):
        with pytest.raises(ValueError):
            fitted.score(None)

    def test_history_shape_mismatch(self, fitted, dataset):
        with pytest.raises(ValueError):
            fitted.score([0], history=sp.csr_matrix((1, dataset.n_items + 1), dtype=np.float32))
        with pytest.raises(ValueError):
            fitted.score([0, 1], history=sp.csr_matrix((3, dataset.n_items), dtype=np.float32))

    def test_not_fitted(self):
        model = self.make_model()
        with pytest.raises(NotFittedError):
            model.score([0])
        with pytest.raises(NotFittedError):
            model.recommend([0], n=3)

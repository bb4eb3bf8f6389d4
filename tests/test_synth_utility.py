"""Utility of synthetic users: TSTR against real training, augmentation of sparse users against its controls.

The synthetic users here are stand-ins: a copy of the train users, uniformly random profiles and a
popularity sampler (each user's activity kept, items drawn in proportion to their popularity).
"""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from feedgan.data.schema import DataError
from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.synth import Profiles
from feedgan.synth.utility import AUGMENT_METHODS, METRICS, TSTR_MODELS, augmentation, tstr

PERSONAL = ("ease", "itemknn", "rp3beta", "multvae")
FAST = {"multvae": {"epochs": 10}}  # enough for the fold-in signal at this size, fast on two cores


@pytest.fixture(scope="module")
def parts():
    p = Profiles.from_interactions(simulate(SimulationConfig(n_users=300, n_items=200, seed=0)).interactions)
    return p.split_users((0.6, 0.2, 0.2), seed=0)  # train, holdout, test


def sampled(train: Profiles, weights: np.ndarray, seed: int = 0) -> Profiles:
    """Synthetic users with the train users' activity, items drawn without replacement by ``weights``."""
    rng = np.random.default_rng(seed)
    act = train.union().getnnz(1)
    p = weights / weights.sum()
    cols = [rng.choice(train.n_items, size=a, replace=False, p=p) for a in act]
    rows = np.repeat(np.arange(len(act)), act)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, np.concatenate(cols))), shape=(len(act), train.n_items))
    return Profiles(np.array([f"synth-{i:07d}" for i in range(len(act))]), train.items, {"view": X})


@pytest.fixture(scope="module")
def copy_result(parts):
    train, _, test = parts
    copy = Profiles(train.users.copy(), train.items, dict(train.actions))
    return tstr(train, copy, test, params=FAST)


def test_a_copy_of_train_scores_exactly_what_train_scores(copy_result):
    assert list(copy_result["models"]) == list(TSTR_MODELS)
    for name, row in copy_result["models"].items():
        assert row["real"][METRICS[0]] > 0.1, name  # the models learn something at this size
        assert row["synth"] == row["real"], name  # same rows in the same order: every model is deterministic
        assert row["ratio"] == {m: 1.0 for m in METRICS}, name
    assert copy_result["kendall_tau"] == {m: pytest.approx(1.0) for m in METRICS}
    assert copy_result["hyperparameters"].startswith("fixed") and copy_result["test_users"] > 30
    json.dumps(copy_result, allow_nan=False)  # JSON-ready


def test_a_shuffled_renamed_copy_is_exact_for_order_free_models(parts, copy_result):
    train, _, test = parts
    shuffled = train.subset(np.random.default_rng(1).permutation(train.n_users))
    shuffled.users = np.array([f"synth-{i:07d}" for i in range(train.n_users)])
    out = tstr(train, shuffled, test, params=FAST)
    for name in ("ease", "itemknn", "rp3beta", "most-popular"):  # sums over users: order does not matter
        assert out["models"][name]["ratio"] == {m: 1.0 for m in METRICS}, name
    # Mult-VAE shuffles its batches by user position: another order is another (close) model
    assert 0.8 < out["models"]["multvae"]["ratio"][METRICS[0]] < 1.25
    assert out["models"]["ease"]["real"] == copy_result["models"]["ease"]["real"]  # real side unchanged


def test_uniform_random_profiles_lose_the_personal_signal(parts):
    train, _, test = parts
    out = tstr(train, sampled(train, np.ones(train.n_items)), test, params=FAST)
    for name in PERSONAL:
        assert out["models"][name]["ratio"][METRICS[0]] < 0.5, name


def test_a_popularity_sampler_keeps_most_popular_but_not_the_personal_models(parts):
    train, _, test = parts
    pop = np.asarray(train.union().sum(0)).ravel() + 0.1
    out = tstr(train, sampled(train, pop), test, params=FAST)
    ratio = {name: row["ratio"][METRICS[0]] for name, row in out["models"].items()}
    assert ratio["most-popular"] > 0.85
    for name in PERSONAL:
        assert ratio[name] < 0.8, name


def test_tuning_reads_the_train_users_only(parts):
    train, holdout, test = parts
    a = tstr(train, train, test, models=("ease", "itemknn"), tune=True, max_trials=3)
    b = tstr(train, train, holdout, models=("ease", "itemknn"), tune=True, max_trials=3)
    assert a["hyperparameters"].startswith("tuned")
    assert {n: r["params"] for n, r in a["models"].items()} == {n: r["params"] for n, r in b["models"].items()}


def test_tstr_refuses_bad_input_in_one_line(parts):
    train, _, test = parts
    other = Profiles(train.users, np.array([f"x{i}" for i in range(train.n_items)]), dict(train.actions))
    with pytest.raises(DataError, match="synthetic profiles use 200 item\\(s\\) outside the real catalogue"):
        tstr(train, other, test)
    with pytest.raises(DataError, match="no action 'buy'"):
        tstr(train, train, test, action="buy")
    with pytest.raises(ValueError, match="unknown recommender\\(s\\) \\['svd'\\]"):
        tstr(train, train, test, models=("ease", "svd"))
    with pytest.raises(ValueError, match="\\['bpr'\\] cannot fold in users unseen at fit"):
        tstr(train, train, test, models=("ease", "bpr"))
    with pytest.raises(ValueError, match="ease has no hyperparameter\\(s\\) \\['lambda'\\]"):
        tstr(train, train, test, models=("ease",), params={"ease": {"lambda": 3.0}})


@pytest.fixture(scope="module")
def augmented(parts):
    train, _, test = parts
    return {m: augmentation(train, train, test=test, seeds=3, m=m) for m in (0, 5)}


def test_adding_nothing_changes_nothing(augmented):
    for name, by_method in augmented[0]["models"].items():
        for method, row in by_method.items():
            assert (row["mean_delta"], row["std_delta"], row["p_value"]) == (0.0, 0.0, 1.0), (name, method)
            assert row["recall"] == row["base_recall"]


def test_augmentation_reports_every_method_with_its_test(augmented):
    out = augmented[5]
    assert list(out["models"]) == ["ease", "itemknn"]
    for name, by_method in out["models"].items():
        assert list(by_method) == list(AUGMENT_METHODS)
        for method, row in by_method.items():
            assert set(row) == {"mean_delta", "std_delta", "p_value", "n_users", "n_pairs", "recall", "base_recall"}
            assert row["n_users"] > 5 and row["n_pairs"] >= row["n_users"]
            assert 0.0 <= row["p_value"] <= 1.0
        # every method adds items, so each one moves some user's recall
        assert any(r["mean_delta"] != 0.0 or r["std_delta"] != 0.0 for r in by_method.values()), name
    assert out["scored"] == "test users" and "Wilcoxon" in out["test"]
    json.dumps(out, allow_nan=False)


def test_augmentation_refuses_when_no_user_is_sparse(parts):
    train, _, test = parts
    dense = train.subset(np.flatnonzero(train.union().getnnz(1) >= 12))
    with pytest.raises(DataError, match="no real user has 1 to 5 training items and a held-out item"):
        augmentation(dense, train, seeds=1)
    other = Profiles(train.users, train.items[::-1].copy(), dict(train.actions))  # same items, other order: fine
    augmentation(train, other, test=test, seeds=1, m=1, models=("itemknn",))
    with pytest.raises(DataError, match="outside the real catalogue"):
        augmentation(train, Profiles(train.users, np.array([f"{i}x" for i in train.items]), dict(train.actions)), test=test)

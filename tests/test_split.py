"""split(): seeded, pair-level, per-method guarantees."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedgan.data.schema import DataError, validate
from feedgan.data.split import METHODS, TEST, TEST_INPUT, TRAIN, VALID, VALID_INPUT, split

ALL = list(METHODS)
SEEDED = ["random", "by-user", "predefined"]  # methods whose output depends on the seed by design


@pytest.fixture(scope="module")
def inter():
    """A log where many pairs repeat with several actions (so pair-level splitting matters)."""
    from conftest import random_log

    raw = random_log(n_users=40, n_items=30, n_rows=900, seed=3)
    rng = np.random.default_rng(4)
    raw["part"] = np.where(rng.random(len(raw)) < 0.75, "train", "test")
    return validate(raw)


@pytest.fixture(scope="module")
def inter_predef(inter):
    """Predefined split whose parts are pair-consistent (a pair's rows share one part)."""
    f = inter.frame
    key = f["user"].to_numpy() * 1000 + f["item"].to_numpy()
    is_test = (key * 2654435761 % 97) < 25
    return inter.with_frame(f.assign(part=pd.Categorical(np.where(is_test, "test", "train"),
                                                         categories=["train", "valid", "test"])))


def _codes(inter, inter_predef, method, **kw):
    return split(inter_predef if method == "predefined" else inter, method, **kw)


def _pair_codes(frame, codes):
    """{(user, item): set of codes}."""
    df = pd.DataFrame({"u": frame["user"].to_numpy(), "i": frame["item"].to_numpy(), "c": codes})
    return df.groupby(["u", "i"])["c"].agg(lambda s: set(s.tolist()))


@pytest.mark.parametrize("method", ALL)
def test_deterministic_under_seed(inter, inter_predef, method):
    a = _codes(inter, inter_predef, method, seed=7)
    b = _codes(inter, inter_predef, method, seed=7)
    assert a.dtype == np.int8 and len(a) == len(inter)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", SEEDED)
def test_different_seed_differs(inter, inter_predef, method):
    a = _codes(inter, inter_predef, method, seed=1)
    b = _codes(inter, inter_predef, method, seed=2)
    assert (a != b).any()


def test_row_order_does_not_matter_for_temporal(inter):
    perm = np.random.default_rng(0).permutation(len(inter))
    shuffled = inter.with_frame(inter.frame.iloc[perm])
    np.testing.assert_array_equal(split(shuffled, "temporal")[np.argsort(perm)], split(inter, "temporal"))


@pytest.mark.parametrize("method", ALL)
def test_pair_level(inter, inter_predef, method):
    src = inter_predef if method == "predefined" else inter
    codes = _codes(inter, inter_predef, method, seed=5)
    per_pair = _pair_codes(src.frame, codes)
    assert (per_pair.map(len) == 1).all(), "a (user, item) pair was split across parts"
    # and the log does have pairs with several rows, so the check above is not vacuous
    assert src.frame.duplicated(["user", "item"]).sum() > 50


@pytest.mark.parametrize("method, valid, test", [("random", 0.1, 0.2), ("random", 0.2, 0.3),
                                                 ("temporal", 0.1, 0.2), ("temporal", 0.25, 0.25)])
def test_fractions_roughly_respected(inter, method, valid, test):
    codes = split(inter, method, valid=valid, test=test, seed=0)
    pairs = _pair_codes(inter.frame, codes).map(lambda s: next(iter(s)))
    share = np.bincount(pairs.to_numpy().astype(int), minlength=3) / len(pairs)
    assert abs(share[VALID] - valid) < 0.06
    assert abs(share[TEST] - test) < 0.06
    assert set(np.unique(codes)) <= {TRAIN, VALID, TEST}


def test_by_user_fractions(inter):
    codes = split(inter, "by-user", valid=0.2, test=0.3, target=0.25, seed=0)
    role = pd.Series(codes).groupby(inter.frame["user"].to_numpy()).agg(lambda s: set(s.tolist()))
    n = len(role)
    n_test = role.map(lambda s: bool(s & {TEST, TEST_INPUT})).sum()
    n_valid = role.map(lambda s: bool(s & {VALID, VALID_INPUT})).sum()
    assert n_test == round(0.3 * n) and n_valid == round(0.2 * n)
    held = np.isin(codes, [TEST, TEST_INPUT, VALID, VALID_INPUT])
    tgt = np.isin(codes[held], [TEST, VALID]).mean()
    assert 0.1 < tgt < 0.4


@pytest.mark.parametrize("method", ["random", "leave-last-out"])
def test_every_user_keeps_a_train_pair(inter, method):
    codes = split(inter, method, valid=0.3, test=0.4, seed=0)
    has_train = pd.Series(codes == TRAIN).groupby(inter.frame["user"].to_numpy()).any()
    assert has_train.all()
    assert (codes != TRAIN).sum() > 0


def test_random_user_with_one_pair_keeps_it_in_train():
    inter = validate(pd.DataFrame({"user": [1, 1, 2, 2, 2, 2], "item": [5, 5, 1, 2, 3, 4],
                                   "action": ["view", "like", "view", "view", "view", "view"]}))
    codes = split(inter, "random", valid=0.3, test=0.4, seed=0)
    assert codes[:2].tolist() == [TRAIN, TRAIN]


def test_leave_last_out_hand_example():
    # user 1: pairs first seen at 10 (a), 20 (b), 30 (c), 40 (d); d is test, c valid.
    # pair (1, a) has a later "like" at 50, but a pair's time is its *first* timestamp (10).
    # user 2 has only 2 pairs: holding out 2 would leave no training pair, so both stay train.
    inter = validate(pd.DataFrame({
        "user":      [1,  1,  1,  1,  1,  2,  2],
        "item":      ["a", "b", "c", "d", "a", "a", "b"],
        "action":    ["view", "view", "view", "view", "like", "view", "view"],
        "timestamp": [10, 20, 30, 40, 50, 5, 6],
    }))
    codes = split(inter, "leave-last-out", seed=0)
    assert codes.tolist() == [TRAIN, TRAIN, VALID, TEST, TRAIN, TRAIN, TRAIN]
    assert split(inter, "leave-last-out", valid=0, seed=0).tolist() == [TRAIN, TRAIN, TRAIN, TEST, TRAIN,
                                                                        TRAIN, TEST]


def test_leave_last_out_on_random_log(inter):
    codes = split(inter, "leave-last-out", seed=0)
    f = inter.frame.assign(code=codes)
    first = f.groupby(["user", "item"]).agg(ts=("timestamp", "min"), code=("code", "first")).reset_index()
    for _, g in first.groupby("user"):
        if len(g) < 3:
            assert (g["code"] == TRAIN).all()
            continue
        g = g.sort_values("ts")
        assert (g["code"] == TEST).sum() == 1 and (g["code"] == VALID).sum() == 1
        assert g["code"].iloc[-1] == TEST and g["code"].iloc[-2] == VALID
        assert (g["code"].iloc[:-2] == TRAIN).all()


def test_temporal_test_after_train(inter):
    codes = split(inter, "temporal", valid=0.1, test=0.2)
    f = inter.frame.assign(code=codes)
    pair = f.groupby(["user", "item"]).agg(ts=("timestamp", "min"), code=("code", "first"))
    tr, va, te = (pair.loc[pair["code"] == c, "ts"] for c in (TRAIN, VALID, TEST))
    assert len(tr) and len(va) and len(te)
    assert te.min() >= tr.max()
    assert te.min() >= va.max()
    assert va.min() >= tr.max()


def test_temporal_hand_example():
    # ten pairs at times 1..10: test=0.2 -> the last two, valid=0.2 -> the two before
    inter = validate(pd.DataFrame({"user": np.arange(10) % 3, "item": np.arange(10),
                                   "timestamp": np.arange(1, 11)}))
    codes = split(inter, "temporal", valid=0.2, test=0.2)
    assert codes.tolist() == [TRAIN] * 6 + [VALID] * 2 + [TEST] * 2


def test_by_user_roles(inter):
    codes = split(inter, "by-user", valid=0.2, test=0.2, target=0.3, seed=0)
    users = inter.frame["user"].to_numpy()
    for u in np.unique(users):
        c = set(codes[users == u].tolist())
        # each user has exactly one role: train, held-out valid, held-out test
        assert c <= {TRAIN} or c <= {VALID, VALID_INPUT} or c <= {TEST, TEST_INPUT}, (u, c)
    assert {TRAIN, VALID, TEST, VALID_INPUT, TEST_INPUT} <= set(np.unique(codes).tolist())
    # held-out users with >= 2 pairs keep a fold-in history
    for target, inp in ((VALID, VALID_INPUT), (TEST, TEST_INPUT)):
        tgt_users = np.unique(users[codes == target])
        assert np.isin(tgt_users, users[codes == inp]).all()


def test_predefined(inter_predef):
    part = inter_predef.frame["part"].astype(str).to_numpy()
    codes = split(inter_predef, "predefined", valid=0.2, seed=0)
    assert 0.1 < (part == "test").mean() < 0.5
    assert (codes[part == "test"] == TEST).all()
    assert (codes[part == "train"] != TEST).all()
    assert (codes[part == "train"] == VALID).sum() > 0
    # validation is cut per user from train: every user with train rows keeps some
    users = inter_predef.frame["user"].to_numpy()
    for u in np.unique(users[part == "train"]):
        assert (codes[(users == u) & (part == "train")] == TRAIN).any()


def test_predefined_keeps_shipped_valid_and_valid_zero(inter_predef):
    part = inter_predef.frame["part"].astype(str).to_numpy()
    codes0 = split(inter_predef, "predefined", valid=0.0)
    assert codes0.tolist() == np.where(part == "test", TEST, TRAIN).tolist()
    f = inter_predef.frame.copy()
    f["part"] = pd.Categorical(np.where(np.arange(len(f)) % 10 == 0, "valid", part),
                               categories=["train", "valid", "test"])
    codes = split(inter_predef.with_frame(f), "predefined", valid=0.3)
    expect = {"train": TRAIN, "valid": VALID, "test": TEST}
    assert codes.tolist() == [expect[p] for p in f["part"].astype(str)]


def test_predefined_needs_parts(log_inter):
    with pytest.raises(DataError, match="part"):
        split(log_inter, "predefined")


@pytest.mark.parametrize("method", ["leave-last-out", "temporal"])
def test_time_methods_need_timestamps(make_log, method):
    inter = validate(make_log(timestamps=False), source="nots.csv")
    with pytest.raises(DataError) as e:
        split(inter, method)
    assert "timestamp" in str(e.value) and "nots.csv" in str(e.value) and "fix" in str(e.value)
    split(inter, "random")  # the others work
    split(inter, "by-user")


@pytest.mark.parametrize("valid, test", [(-0.1, 0.2), (0.5, 0.5), (0.1, 1.0), (0.6, 0.6), (1.0, 0.0)])
def test_bad_fractions(log_inter, valid, test):
    with pytest.raises(DataError, match="fraction"):
        split(log_inter, "random", valid=valid, test=test)


def test_unknown_method(log_inter):
    with pytest.raises(DataError) as e:
        split(log_inter, "kfold")
    assert "'kfold'" in str(e.value) and "leave-last-out" in str(e.value)

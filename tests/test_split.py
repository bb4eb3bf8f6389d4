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


# -- a target action --------------------------------------------------------------------------------
T0 = 1_600_000_000
HISTORY = (TRAIN, VALID_INPUT, TEST_INPUT)  # the parts a model reads as a user's history


def funnel_log(n_users: int = 40, n_items: int = 50, seed: int = 0) -> pd.DataFrame:
    """A raw funnel log: every like has a view before it, every share a like (and so a view)
    before it; some pairs have a second view, now and then after the like. A ``part`` column
    cuts the log by time (the latest ~20% of rows are the test file), so a pair's rows can sit
    in different files, as in a real dump."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, int(rng.integers(12, 30)), replace=False):
            t = T0 + int(rng.integers(0, 100_000))
            rows.append((u, int(i), "view", t))
            if rng.random() < 0.2:
                rows.append((u, int(i), "view", t + int(rng.integers(1, 20_000))))
            if rng.random() < 0.5:
                t_like = t + int(rng.integers(1, 5_000))
                rows.append((u, int(i), "like", t_like))
                if rng.random() < 0.4:
                    rows.append((u, int(i), "share", t_like + int(rng.integers(1, 5_000))))
    frame = pd.DataFrame(rows, columns=["user", "item", "action", "timestamp"])
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # row order carries nothing
    frame["part"] = np.where(frame["timestamp"] >= frame["timestamp"].quantile(0.8), "test", "train")
    return frame


@pytest.fixture(scope="module")
def funnel():
    return validate(funnel_log())


def _target_view(inter, codes, target):
    """Per row: its pair, whether it is a target row, and the pair's held-out code (-1: none)."""
    f = inter.frame
    pair = pd.factorize(pd.MultiIndex.from_arrays([f["user"].to_numpy(), f["item"].to_numpy()]))[0]
    is_t = (f["action"] == target).to_numpy()
    held = np.full(pair.max() + 1, -1)
    t_rows = np.flatnonzero(is_t & np.isin(codes, (VALID, TEST)))
    held[pair[t_rows]] = codes[t_rows]
    return pair, is_t, held[pair]


@pytest.mark.parametrize("aux_in_train", [True, False])
@pytest.mark.parametrize("target", ["like", "share"])
@pytest.mark.parametrize("method", ALL)
def test_target_split_no_leakage(funnel, method, target, aux_in_train):
    codes = split(funnel, method, seed=3, target_action=target, aux_in_train=aux_in_train)
    assert codes.dtype == np.int8 and len(codes) == len(funnel)
    pair, is_t, held = _target_view(funnel, codes, target)
    assert (held >= 0).any() and (is_t & (held < 0)).any(), "the log must have held-out and kept target pairs"
    # a held-out pair's target rows are all in its one held-out part (and none in any history)
    np.testing.assert_array_equal(codes[is_t & (held >= 0)], held[is_t & (held >= 0)])
    assert not np.isin(codes[held >= 0][is_t[held >= 0]], HISTORY).any()
    # a held-out test pair's target row is not in valid either (valid is part of the test history)
    assert not ((held == TEST) & is_t & (codes == VALID)).any()
    aux_of_held = ~is_t & (held >= 0)
    assert aux_of_held.any()
    if not aux_in_train:
        # every row of a held-out pair goes with its target row
        np.testing.assert_array_equal(codes[aux_of_held], held[aux_of_held])
    elif method in ("random", "leave-last-out"):
        assert (codes[aux_of_held] == TRAIN).all()
    elif method == "by-user":
        part_input = np.where(held == VALID, VALID_INPUT, TEST_INPUT)
        np.testing.assert_array_equal(codes[aux_of_held], part_input[aux_of_held])


@pytest.mark.parametrize("aux_in_train", [True, False])
@pytest.mark.parametrize("method", ["random", "leave-last-out", "by-user"])
def test_target_split_holds_out_only_target_pairs(funnel, method, aux_in_train):
    codes = split(funnel, method, seed=4, target_action="like", aux_in_train=aux_in_train)
    pair, is_t, held = _target_view(funnel, codes, "like")
    out = np.isin(codes, (VALID, TEST))
    # nothing of a pair without a held-out like is held out: not a view, not a share
    assert not (out & (held < 0)).any()
    # and with aux in train, no row of any other action is held out at all
    if aux_in_train:
        assert (funnel.frame["action"].to_numpy()[out] == "like").all()
    else:
        assert (~is_t & out).any()  # views and shares did go with their likes


def test_target_split_by_user_roles(funnel):
    codes = split(funnel, "by-user", valid=0.2, test=0.2, target=0.3, seed=0, target_action="like")
    users = funnel.frame["user"].to_numpy()
    roles = {TRAIN: 0, VALID: 0, TEST: 0}
    for u in np.unique(users):
        c = set(codes[users == u].tolist())
        assert c <= {TRAIN} or c <= {VALID, VALID_INPUT} or c <= {TEST, TEST_INPUT}, (u, c)
        roles[min(c)] += 1
    assert roles[VALID] > 0 and roles[TEST] > 0
    # a held-out user's fold-in part holds their views (and kept likes), never a held-out like
    is_like = (funnel.frame["action"] == "like").to_numpy()
    assert ((codes == TEST_INPUT) & ~is_like).any() and ((codes == TEST_INPUT) & is_like).any()
    assert (~is_like[np.isin(codes, (VALID, TEST))]).sum() == 0


@pytest.mark.parametrize("aux_in_train", [True, False])
def test_target_split_temporal_aux_follow_their_time(funnel, aux_in_train):
    codes = split(funnel, "temporal", valid=0.1, test=0.2, target_action="like", aux_in_train=aux_in_train)
    pair, is_t, held = _target_view(funnel, codes, "like")
    ts = funnel.frame["timestamp"].to_numpy()
    cut_valid = ts[is_t & np.isin(codes, (VALID, TEST))].min()
    cut_test = ts[is_t & (codes == TEST)].min()
    assert cut_valid < cut_test
    # kept likes are all before the first held-out one; held-out ones cut by time
    assert ts[is_t & (codes == TRAIN)].max() < cut_valid
    assert ts[is_t & (codes == VALID)].max() < cut_test
    by_time = np.where(ts >= cut_test, TEST, np.where(ts >= cut_valid, VALID, TRAIN))
    free = ~is_t if aux_in_train else ~is_t & (held < 0)  # rows that follow their own time
    np.testing.assert_array_equal(codes[free], by_time[free])
    # the log has aux rows of held-out pairs before the cut (kept in train) and after it
    aux_held = ~is_t & (held >= 0)
    assert (aux_held & (ts < cut_valid)).any() and (aux_held & (ts >= cut_valid)).any()
    if aux_in_train:
        assert ((codes == TRAIN) & aux_held).any()
    else:
        assert not ((codes == TRAIN) & aux_held).any()


@pytest.mark.parametrize("aux_in_train", [True, False])
def test_target_split_predefined_follows_files(funnel, aux_in_train):
    codes = split(funnel, "predefined", valid=0.1, seed=0, target_action="like", aux_in_train=aux_in_train)
    part = funnel.frame["part"].astype(str).to_numpy()
    pair, is_t, held = _target_view(funnel, codes, "like")
    # likes: the test file is test, valid is cut from train-file likes
    assert (codes[is_t & (part == "test")] == TEST).all()
    assert set(np.unique(codes[is_t & (part == "train")]).tolist()) == {TRAIN, VALID}
    free = ~is_t if aux_in_train else ~is_t & (held < 0)
    own = np.where(part == "test", TEST, TRAIN)
    np.testing.assert_array_equal(codes[free], own[free])
    # a held-out like whose view is in the train file: the view is history only with aux in train
    split_pairs = ~is_t & (held == TEST) & (part == "train")
    assert split_pairs.any()
    assert ((codes[split_pairs] == TRAIN).all() if aux_in_train else (codes[split_pairs] == TEST).all())


@pytest.mark.parametrize("valid, test", [(0.1, 0.2), (0.2, 0.3)])
def test_target_split_random_fractions(funnel, valid, test):
    codes = split(funnel, "random", valid=valid, test=test, seed=0, target_action="like")
    is_t = (funnel.frame["action"] == "like").to_numpy()
    share = np.bincount(codes[is_t], minlength=3) / is_t.sum()
    assert abs(share[VALID] - valid) < 0.05
    assert abs(share[TEST] - test) < 0.05
    assert set(np.unique(codes).tolist()) == {TRAIN, VALID, TEST}


@pytest.mark.parametrize("aux_in_train", [True, False])
@pytest.mark.parametrize("method", ALL)
def test_target_split_deterministic(funnel, method, aux_in_train):
    kw = dict(target_action="like", aux_in_train=aux_in_train)
    a = split(funnel, method, seed=11, **kw)
    np.testing.assert_array_equal(a, split(funnel, method, seed=11, **kw))
    # the row order of the log does not matter either (pairs are numbered in sorted id order)
    perm = np.random.default_rng(0).permutation(len(funnel))
    b = split(funnel.with_frame(funnel.frame.iloc[perm]), method, seed=11, **kw)
    np.testing.assert_array_equal(b[np.argsort(perm)], a)
    if method in SEEDED:
        assert (split(funnel, method, seed=12, **kw) != a).any()


def test_target_split_unknown_action(funnel):
    f = funnel.frame.copy()
    f = pd.concat([f, f.iloc[:5].assign(action="impression")], ignore_index=True)
    inter = validate(f, source="funnel.csv")
    with pytest.raises(DataError) as e:
        split(inter, "random", target_action="buy")
    msg = str(e.value)
    assert "'buy'" in msg and "funnel.csv" in msg
    assert all(a in msg for a in ("view", "like", "share"))
    assert "one of" in msg and "impression" not in msg.split("one of", 1)[1]  # not a target to offer


def test_target_split_hand_example_leave_last_out():
    # user 1: likes x (t=2) and y (t=4): y, the later, is test; z was only viewed
    # user 2: one like only: nothing held out
    # user 3: likes w (t=1, no view) and x (t=3): x is test, with its view and share
    frame = pd.DataFrame({
        "user":      [1,      1,      1,      1,      1,      2,      2,      2,      3,      3,      3,      3],
        "item":      ["x",    "x",    "y",    "y",    "z",    "x",    "x",    "w",    "w",    "x",    "x",    "x"],
        "action":    ["view", "like", "view", "like", "view", "view", "like", "view", "like", "view", "like", "share"],
        "timestamp": [1,      2,      3,      4,      5,      1,      6,      2,      1,      2,      3,      4],
    })
    inter = validate(frame)
    T, V = TRAIN, TEST
    assert split(inter, "leave-last-out", valid=0, target_action="like").tolist() == \
        [T, T, T, V, T, T, T, T, T, T, V, T]
    assert split(inter, "leave-last-out", valid=0, target_action="like", aux_in_train=False).tolist() == \
        [T, T, V, V, T, T, T, T, T, V, V, V]
    # on shares: user 3 has one share pair only, so nothing is held out at all
    assert (split(inter, "leave-last-out", valid=0, target_action="share") == TRAIN).all()
    # without a target the unit is any pair: user 1's latest pair is z (a view) and user 2's w
    assert split(inter, "leave-last-out", valid=0).tolist()[4] == TEST


def test_target_split_hand_example_temporal():
    # ten likes at t = 10 ... 100, one per item a..j, over three users. valid=test=0.2 of the
    # pairs: test = likes at 90, 100 (cut 90), valid = likes at 70, 80 (cut 70).
    likes = pd.DataFrame({"user": np.arange(10) % 3, "item": list("abcdefghij"), "action": "like",
                          "timestamp": np.arange(10, 101, 10)})
    views = pd.DataFrame({
        "user":      [2,   0,   0,   0,   1,   1,   2],
        "item":      ["i", "g", "a", "j", "h", "k", "k"],
        "timestamp": [50,  75,  95,  95,  92,  5,   85],
    }).assign(action="view")
    # expected code per view, with aux in train / not:
    #   i: view of a test like at 50, before the cut  -> train / test
    #   g: view of a valid like at 75, after cut 70   -> valid / valid
    #   a: view at 95 of a like kept in train (t=10)  -> test  / test   (its own time)
    #   j: view at 95 of a test like                  -> test  / test
    #   h: view at 92 of a valid like (t=80)          -> test  / valid  (its own time / its pair)
    #   k: views of an item never liked at 5 and 85   -> train, valid   (their own time)
    inter = validate(pd.concat([likes, views], ignore_index=True))
    like_codes = [TRAIN] * 6 + [VALID] * 2 + [TEST] * 2
    kw = dict(valid=0.2, test=0.2, target_action="like")
    assert split(inter, "temporal", **kw).tolist() == like_codes + [TRAIN, VALID, TEST, TEST, TEST, TRAIN, VALID]
    assert split(inter, "temporal", aux_in_train=False, **kw).tolist() == \
        like_codes + [TEST, VALID, TEST, TEST, VALID, TRAIN, VALID]


def test_target_split_hand_example_predefined():
    # user 0 liked x in the test file (its view in train) and y in train; viewed z in the test file.
    # user 1 liked x in train and viewed it again in the test file.
    frame = pd.DataFrame({
        "user":   [0,       0,      0,       0,       0,      1,       1],
        "item":   ["x",     "x",    "y",     "y",     "z",    "x",     "x"],
        "action": ["view",  "like", "view",  "like",  "view", "like",  "view"],
        "part":   ["train", "test", "train", "train", "test", "train", "test"],
    })
    inter = validate(frame)
    kw = dict(valid=0.0, target_action="like")
    assert split(inter, "predefined", **kw).tolist() == [TRAIN, TEST, TRAIN, TRAIN, TEST, TRAIN, TEST]
    assert split(inter, "predefined", aux_in_train=False, **kw).tolist() == \
        [TEST, TEST, TRAIN, TRAIN, TEST, TRAIN, TEST]


def test_target_split_predefined_files_decide_even_for_a_like_in_both():
    frame = pd.DataFrame({"user": [0, 0, 0, 0, 1], "item": ["x", "x", "x", "y", "y"],
                          "action": ["view", "like", "like", "like", "like"],
                          "part": ["train", "train", "test", "train", "train"]})
    codes = split(validate(frame), "predefined", valid=0.0, target_action="like")
    # as without a target, the files decide: a like shipped in both files stays in both
    assert codes[2] == TEST and codes[1] == TRAIN and codes[0] == TRAIN

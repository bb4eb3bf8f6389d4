"""Dataset: stable id maps, per-action matrices, history, stats, save/load, social graph."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from feedgan.data.dataset import DataConfig, Dataset, IdMap, prepare
from feedgan.data.schema import DataError, validate
from feedgan.data.split import TEST, TRAIN, VALID, split


def _dense(m) -> np.ndarray:
    return np.asarray(m.toarray())


@pytest.fixture
def small():
    """Hand-sized log with string ids, two actions, weights, a split and a social graph."""
    frame = pd.DataFrame({
        "user":   ["bob", "amy", "cat", "amy", "bob", "cat", "amy"],
        "item":   ["x",   "y",   "x",   "z",   "y",   "z",   "x"],
        "action": ["like", "view", "view", "like", "view", "like", "view"],
        "weight": [2.0,   1.0,   1.0,   3.0,   4.0,   5.0,   1.0],
    })
    social = pd.DataFrame({"src": ["amy", "dan", "bob"], "dst": ["bob", "eve", "amy"], "weight": [1, 2, 1]})
    inter = validate(frame, social=social, source="small.csv")
    codes = np.array([TRAIN, TRAIN, TRAIN, VALID, TEST, TRAIN, TEST], dtype=np.int8)
    return inter, codes, Dataset.from_interactions(inter, codes)


# -- id maps --------------------------------------------------------------------------------------
def test_id_maps_sorted(small):
    _, _, ds = small
    # users also include dan and eve, who only appear in the social graph
    assert ds.user_ids.values.tolist() == ["amy", "bob", "cat", "dan", "eve"]
    assert ds.item_ids.values.tolist() == ["x", "y", "z"]
    assert (ds.n_users, ds.n_items) == (5, 3)


def test_id_maps_stable_under_row_shuffling(log_inter):
    a = Dataset.from_interactions(log_inter)
    perm = np.random.default_rng(0).permutation(len(log_inter))
    b = Dataset.from_interactions(log_inter.with_frame(log_inter.frame.iloc[perm]))
    np.testing.assert_array_equal(a.user_ids.values, b.user_ids.values)
    np.testing.assert_array_equal(a.item_ids.values, b.item_ids.values)
    assert np.all(np.diff(a.user_ids.values) > 0)
    for act in a.actions:
        assert (a.matrix("train", act) != b.matrix("train", act)).nnz == 0


def test_int_id_round_trip():
    m = IdMap.from_values(np.array([42, 7, 100, 7]), "user")
    assert m.values.tolist() == [7, 42, 100] and m.values.dtype == np.int64
    idx = m.index([100, 7, 42])
    assert idx.tolist() == [2, 0, 1]
    assert m.raw(idx).tolist() == [100, 7, 42]
    # ids typed as text against an int map
    assert m.index(["42"]).tolist() == [1]
    assert m.index("100").tolist() == [2]


def test_str_id_round_trip():
    m = IdMap(np.array(["alice", "bob", "carol"]), "user")
    assert m.index(["carol", "alice"]).tolist() == [2, 0]
    assert m.raw([2, 0]).tolist() == ["carol", "alice"]
    m2 = IdMap(np.array(["1", "2", "10"]), "item")  # numeric-looking text ids stay text
    assert m2.index([10]).tolist() == [2]


def test_unknown_id_raises_key_error_naming_it():
    m = IdMap(np.array([1, 2, 3]), "user")
    with pytest.raises(KeyError) as e:
        m.index([2, 99])
    assert "99" in str(e.value) and "user" in str(e.value)
    with pytest.raises(KeyError, match="nobody"):
        m.index(["nobody"])
    s = IdMap(np.array(["a", "b"]), "item")
    with pytest.raises(KeyError, match="zz"):
        s.index(["a", "zz"])


def test_missing_ignore_gives_minus_one():
    m = IdMap(np.array([1, 2, 3]), "user")
    assert m.index([3, 99, 1], missing="ignore").tolist() == [2, -1, 0]
    assert m.index(["x", "2", "2.5"], missing="ignore").tolist() == [-1, 1, -1]
    s = IdMap(np.array(["a", "b"]), "item")
    assert s.index(["b", "q"], missing="ignore").tolist() == [1, -1]


def test_id_map_rejects_duplicates():
    with pytest.raises(DataError):
        IdMap(np.array([1, 2, 1]))


def test_id_map_from_plain_strings():
    m = IdMap.from_values(["b", "a", "b"], "user")
    assert m.values.tolist() == ["a", "b"]


def test_id_map_from_object_strings():
    m = IdMap.from_values(pd.Series(["b", "a", "b"], dtype=object), "user")
    assert m.values.tolist() == ["a", "b"]


# -- matrices ---------------------------------------------------------------------------------------
def test_per_action_matrices_carry_weights(small):
    _, _, ds = small
    assert ds.actions == ["view", "like"]
    # rows amy, bob, cat, dan, eve; columns x, y, z; train rows only:
    # bob-x like 2, amy-y view 1, cat-x view 1, cat-z like 5
    like = ds.matrix("train", "like")
    view = ds.matrix("train", "view")
    assert like.dtype == np.float32 and like.shape == (5, 3)
    np.testing.assert_array_equal(_dense(like), [[0, 0, 0], [2, 0, 0], [0, 0, 5], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(_dense(view), [[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(_dense(ds.matrix("valid", "like")),
                                  [[0, 0, 3], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(_dense(ds.matrix("test", "view")),
                                  [[1, 0, 0], [0, 4, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert ds.train is ds.parts["train"]
    with pytest.raises(KeyError, match="share"):
        ds.matrix("train", "share")
    with pytest.raises(KeyError, match="nope"):
        ds.matrix("nope")


def test_union_is_binary():
    # one pair with both a view (weight 3) and a like (weight 2): union gives 1, not 5
    inter = validate(pd.DataFrame({"user": [1, 1, 2], "item": [1, 1, 2], "action": ["view", "like", "like"],
                                   "weight": [3.0, 2.0, 7.0]}))
    ds = Dataset.from_interactions(inter)
    np.testing.assert_array_equal(_dense(ds.matrix("train")), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(_dense(ds.matrix("train", ["view"])), [[1, 0], [0, 0]])
    np.testing.assert_array_equal(_dense(ds.matrix("train", ["view", "like"])), [[1, 0], [0, 1]])
    assert ds.train.nnz == 2
    # asking for the union does not overwrite the stored weights
    np.testing.assert_array_equal(_dense(ds.matrix("train", "like")), [[2, 0], [0, 7]])


def test_codes_length_mismatch(small):
    inter, codes, _ = small
    with pytest.raises(ValueError):
        Dataset.from_interactions(inter, codes[:-1])


# -- history ----------------------------------------------------------------------------------------
def test_history(small):
    _, _, ds = small
    train, valid = _dense(ds.matrix("train")), _dense(ds.matrix("valid"))
    np.testing.assert_array_equal(_dense(ds.history("valid")), train)
    np.testing.assert_array_equal(_dense(ds.history("test")), np.minimum(train + valid, 1))
    assert _dense(ds.history("test")).sum() == train.sum() + valid.sum()  # disjoint here
    assert set(np.unique(ds.history("test").data)) == {1.0}
    # history must not alter the stored parts
    np.testing.assert_array_equal(_dense(ds.matrix("train")), train)


def test_history_with_by_user_input_parts(log_inter):
    codes = split(log_inter, "by-user", valid=0.2, test=0.2, target=0.3, seed=0)
    ds = Dataset.from_interactions(log_inter, codes)
    assert {"valid_input", "test_input"} <= set(ds.parts)
    tr, va = _dense(ds.matrix("train")), _dense(ds.matrix("valid"))
    vi, ti = _dense(ds.matrix("valid_input")), _dense(ds.matrix("test_input"))
    assert vi.sum() > 0 and ti.sum() > 0
    np.testing.assert_array_equal(_dense(ds.history("valid")), np.minimum(tr + vi, 1))
    np.testing.assert_array_equal(_dense(ds.history("test")), np.minimum(tr + va + ti, 1))
    # held-out test users: their history is exactly their fold-in input
    test_users = np.flatnonzero(_dense(ds.matrix("test")).sum(1) > 0)
    np.testing.assert_array_equal(_dense(ds.history("test"))[test_users], ti[test_users])
    assert tr[test_users].sum() == 0


def test_no_input_parts_without_by_user(log_inter):
    ds = Dataset.from_interactions(log_inter, split(log_inter, "random"))
    assert set(ds.parts) == {"train", "valid", "test"}


# -- stats ----------------------------------------------------------------------------------------
def test_stats(small):
    _, _, ds = small
    st = ds.stats()
    # 5 user ids, 2 of them only in the social graph: 3 users with interactions
    assert st["users"] == 3 and st["social_only_users"] == 2
    assert st["items"] == 3 and st["actions"] == ["view", "like"]
    assert st["parts"]["train"] == {"pairs": 4, "users": 3, "items": 3, "by_action": {"view": 2, "like": 2}}
    assert st["parts"]["valid"] == {"pairs": 1, "users": 1, "items": 1, "by_action": {"view": 0, "like": 1}}
    assert st["parts"]["test"] == {"pairs": 2, "users": 2, "items": 2, "by_action": {"view": 2, "like": 0}}
    # all 7 rows are distinct pairs: amy-x, amy-y, amy-z, bob-x, bob-y, cat-x, cat-z
    assert st["pairs"] == 7 and st["interactions"] == 7
    assert st["density"] == pytest.approx(7 / 9)  # over users with interactions
    assert st["by_action"] == {"view": 4, "like": 3}
    # degrees over users with any pair: amy 3, bob 2, cat 2
    assert st["user_degree"]["min"] == 2 and st["user_degree"]["max"] == 3
    assert st["user_degree"]["mean"] == pytest.approx(7 / 3)
    assert st["item_degree"]["max"] == 3  # x: bob, cat, amy
    assert st["social_edges"] == 3


# -- save / load ----------------------------------------------------------------------------------
def _assert_same(a: Dataset, b: Dataset):
    assert a.user_ids.values.tolist() == b.user_ids.values.tolist()
    assert a.item_ids.values.tolist() == b.item_ids.values.tolist()
    assert set(a.parts) == set(b.parts)
    for p in a.parts:
        assert list(a.parts[p].actions) == list(b.parts[p].actions)
        for act, m in a.parts[p].actions.items():
            m2 = b.parts[p].actions[act]
            assert m2.shape == m.shape
            np.testing.assert_array_equal(_dense(m), _dense(m2))


def test_save_load_round_trip_str_ids(small, tmp_path):
    _, _, ds = small
    ds.save(tmp_path / "ds")
    back = Dataset.load(tmp_path / "ds")
    _assert_same(ds, back)
    assert back.user_ids.index(["eve", "amy"]).tolist() == [4, 0]
    np.testing.assert_array_equal(_dense(back.social), _dense(ds.social))
    assert back.meta["source"] == "small.csv"


def test_save_load_round_trip_prepared(log_inter, tmp_path):
    ds = prepare(log_inter, DataConfig(split="by-user", k_core=2, seed=3))
    ds.save(tmp_path)
    back = Dataset.load(tmp_path)
    _assert_same(ds, back)
    assert back.user_ids.values.dtype.kind == "i"
    assert back.social is None
    assert back.meta["config"]["split"] == "by-user" and back.meta["config"]["seed"] == 3
    assert back.stats()["pairs"] == ds.stats()["pairs"]


def test_load_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no saved dataset"):
        Dataset.load(tmp_path / "none")


def _damage(folder, how):
    npz = folder / "dataset.npz"
    if how == "truncated":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif how == "not-a-zip":
        npz.write_bytes(b"hello")
    else:  # arrays that would index past the matrix: a column beyond n_items
        arrays = dict(np.load(npz))
        key = next(k for k in arrays if k.endswith("__indices") and len(arrays[k]))
        arrays[key] = arrays[key] + 10_000
        np.savez(npz, **arrays)


@pytest.mark.parametrize("how", ["truncated", "not-a-zip", "out-of-range"])
def test_load_damaged_dataset_names_the_file(small, tmp_path, how):
    from feedgan.io import ArtifactError
    _, _, ds = small
    ds.save(tmp_path / "ds")
    _damage(tmp_path / "ds", how)
    with pytest.raises(ArtifactError, match="dataset.npz"):
        Dataset.load(tmp_path / "ds")


def test_load_truncated_meta_names_the_file(small, tmp_path):
    from feedgan.io import ArtifactError
    _, _, ds = small
    ds.save(tmp_path / "ds")
    meta = tmp_path / "ds" / "dataset.json"
    meta.write_text(meta.read_text()[:20])
    with pytest.raises(ArtifactError, match="dataset.json"):
        Dataset.load(tmp_path / "ds")


# -- social graph ---------------------------------------------------------------------------------
def test_social_graph(small):
    _, _, ds = small
    assert isinstance(ds.social, sp.csr_matrix)
    assert ds.social.shape == (ds.n_users, ds.n_users) == (5, 5)
    u = ds.user_ids.index
    expect = np.zeros((5, 5))
    expect[u("amy")[0], u("bob")[0]] = 1
    expect[u("dan")[0], u("eve")[0]] = 2
    expect[u("bob")[0], u("amy")[0]] = 1
    np.testing.assert_array_equal(_dense(ds.social), expect)
    # dan and eve have no interactions but do have ids
    assert _dense(ds.matrix("train"))[u(["dan", "eve"])].sum() == 0


def test_social_only_users_with_int_ids():
    inter = validate(pd.DataFrame({"user": [5, 1], "item": [1, 1]}),
                     social=pd.DataFrame({"src": [5, 9], "dst": [0, 1]}))
    ds = Dataset.from_interactions(inter)
    assert ds.user_ids.values.tolist() == [0, 1, 5, 9]
    assert ds.social.shape == (4, 4) and ds.matrix().shape == (4, 1)


# -- prepare ----------------------------------------------------------------------------------------
def test_prepare_applies_config(make_log):
    raw = make_log(n_rows=300, seed=5)
    raw["weight"] = np.random.default_rng(5).integers(1, 6, len(raw))
    inter = validate(raw)
    ds = prepare(inter, DataConfig(actions=["like", "view"], positive_threshold=3, split="temporal"))
    assert ds.actions == ["view", "like"]
    notes = ds.meta["notes"]
    assert notes["below_threshold"] == int((inter.frame["action"].isin(["like", "view"])
                                            & (inter.frame["weight"] < 3)).sum())
    assert "duplicates_merged" in notes
    # implicit: every stored weight is a count of merged positives (>= 1)
    assert all((m.data >= 1).all() for m in ds.train.actions.values())


# -- a target action --------------------------------------------------------------------------------
def _funnel():
    from test_split import funnel_log

    return validate(funnel_log(n_users=30, seed=2).drop(columns="part"))


def test_prepare_with_target_action_aux_in_train(tmp_path):
    inter = _funnel()
    ds = prepare(inter, DataConfig(split="random", target_action="like", seed=1))
    assert ds.target_action == "like"
    assert sorted(ds.actions) == ["like", "share", "view"]
    test_like, test_view = ds.matrix("test", "like"), ds.matrix("test", "view")
    assert test_like.nnz > 0 and ds.matrix("valid", "like").nnz > 0
    assert test_view.nnz == 0 and ds.matrix("test", "share").nnz == 0
    # the held-out likes' views are in train, so in the (union) history of both parts ...
    held = _dense(test_like) > 0
    assert (_dense(ds.matrix("train", "view"))[held] > 0).all()
    assert (_dense(ds.history("test"))[held] > 0).all()
    # ... but never the like itself
    assert (_dense(ds.history("test", "like"))[held] == 0).all()
    assert (_dense(ds.history("valid", "like"))[_dense(ds.matrix("valid", "like")) > 0] == 0).all()
    # the target survives a save / load
    ds.save(tmp_path)
    assert Dataset.load(tmp_path).target_action == "like"


def test_prepare_with_target_action_aux_held_out():
    inter = _funnel()
    ds = prepare(inter, DataConfig(split="random", target_action="like", aux_in_train=False, seed=1))
    held = _dense(ds.matrix("test", "like")) > 0
    view = _dense(ds.matrix("test", "view")) > 0
    # every test like took its view along (the log is a funnel), and nothing else came with it
    assert held.sum() > 0
    np.testing.assert_array_equal(view, held)
    assert (_dense(ds.history("test"))[held] == 0).all()


def test_prepare_without_target_action():
    ds = prepare(_funnel(), DataConfig(split="random", seed=1))
    assert ds.target_action is None
    assert ds.matrix("test", "view").nnz > 0  # whole pairs held out, views with them
    assert Dataset.from_interactions(_funnel()).target_action is None


def test_part_matrix_leaves_exposures_out():
    frame = pd.DataFrame({"user": [0, 0, 1, 1], "item": [0, 1, 0, 1],
                          "action": ["impression", "view", "impression", "impression"]})
    ds = Dataset.from_interactions(validate(frame))
    np.testing.assert_array_equal(_dense(ds.matrix("train")), [[0, 1], [0, 0]])
    np.testing.assert_array_equal(_dense(ds.history("valid")), [[0, 1], [0, 0]])
    np.testing.assert_array_equal(_dense(ds.matrix("train", "impression")), [[1, 0], [1, 1]])
    assert ds.train.nnz == 1

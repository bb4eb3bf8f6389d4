"""Cleaning: implicit threshold, deduplication, k-core, action filter; notes record the cost."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedgan.data.clean import deduplicate, k_core, keep_actions, to_implicit
from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.schema import DataError, validate


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.assign(action=frame["action"].astype(str))
    return out.sort_values(["user", "item", "action"]).reset_index(drop=True)


# -- to_implicit ----------------------------------------------------------------------------------
def test_to_implicit_keeps_at_or_above_threshold():
    inter = validate(pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2],
                                   "weight": [5, 3, 4, 3.5, 1]}), source="r.csv")
    out = to_implicit(inter, 4)
    # weights 5 and 4 pass (>= 4); 3, 3.5 and 1 are removed
    assert out.frame[["user", "item"]].values.tolist() == [[1, 1], [2, 1]]
    assert (out.frame["weight"] == 1.0).all() and out.frame["weight"].dtype == np.float32
    assert out.notes["below_threshold"] == 3
    assert out.notes["positive_threshold"] == 4
    assert len(inter) == 5  # input untouched


def test_to_implicit_removing_everything_is_an_error():
    inter = validate(pd.DataFrame({"user": [1, 2], "item": [1, 2], "weight": [1, 2]}), source="r.csv")
    with pytest.raises(DataError) as e:
        to_implicit(inter, 3)
    assert "r.csv" in str(e.value) and "fix" in str(e.value)
    assert "2.0" in str(e.value)  # names the largest weight


# -- deduplicate ----------------------------------------------------------------------------------
@pytest.fixture
def dup_inter():
    return validate(pd.DataFrame({
        "user":      [1,   1,   1,   2,  2,  3, 1],
        "item":      [10,  10,  10,  20, 20, 30, 10],
        "action":    ["view", "view", "like", "view", "view", "view", "view"],
        "timestamp": [100, 300, 200, 50, 40, 10, 150],
        "weight":    [1.0, 5.0, 2.0, 3.0, 4.0, 1.0, 2.0],
    }))


# (1, 10, view) appears 3x (ts 100, 300, 150; weights 1, 5, 2) and (2, 20, view) 2x
# (ts 50, 40; weights 3, 4): 3 rows merged away in total.
@pytest.mark.parametrize("how, w_1_10, ts_1_10, w_2_20, ts_2_20", [
    ("sum", 1 + 5 + 2, 100, 3 + 4, 40),   # sum of weights, earliest timestamp
    ("max", 5.0, 100, 4.0, 40),           # largest weight, earliest timestamp
    ("last", 5.0, 300, 3.0, 50),          # latest row (ts 300 / ts 50), latest timestamp
    ("count", 3.0, 100, 2.0, 40),         # number of rows, earliest timestamp
])
def test_deduplicate(dup_inter, how, w_1_10, ts_1_10, w_2_20, ts_2_20):
    out = deduplicate(dup_inter, how)
    assert out.notes["duplicates_merged"] == 3
    f = _sorted(out.frame)
    assert len(f) == 4
    assert f[["user", "item", "action"]].values.tolist() == [
        [1, 10, "like"], [1, 10, "view"], [2, 20, "view"], [3, 30, "view"]]
    assert f["weight"].tolist() == [2.0, w_1_10, w_2_20, 1.0]
    assert f["timestamp"].tolist() == [200, ts_1_10, ts_2_20, 10]
    assert isinstance(out.frame["action"].dtype, pd.CategoricalDtype)
    assert out.actions == dup_inter.actions
    assert out.frame["weight"].dtype == np.float32
    assert out.frame["timestamp"].dtype == np.int64


def test_deduplicate_auto_keeps_the_best_rating_and_adds_up_counts():
    inter = validate(pd.DataFrame({
        "user":   [1, 1, 1, 1, 2],
        "item":   [7, 7, 8, 8, 7],
        "action": ["rate", "rate", "listen", "listen", "rate"],
        "weight": [5.0, 4.0, 30.0, 12.0, 3.0],
    }))
    out = deduplicate(inter)  # auto: a 5 and a 4 stay 5; 30 and 12 plays become 42
    f = _sorted(out.frame)
    assert f[["user", "item", "weight"]].values.tolist() == [[1, 7, 5.0], [1, 8, 42.0], [2, 7, 3.0]]
    assert out.notes["duplicates_merged"] == 2 and set(out.notes["dedup"].split(", ")) == {"rate: max", "listen: sum"}
    assert out.frame["weight"].dtype == np.float32
    assert deduplicate(inter, "sum").frame["weight"].max() == 42.0
    assert deduplicate(inter, "last").notes["dedup"] == "last"


def test_prepare_merges_repeated_ratings_by_max_unless_told():
    inter = validate(pd.DataFrame({"user": [1, 1, 2, 2], "item": [2, 2, 2, 3], "action": "rate",
                                   "part": ["train", "train", "train", "test"], "weight": [5.0, 4.0, 1.0, 3.0]}))

    def train(**kw):
        return prepare(inter, DataConfig(split="predefined", valid=0.0, **kw)).parts["train"]

    assert sorted(train().matrix("rate").data.tolist()) == [1.0, 5.0]  # not 5 + 4 = 9
    assert sorted(train(dedup="sum").matrix("rate").data.tolist()) == [1.0, 9.0]


def test_deduplicate_last_without_timestamps_uses_row_order():
    inter = validate(pd.DataFrame({"user": [1, 1, 1], "item": [2, 2, 2], "weight": [3.0, 1.0, 2.0]}))
    out = deduplicate(inter, "last")
    assert out.frame["weight"].tolist() == [2.0]
    assert out.notes["duplicates_merged"] == 2


def test_deduplicate_without_duplicates():
    inter = validate(pd.DataFrame({"user": [1, 2], "item": [1, 1], "action": ["view", "like"]}))
    out = deduplicate(inter)
    assert out.notes["duplicates_merged"] == 0
    assert len(out) == 2


def test_deduplicate_keeps_parts_apart():
    inter = validate(pd.DataFrame({"user": [1, 1, 1], "item": [2, 2, 2],
                                   "part": ["train", "test", "train"], "weight": [1.0, 2.0, 4.0]}))
    out = deduplicate(inter, "sum")
    assert out.notes["duplicates_merged"] == 1
    f = out.frame.assign(part=out.frame["part"].astype(str)).sort_values("part")
    assert f[["part", "weight"]].values.tolist() == [["test", 2.0], ["train", 5.0]]
    assert list(out.frame["part"].cat.categories) == ["train", "valid", "test"]


def test_deduplicate_unknown_method(dup_inter):
    with pytest.raises(DataError, match="fix"):
        deduplicate(dup_inter, "mean")


# -- k_core ---------------------------------------------------------------------------------------
def _degrees(frame):
    pairs = frame[["user", "item"]].drop_duplicates()
    return pairs["user"].value_counts(), pairs["item"].value_counts()


@pytest.mark.parametrize("seed, k_user, k_item", [(0, 3, None), (1, 4, 2), (2, 2, 5)])
def test_k_core_reaches_fixed_point(make_log, seed, k_user, k_item):
    # a skewed log so that one pass is not enough
    rng = np.random.default_rng(seed)
    n = 500
    raw = pd.DataFrame({"user": (rng.pareto(1.0, n) * 3).astype(int) % 80,
                        "item": (rng.pareto(1.0, n) * 3).astype(int) % 60,
                        "action": rng.choice(["view", "like"], n)})
    inter = validate(raw)
    out = k_core(inter, k_user, k_item)
    ki = k_user if k_item is None else k_item
    u_deg, i_deg = _degrees(out.frame)
    assert len(out) > 0
    assert u_deg.min() >= k_user and i_deg.min() >= ki
    assert out.notes["k_core"] == [k_user, ki]
    assert out.notes["k_core_removed"] == len(inter) - len(out)
    assert out.notes["k_core_removed"] > 0
    # applying it again removes nothing: a fixed point
    again = k_core(out, k_user, k_item)
    assert len(again) == len(out)
    # and it is the *largest* such core: every removed row had a user or item outside the core
    kept = set(map(tuple, out.frame[["user", "item"]].values.tolist()))
    removed = inter.frame.loc[[tuple(r) not in kept for r in inter.frame[["user", "item"]].values.tolist()]]
    assert (~removed["user"].isin(out.frame["user"]) | ~removed["item"].isin(out.frame["item"])).all()


def test_k_core_counts_distinct_partners_not_rows():
    # user 1 has 3 rows but only 1 distinct item: under k=2 everything collapses
    inter = validate(pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": [1, 1, 1, 1, 2],
                                   "action": ["view", "like", "share", "view", "view"]}))
    with pytest.raises(DataError, match="core"):
        k_core(inter, 2)


def test_k_core_hand_example():
    # users 1..3 each with items a, b; user 4 only with c; item c only with user 4
    inter = validate(pd.DataFrame({"user": [1, 1, 2, 2, 3, 3, 4], "item": ["a", "b", "a", "b", "a", "b", "c"]}))
    out = k_core(inter, 2)
    assert sorted(out.frame["user"].unique().tolist()) == [1, 2, 3]
    assert sorted(out.frame["item"].unique().tolist()) == ["a", "b"]
    assert out.notes["k_core_removed"] == 1


# -- keep_actions ---------------------------------------------------------------------------------
def test_keep_actions(log_inter):
    out = keep_actions(log_inter, ["like", "share"])
    assert set(out.frame["action"].astype(str)) == {"like", "share"}
    assert out.actions == ["like", "share"]  # unused categories dropped
    assert len(out) == int(log_inter.frame["action"].isin(["like", "share"]).sum())
    assert out.notes["actions_kept"] == ["like", "share"]


def test_keep_actions_none_keeps_all(log_inter):
    assert keep_actions(log_inter, None) is log_inter
    assert keep_actions(log_inter, []) is log_inter


def test_keep_actions_unknown(log_inter):
    with pytest.raises(DataError) as e:
        keep_actions(log_inter, ["like", "retweet"])
    assert "retweet" in str(e.value) and "gen.csv" in str(e.value)

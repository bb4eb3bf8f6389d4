"""The built-in simulator: valid output, determinism, and the ground truth it promises."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedgan.data.schema import Interactions, validate
from feedgan.data.simulate import LOGGED_ACTIONS, Simulation, SimulationConfig, simulate


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(seed=0)


@pytest.fixture(scope="module")
def sim_no_social() -> Simulation:
    return simulate(seed=0, friend_influence=0.0, social_feed_share=0.0)


def _keys(frame: pd.DataFrame, action: str, n_items: int) -> np.ndarray:
    f = frame[frame["action"] == action]
    return f["user"].to_numpy() * n_items + f["item"].to_numpy()


def _co_like_share(s: Simulation) -> float:
    """Share of likes (u, i) where at least one friend of u also liked i."""
    f = s.frame[s.frame["action"] == "like"]
    n = s.config.n_items
    liked = np.sort(f["user"].to_numpy() * n + f["item"].to_numpy())
    soc = s.social
    # pair every like (u, i) with every friend v of u, look up whether v liked i
    likes = f[["user", "item"]].merge(soc, left_on="user", right_on="src")
    k = likes["dst"].to_numpy() * n + likes["item"].to_numpy()
    j = np.minimum(np.searchsorted(liked, k), len(liked) - 1)
    likes["hit"] = liked[j] == k
    hit = likes.groupby(["user", "item"])["hit"].any()
    return float(hit.sum() / len(f))


def test_output_is_valid_interactions(sim):
    inter = sim.interactions
    assert isinstance(inter, Interactions)
    f = inter.frame
    assert list(f.columns) == ["user", "item", "action", "timestamp", "weight"]
    assert f["user"].dtype == np.int64 and f["item"].dtype == np.int64
    assert f["timestamp"].dtype == np.int64 and f["weight"].dtype == np.float32
    assert set(inter.actions) == set(LOGGED_ACTIONS)
    again = validate(f, social=inter.social)
    pd.testing.assert_frame_equal(again.frame, f)
    pd.testing.assert_frame_equal(again.social, inter.social)
    assert list(inter.social.columns) == ["src", "dst", "weight"]
    assert f["user"].between(0, sim.config.n_users - 1).all()
    assert f["item"].between(0, sim.config.n_items - 1).all()
    cfg = sim.config
    assert f["timestamp"].min() >= cfg.start and f["timestamp"].max() < cfg.start + cfg.days * 86400
    # one row per (user, item, action); nobody interacts with their own post
    assert not f.duplicated(["user", "item", "action"]).any()
    assert (sim.item_author[f["item"].to_numpy()] != f["user"].to_numpy()).all()
    assert (f["timestamp"].to_numpy() >= sim.item_created[f["item"].to_numpy()]).all()
    # ground-truth arrays have the promised shapes
    assert sim.user_interest.shape == (cfg.n_users, cfg.n_topics)
    np.testing.assert_allclose(sim.user_interest.sum(axis=1), 1.0, rtol=1e-4)
    assert sim.user_community.shape == (cfg.n_users,)
    assert sim.item_topic.shape == sim.item_author.shape == sim.item_popularity.shape == (cfg.n_items,)
    # the social graph is mutual (friendship = two follow edges) without self-loops
    s = inter.social
    assert (s["src"] != s["dst"]).all()
    fwd = set(zip(s["src"], s["dst"]))
    assert all((d, u) in fwd for u, d in list(fwd)[:500])


def test_same_seed_same_frame_other_seed_differs():
    a = simulate(n_users=300, n_items=400, seed=7)
    b = simulate(n_users=300, n_items=400, seed=7)
    c = simulate(n_users=300, n_items=400, seed=8)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    pd.testing.assert_frame_equal(a.social, b.social)
    np.testing.assert_array_equal(a.user_interest, b.user_interest)
    assert not (len(a.frame) == len(c.frame) and a.frame.equals(c.frame))
    # passing a config or overrides is the same thing
    d = simulate(SimulationConfig(n_users=300, n_items=400, seed=7))
    pd.testing.assert_frame_equal(a.frame, d.frame)


def test_funnel_ordering(sim):
    f = sim.frame
    view = f[f["action"] == "view"][["user", "item", "timestamp"]]
    assert not view.duplicated(["user", "item"]).any()
    ts = {}
    for action in ("like", "comment", "share"):
        later = f[f["action"] == action][["user", "item", "timestamp"]]
        m = later.merge(view, on=["user", "item"], how="left", suffixes=("", "_view"))
        assert m["timestamp_view"].notna().all(), f"{action} without a view"
        assert (m["timestamp"] >= m["timestamp_view"]).all(), f"{action} before its view"
        ts[action] = later.set_index(["user", "item"])["timestamp"]
    both = pd.concat([ts["like"].rename("like"), ts["comment"].rename("comment")], axis=1, join="inner")
    assert (both["comment"] >= both["like"]).all()


def test_conversion_rates_match_config(sim, sim_no_social):
    conv = sim_no_social.summary()["conversion"]
    cfg = sim_no_social.config
    assert conv["view|impression"] == pytest.approx(cfg.view_rate, abs=0.03)
    assert conv["like|view"] == pytest.approx(cfg.like_rate, abs=0.015)
    assert conv["comment|view"] == pytest.approx(cfg.comment_rate, abs=0.005)
    assert conv["share|view"] == pytest.approx(cfg.share_rate, abs=0.004)
    # friend influence raises conversion a little, not wildly
    conv = sim.summary()["conversion"]
    assert cfg.view_rate <= conv["view|impression"] <= cfg.view_rate + 0.1
    assert cfg.like_rate * 0.9 <= conv["like|view"] <= cfg.like_rate * 1.6
    # rows are roughly controllable from the config
    summary = sim_no_social.summary()
    assert 0.7 * cfg.expected_rows() <= summary["rows"] <= 1.1 * cfg.expected_rows()
    assert summary["impressions"] >= 0.75 * cfg.n_users * cfg.exposures_per_user


def test_homophily_and_degrees(sim):
    summary = sim.summary()["friends"]
    assert summary["within_community"] == pytest.approx(sim.config.homophily, abs=0.03)
    assert summary["mean_degree"] == pytest.approx(sim.config.mean_friends, rel=0.05)
    assert summary["max_degree"] > 4 * summary["median_degree"]   # heavy-tailed
    low = simulate(n_users=600, n_items=500, homophily=0.2, seed=2).summary()["friends"]
    assert low["within_community"] == pytest.approx(0.2, abs=0.05)


def test_power_law_popularity(sim):
    share = sim.summary()["top10pct_items_view_share"]
    assert share > 0.4
    flat = simulate(popularity_exponent=0.0, seed=0).summary()["top10pct_items_view_share"]
    assert flat < 0.35 and share > flat + 0.15


def test_views_follow_interests(sim):
    f = sim.frame[sim.frame["action"] == "view"]
    u, i = f["user"].to_numpy(), f["item"].to_numpy()
    viewed = sim.affinity(u, i).mean()
    rng = np.random.default_rng(0)
    random = sim.affinity(u, rng.integers(0, sim.config.n_items, len(u))).mean()
    assert viewed > 1.5 * random
    # likes concentrate further (conversion depends on affinity)
    lk = sim.frame[sim.frame["action"] == "like"]
    assert sim.affinity(lk["user"], lk["item"]).mean() > viewed
    # users' views sit on their community's topics
    dom = np.argmax(sim.user_interest, axis=1)
    assert (sim.item_topic[i] == dom[u]).mean() > 2.0 / sim.config.n_topics


def test_friend_influence_raises_co_likes(sim, sim_no_social):
    on, off = _co_like_share(sim), _co_like_share(sim_no_social)
    assert on > 1.3 * off
    assert sim.summary()["social_impressions"] > 0
    assert sim_no_social.summary()["social_impressions"] == 0


def test_small_sizes_and_summary():
    s = simulate(n_users=200, n_items=300, n_communities=4, seed=5)
    summary = s.summary()
    assert summary["users"] == 200 and summary["rows"] == len(s.frame) > 500
    assert set(summary["actions"]) == set(LOGGED_ACTIONS)
    assert 0 < summary["density"] < 1
    tiny = simulate(n_users=2, n_items=5, n_topics=2, n_communities=1, mean_friends=1,
                    exposures_per_user=50, seed=1)
    assert len(tiny.social) == 2 and len(tiny.frame) > 0


@pytest.mark.parametrize("kw, needle", [
    ({"n_users": -5}, "n_users"),
    ({"n_items": 0}, "n_items"),
    ({"n_users": 100, "n_communities": 200}, "n_communities"),
    ({"homophily": 1.5}, "homophily"),
    ({"view_rate": 0.0}, "view_rate"),
    ({"like_rate": -0.1}, "like_rate"),
    ({"exposures_per_user": -1}, "exposures_per_user"),
    ({"mean_friends": float("nan")}, "mean_friends"),
    ({"days": 2.5}, "days"),
    ({"seed": -1}, "seed"),
    ({"colour": "red"}, "unknown"),
])
def test_nonsense_config_is_a_clear_value_error(kw, needle):
    with pytest.raises(ValueError, match=needle):
        simulate(**kw)
    if needle != "unknown":
        with pytest.raises(ValueError, match="SimulationConfig"):
            SimulationConfig(**kw)

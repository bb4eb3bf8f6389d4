"""The built-in simulator: valid output, determinism, and the ground truth it promises."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import feedgan.data.truth as truth_module
from feedgan.data.schema import EXPOSURE, Interactions, validate
from feedgan.data.simulate import LOGGED_ACTIONS, Simulation, SimulationConfig, simulate


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(seed=0)


@pytest.fixture(scope="module")
def sim_no_social() -> Simulation:
    return simulate(seed=0, friend_influence=0.0, social_feed_share=0.0)


@pytest.fixture(scope="module")
def sim_imp() -> Simulation:
    return simulate(seed=0, log_impressions=True)


@pytest.fixture(scope="module")
def sim_imp_no_social() -> Simulation:
    return simulate(seed=0, friend_influence=0.0, social_feed_share=0.0, log_impressions=True)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC from average ranks (ties share their mean rank)."""
    order = np.argsort(score, kind="stable")
    _, inv, cnt = np.unique(score[order], return_inverse=True, return_counts=True)
    ranks = np.empty(len(score))
    ranks[order] = (np.cumsum(cnt) - (cnt - 1) / 2)[inv]
    pos = int(label.sum())
    neg = len(label) - pos
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _impressions(s: Simulation):
    """Impression rows as arrays, and for each action whether that impression led to it: a pair's
    last impression is the one that led to its view (a viewed item is not shown again)."""
    f = s.frame[s.frame["action"] == EXPOSURE]
    u, i, t = f["user"].to_numpy(), f["item"].to_numpy(), f["timestamp"].to_numpy()
    n = s.config.n_items
    key = u * n + i
    o = np.lexsort((t, key))
    last = np.ones(len(key), dtype=bool)
    last[o[:-1]] = key[o[:-1]] != key[o[1:]]
    hit = {a: np.isin(key, _keys(s.frame, a, n)) & last for a in LOGGED_ACTIONS}
    return u, i, t, hit


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


# ----------------------------------------------------------------------------- exposure log

def test_impression_log(sim_imp, sim):
    f, cfg = sim_imp.frame, sim_imp.config
    assert sim_imp.interactions.actions == [*LOGGED_ACTIONS, EXPOSURE]
    imp = f[f["action"] == EXPOSURE]
    assert len(imp) == sim_imp.stats["impressions"] == sim_imp.summary()["impressions"]
    assert sim_imp.summary()["impressions_logged"] and not sim.summary()["impressions_logged"]
    assert sim.summary()["impressions"] == sim.stats["impressions"]
    assert sim.interactions.actions == list(LOGGED_ACTIONS)
    # a separate random stream: without the impression rows it is the log of the default run
    rest = f[f["action"] != EXPOSURE].reset_index(drop=True)
    rest["action"] = rest["action"].cat.set_categories(list(LOGGED_ACTIONS))
    pd.testing.assert_frame_equal(rest, sim.frame)
    pd.testing.assert_frame_equal(sim_imp.social, sim.social)
    # a trusted table: validate() gives it back unchanged; time-sorted, inside the period
    pd.testing.assert_frame_equal(validate(f, social=sim_imp.social).frame, f)
    assert (np.diff(f["timestamp"].to_numpy()) >= 0).all()
    ts, items = imp["timestamp"].to_numpy(), imp["item"].to_numpy()
    assert ts.min() >= cfg.start and ts.max() < cfg.end
    assert (ts >= sim_imp.item_created[items]).all()
    assert (sim_imp.item_author[items] != imp["user"].to_numpy()).all()
    # at most one impression per (user, item, window); each view follows its (last) impression
    win = np.searchsorted(np.asarray(sim_imp.stats["calibration"]["edges"]), ts, side="right") - 1
    assert not pd.DataFrame({"u": imp["user"], "i": imp["item"], "w": win}).duplicated().any()
    last = imp.groupby(["user", "item"])["timestamp"].max()
    view = f[f["action"] == "view"].set_index(["user", "item"])["timestamp"]
    assert view.index.isin(last.index).all()
    gap = view - last.reindex(view.index)
    assert (gap >= 0).all() and gap.median() <= 30
    u, i, t, hit = _impressions(sim_imp)
    assert hit["view"].sum() == len(view) and hit["like"].sum() == (f["action"] == "like").sum()
    # unviewed impressions spread over their windows (not stuck at the window's start)
    edges = np.asarray(sim_imp.stats["calibration"]["edges"])
    w = np.searchsorted(edges, t, side="right") - 1
    lo = np.maximum(edges[w], sim_imp.item_created[i])
    frac = (t - lo) / (edges[w + 1] - lo)
    assert 0.4 < frac[~hit["view"]].mean() < 0.6
    assert SimulationConfig(log_impressions=True).expected_rows() > 3 * SimulationConfig().expected_rows()
    with pytest.raises(ValueError, match="log_impressions"):
        SimulationConfig(log_impressions="yes")


# ----------------------------------------------------------------------------- ground truth

def test_propensity_basics(sim):
    cfg = sim.config
    rng = np.random.default_rng(1)
    u = rng.integers(0, cfg.n_users, 5000)
    i = rng.integers(0, cfg.n_items, 5000)
    p = {a: sim.propensity(u, i, a) for a in LOGGED_ACTIONS}
    for a, v in p.items():
        assert v.shape == (5000,) and ((v >= 0) & (v <= 1)).all(), a
    assert (p["like"] < p["view"]).all() and (p["comment"] < p["like"]).all()
    # monotone in affinity: for one item, users ordered by their affinity to it
    users = np.arange(cfg.n_users)
    item = np.full(cfg.n_users, 7)
    aff = sim.affinity(users, item)
    o = np.argsort(aff, kind="stable")
    for a in ("view", "like"):
        q = sim.propensity(users, item, a)[o]
        assert (np.diff(q) >= -1e-12).all(), a
        assert q[-1] > 2 * q[0]
    # a timestamp picks its window's constants; without one, a mix of them; boost raises
    cal = sim.stats["calibration"]
    assert len(cal["edges"]) == cfg.rounds + 1 and all(len(cal[a]) == cfg.rounds for a in LOGGED_ACTIONS)
    mid = (np.asarray(cal["edges"][:-1]) + np.asarray(cal["edges"][1:])) // 2
    per_window = np.stack([sim.propensity(u, i, "like", timestamps=np.full(5000, m)) for m in mid])
    assert (per_window.min(axis=0) - 1e-12 <= p["like"]).all() and (p["like"] <= per_window.max(axis=0) + 1e-12).all()
    assert (sim.propensity(u, i, "like", boost=2.0) >= p["like"]).all()
    with pytest.raises(ValueError, match="action"):
        sim.propensity(u, i, "follow")
    with pytest.raises(ValueError, match="paired"):
        sim.propensity(u, i[:10], "view")
    with pytest.raises(ValueError, match="n_items"):
        sim.propensity([0], [cfg.n_items], "view")
    with pytest.raises(ValueError, match="n_users"):
        sim.oracle_scores([cfg.n_users], "view")


@pytest.mark.parametrize("social", [False, True])
def test_propensity_matches_realised_rates(social, sim_imp, sim_imp_no_social):
    """Given the windows' constants, each action's count over the impressions is a sum of
    independent Bernoulli draws with the oracle's probabilities: it must lie within 4 standard
    deviations (sqrt(sum p(1 - p)), 1 to 3 % of the count here) of their sum."""
    s = sim_imp if social else sim_imp_no_social
    u, i, t, hit = _impressions(s)
    boost = s.friend_boost(u, i, t)
    assert (boost >= 1).all()
    if social:
        assert (boost > 1).mean() > 0.05
        assert (boost[t < s.stats["calibration"]["edges"][1]] == 1).all()   # nobody engaged before
    else:
        assert (boost == 1).all()
    for a in LOGGED_ACTIONS:
        p = s.propensity(u, i, a, timestamps=t, boost=boost)
        sd = np.sqrt((p * (1 - p)).sum())
        assert abs(hit[a].sum() - p.sum()) < 4 * sd, a
        if social and a in ("view", "like"):
            # ignoring friend influence under-predicts what it raises
            p0 = s.propensity(u, i, a, timestamps=t)
            assert hit[a].sum() > p0.sum() + 4 * np.sqrt((p0 * (1 - p0)).sum()), a
    if not social:   # without timestamps, a window mix: still close on average
        p = s.propensity(u, i, "view")
        assert p.mean() == pytest.approx(hit["view"].mean(), rel=0.03)


def test_oracle_scores_rank_what_happened(sim_imp, monkeypatch):
    s, cfg = sim_imp, sim_imp.config
    n = cfg.n_items
    users = np.arange(cfg.n_users)
    like = s.oracle_scores(users, "like")
    view = s.oracle_scores(users, "view")
    assert like.shape == view.shape == (cfg.n_users, n) and like.dtype == np.float32
    assert ((like >= 0) & (like <= view) & (view <= 1)).all()
    assert (like[s.item_author, np.arange(n)] == 0).all()     # never one's own posts
    # liked vs shown-but-not-liked pairs
    u, i, t, hit = _impressions(s)
    key = u * n + i
    shown = np.unique(key)
    liked = np.isin(shown, key[hit["like"]])
    assert _auc(like.ravel()[shown], liked) > 0.6
    # viewed pairs vs every other pair
    viewed = np.zeros(like.size, dtype=bool)
    viewed[_keys(s.frame, "view", n)] = True
    assert _auc(view.ravel(), viewed) > 0.9
    # chunks of users give the same rows
    monkeypatch.setattr(truth_module, "_ORACLE_CELLS", 7 * n)
    some = np.array([5, 0, 1999, 5])
    np.testing.assert_allclose(s.oracle_scores(some, "like"), like[some], rtol=1e-6)
    with pytest.raises(ValueError, match="action"):
        s.oracle_scores(some, EXPOSURE)

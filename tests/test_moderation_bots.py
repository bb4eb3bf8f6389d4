"""Simulated bot accounts: each script's known behaviour shows in its rows, graph edges and labels."""
from __future__ import annotations

import numpy as np
import pytest

from feedgan.data.schema import DataError
from feedgan.data.simulate import simulate
from feedgan.moderation.attacks import inject
from feedgan.moderation.bots import BEHAVIOURS, add_bots
from feedgan.moderation.detect import profile_features


@pytest.fixture(scope="module")
def sim():
    return simulate(n_users=300, n_items=250, seed=2)


def bot_rows(b):
    f = b.interactions.frame
    return f[f["user"].isin(b.labels.index[b.labels == 1])]


@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
@pytest.mark.parametrize("share", [0.01, 0.05, 0.10])
def test_bots_are_labelled_counted_and_leave_the_real_log_alone(sim, behaviour, share):
    b = add_bots(sim, behaviour, share=share, seed=0)
    active = sim.frame["user"].nunique()
    n = max(1, round(share * active))
    assert int(b.labels.sum()) == n and len(b.labels) == active + n
    real = b.interactions.frame[b.labels.reindex(b.interactions.frame["user"]).to_numpy() == 0]
    assert len(real) == len(sim.frame)
    assert set(bot_rows(b)["user"]) == set(b.labels.index[b.labels == 1])
    ts = bot_rows(b)["timestamp"]
    assert ts.min() >= sim.config.start and ts.max() < sim.config.end
    assert b.kind == f"bots:{behaviour}"


def test_promoters_act_on_every_promoted_post_soon_after_it_appears(sim):
    b = add_bots(sim, "promoter", share=0.1, seed=1, hit=1.0, like=1.0, reaction_s=60.0)
    rows = bot_rows(b)
    assert len(b.targets) > 0 and np.isin(b.targets, np.flatnonzero(np.isin(sim.item_author,
                                                                          sim.item_author[b.targets]))).all()
    views = rows[(rows["action"] == "view") & rows["item"].isin(b.targets)]
    assert len(views) == int(b.labels.sum()) * len(b.targets)                # hit=1: every bot viewed every promoted post
    delay = views["timestamp"].to_numpy() - sim.item_created[views["item"].to_numpy()]
    assert np.median(delay) < 300 and (delay >= 0).all()
    likes = rows[(rows["action"] == "like") & rows["item"].isin(b.targets)]
    assert len(likes) == len(views)


def test_likers_keep_a_clock_that_real_users_do_not(sim):
    b = add_bots(sim, "liker", share=0.05, seed=0)
    f = profile_features(b.interactions)
    bots = b.labels.index[b.labels == 1]
    assert f.loc[bots, "gap_cv"].max() < 0.3 < f.loc[f.index.difference(bots), "gap_cv"].median()
    assert f.loc[bots, "mix[like]"].mean() > 3 * f.loc[f.index.difference(bots), "mix[like]"].mean()
    assert bot_rows(b)["action"].isin(["view", "like"]).all()


def test_followers_befriend_many_strangers(sim):
    b = add_bots(sim, "follower", share=0.05, seed=0, friends=40)
    social = b.interactions.social
    bots = b.labels.index[b.labels == 1]
    out = social[social["src"].isin(bots)]
    assert (out.groupby("src").size() == 40).all() and len(social[social["dst"].isin(bots)]) == len(out)
    assert social.notna().all().all()
    f = profile_features(b.interactions)
    real = f.index.difference(bots)
    assert f.loc[bots, "friend_clustering"].mean() < f.loc[real, "friend_clustering"].mean() / 2
    assert f.loc[bots, "friends_log"].min() == pytest.approx(np.log1p(40))
    assert (bot_rows(b)["action"] == "view").all()


def test_bots_are_seeded(sim):
    a, b = add_bots(sim, "promoter", seed=4), add_bots(sim, "promoter", seed=4)
    assert a.interactions.frame.equals(b.interactions.frame)
    assert not a.interactions.frame.equals(add_bots(sim, "promoter", seed=5).interactions.frame)


def test_social_features_need_a_graph_and_gap_cv_needs_times(sim):
    no_graph = inject(sim.interactions, "random", seed=0).interactions
    assert {"friends_log", "friend_clustering"} <= set(profile_features(sim.interactions).columns)
    from dataclasses import replace

    f = profile_features(replace(no_graph, social=None))
    assert not {"friends_log", "friend_clustering"} & set(f.columns) and np.isfinite(f.to_numpy()).all()
    untimed = replace(no_graph, frame=no_graph.frame.drop(columns="timestamp"), social=None)
    assert "gap_cv" not in profile_features(untimed).columns


@pytest.mark.parametrize("call, words", [
    (lambda s: add_bots(s.interactions, "promoter"), "needs a Simulation"),
    (lambda s: add_bots(s, "spammer"), "unknown bot behaviour"),
    (lambda s: add_bots(s, "liker", friends=3), "unknown liker bot parameter"),
    (lambda s: add_bots(s, "liker", share=0), "share"),
    (lambda s: add_bots(s, "liker", seed=-1), "seed"),
])
def test_bad_bot_requests_are_refused_with_the_fix(sim, call, words):
    with pytest.raises(DataError, match=words):
        call(sim)

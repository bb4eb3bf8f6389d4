"""Shilling-attack injection: sizes, profile contents, ratings, labels and targets on small generated logs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedgan.data.schema import DataError, validate
from feedgan.data.simulate import simulate
from feedgan.moderation.attacks import ATTACKS, SELECTED_SHARE, inject

SIZES = (0.01, 0.05, 0.10)
FILLERS = (0.01, 0.03, 0.05)
T0 = 1_600_000_000


def rating_log(n_users=310, n_items=230, per_user=15, levels=(1.0, 2.0, 3.0, 4.0, 5.0), seed=0):
    """Users rate a Zipf-popular sample of items; an item's ratings centre on its own quality."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    quality = rng.uniform(levels[0], levels[-1], n_items)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False, p=pop / pop.sum())
        raw = quality[items] + rng.normal(0, 0.5, per_user)
        snapped = np.asarray(levels)[np.abs(raw[:, None] - np.asarray(levels)).argmin(axis=1)]
        rows += [(u, int(i), r, T0 + int(rng.integers(0, 10**6))) for i, r in zip(items, snapped)]
    frame = pd.DataFrame(rows, columns=["user", "item", "weight", "timestamp"]).assign(action="rate")
    return validate(frame)


@pytest.fixture(scope="module")
def rated():
    return rating_log()


@pytest.fixture(scope="module")
def implicit():
    return simulate(n_users=200, n_items=150, seed=3).interactions


def profiles(res):
    """Fake user -> its item ids (set) and ratings (item -> rating)."""
    frame = res.interactions.frame
    fake = frame[frame["user"].map(res.labels) == 1]
    return {u: dict(zip(g["item"], g["weight"])) for u, g in fake.groupby("user")}


def popularity(inter):
    return inter.frame.drop_duplicates(["user", "item"])["item"].value_counts()


def n_selected(kind, inter):
    return max(1, round(SELECTED_SHARE * inter.frame["item"].nunique())) if kind in ("bandwagon", "segment") else 0


@pytest.mark.parametrize("kind", ATTACKS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("filler", FILLERS)
def test_fake_count_profile_length_and_labels(rated, kind, size, filler):
    res = inject(rated, kind, size=size, filler=filler, targets=2, seed=1)
    n_real, n_items = rated.frame["user"].nunique(), rated.frame["item"].nunique()
    fakes = profiles(res)
    assert len(fakes) == max(1, round(size * n_real))
    length = 2 + max(1, round(filler * n_items)) + n_selected(kind, rated)
    assert {len(p) for p in fakes.values()} == {length}
    assert (res.interactions.frame.groupby("user").size()[list(fakes)] == length).all()  # no repeated item
    # every user labelled, exactly the fakes are 1
    assert res.labels.dtype == np.int8
    assert set(res.labels.index) == set(res.interactions.frame["user"])
    real = set(rated.frame["user"].astype(str))
    assert set(res.labels.index[res.labels == 1]) == set(fakes) and not real & set(fakes)
    assert set(res.labels.index[res.labels == 0]) == real


@pytest.mark.parametrize("kind", ATTACKS)
def test_targets_in_every_profile_at_the_top_rating(rated, kind):
    res = inject(rated, kind, size=0.05, filler=0.03, targets=3, seed=2)
    assert len(res.targets) == 3
    for prof in profiles(res).values():
        assert all(prof[t] == 5.0 for t in res.targets)


@pytest.mark.parametrize("kind", ATTACKS)
def test_ratings_on_the_logs_scale(kind):
    levels = tuple(np.arange(1, 9) / 2)  # 0.5 .. 4.0 in halves
    inter = rating_log(levels=levels, seed=4)
    res = inject(inter, kind, size=0.1, filler=0.05, targets=1, seed=0)
    fake = res.interactions.frame[res.labels[res.interactions.frame["user"]].to_numpy() == 1]
    assert set(fake["weight"]) <= set(levels)
    assert fake["weight"].nunique() > (1 if kind == "segment" else 3)  # segment: only min and max
    assert fake["weight"].dtype == np.float32 and (fake["action"] == "rate").all()


def test_average_filler_follows_item_means_random_does_not(rated):
    means = rated.frame.groupby("item")["weight"].mean()

    def corr(kind):
        res = inject(rated, kind, size=0.1, filler=0.05, targets=1, seed=5)
        rows = [(means[i], r) for p in profiles(res).values() for i, r in p.items() if i not in res.targets]
        return np.corrcoef(np.array(rows).T)[0, 1]
    assert corr("average") > 0.6
    assert abs(corr("random")) < 0.3


def test_bandwagon_profiles_hold_the_most_popular_items(rated):
    res = inject(rated, "bandwagon", size=0.05, filler=0.03, targets=1, seed=0)
    k = n_selected("bandwagon", rated)
    pop = popularity(rated).drop(res.targets)
    shared = set.intersection(*(set(p) for p in profiles(res).values())) - set(res.targets)
    assert len(shared) == k
    assert sorted(pop[list(shared)], reverse=True) == list(pop.sort_values(ascending=False)[:k])
    for prof in profiles(res).values():
        assert all(prof[i] == 5.0 for i in shared)


def test_segment_profiles_hold_the_targets_segment(rated):
    res = inject(rated, "segment", size=0.05, filler=0.05, targets=1, seed=0)
    frame = rated.frame
    fans = frame.loc[frame["item"].isin(res.targets), "user"]
    co = frame[frame["user"].isin(fans)].drop_duplicates(["user", "item"])["item"].value_counts()
    co = co.reindex(frame["item"].unique(), fill_value=0).drop(res.targets)
    shared = set.intersection(*(set(p) for p in profiles(res).values())) - set(res.targets)
    assert len(shared) == n_selected("segment", rated)
    assert co[list(shared)].min() >= co.drop(list(shared)).max() and co[list(shared)].min() > 0
    for prof in profiles(res).values():  # segment at the top, filler at the bottom
        assert {r for i, r in prof.items() if i not in shared and i not in res.targets} == {1.0}
        assert all(prof[i] == 5.0 for i in shared)


def test_drawn_targets_have_few_users_and_given_targets_are_used(rated):
    pop = popularity(rated)
    res = inject(rated, "random", targets=4, seed=9)
    assert len(set(res.targets)) == 4 and (pop[res.targets] <= pop.quantile(0.25)).all()
    given = inject(rated, "average", targets=[int(pop.index[0]), int(pop.index[5])], seed=9)
    assert list(given.targets) == [pop.index[0], pop.index[5]]
    assert given.targets.dtype == rated.frame["item"].dtype
    assert all(set(given.targets) <= set(p) for p in profiles(given).values())


@pytest.mark.parametrize("kind", ATTACKS)
def test_implicit_log(implicit, kind):
    res = inject(implicit, kind, size=0.05, filler=0.03, targets=2, seed=0)
    frame, n = res.interactions.frame, len(implicit.frame)
    fake = frame.iloc[n:]
    assert (fake["weight"] == 1.0).all() and (fake["action"] == "view").all()
    ts = implicit.frame["timestamp"]
    assert fake["timestamp"].between(ts.min(), ts.max()).all() and fake["timestamp"].nunique() > 1
    assert len(profiles(res)) == 10
    assert all(set(res.targets) <= set(p) for p in profiles(res).values())
    # the real rows unchanged (user ids as text), the social graph follows, the whole still a valid log
    pd.testing.assert_frame_equal(frame.iloc[:n], implicit.frame.assign(user=implicit.frame["user"].astype(str).astype(object)))
    assert res.interactions.social["src"].tolist() == implicit.social["src"].astype(str).tolist()
    again = validate(frame)
    pd.testing.assert_frame_equal(again.frame, frame)


def test_text_ids_no_timestamps_and_parts():
    frame = pd.DataFrame({"user": list("aabbccdd"), "item": ["x", "y", "y", "z", "x", "w", "z", "v"],
                          "part": ["train"] * 6 + ["test"] * 2})
    inter = validate(frame)
    res = inject(inter, "bandwagon", size=0.5, filler=0.2, targets=["v"], seed=0)
    out = res.interactions.frame
    pd.testing.assert_frame_equal(out.iloc[:8], inter.frame)
    assert "timestamp" not in out.columns and (out.iloc[8:]["part"] == "train").all()
    assert res.labels.to_dict() == {"a": 0, "b": 0, "c": 0, "d": 0, "fake-0000001": 1, "fake-0000002": 1}


@pytest.mark.parametrize("kind", ATTACKS)
def test_same_seed_same_output(rated, kind):
    a, b = (inject(rated, kind, size=0.05, filler=0.05, targets=2, seed=7) for _ in range(2))
    pd.testing.assert_frame_equal(a.interactions.frame, b.interactions.frame)
    pd.testing.assert_series_equal(a.labels, b.labels)
    c = inject(rated, kind, size=0.05, filler=0.05, targets=2, seed=8)
    assert not a.interactions.frame.equals(c.interactions.frame)


@pytest.mark.parametrize("args, words", [
    (dict(kind="sybil"), "unknown attack kind 'sybil'"),
    (dict(size=0), "size 0 is not a share"),
    (dict(size=1.5), "size 1.5"),
    (dict(size=float("nan")), "size nan"),
    (dict(size=True), "size True"),
    (dict(filler=0.0), "filler 0.0"),
    (dict(filler="3%"), "filler '3%'"),
    (dict(targets=0), "cannot pick 0 target items"),
    (dict(targets=10_000), "cannot pick 10000 target items"),
    (dict(targets=["nope"]), "target item 'nope' is not in the log"),
    (dict(targets=[]), "list of target items is empty"),
    (dict(targets="12"), "neither a count nor a list"),
    (dict(targets=150, filler=1.0), "filler items but only"),
    (dict(seed=-1), "seed -1"),
    (dict(seed=1.5), "seed 1.5"),
])
def test_bad_input_is_one_clear_line(rated, args, words):
    args = {"kind": "random", **args}
    with pytest.raises(DataError, match="fix:") as err:
        inject(rated, args.pop("kind"), **args)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_fake_ids_never_collide():
    inter = validate(pd.DataFrame({"user": ["fake-0000001", "b", "c"], "item": [1, 2, 3]}))
    with pytest.raises(DataError, match="'fake-0000001' is in the log"):
        inject(inter, "random", size=0.5, filler=0.5)
    only_exposures = validate(pd.DataFrame({"user": [1, 2], "item": [1, 2], "action": ["impression"] * 2}))
    with pytest.raises(DataError, match="only exposures"):
        inject(only_exposures, "random")


def test_at_least_one_fake_and_one_filler_item():
    inter = validate(pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 11, 11, 12], "weight": [4.0, 2.0, 3.0, 5.0]}))
    res = inject(inter, "average", size=0.01, filler=0.01, targets=[12], seed=0)
    assert list(profiles(res)) == ["fake-0000001"]
    assert len(profiles(res)["fake-0000001"]) == 2 and profiles(res)["fake-0000001"][12] == 5.0


# ---- generator-made fakes and real timelines -------------------------------------------------------------

FAST_VAE = {"hidden": 32, "latent": 8, "epochs": 2, "anneal_epochs": 1}


def bursty_log(n_users=300, n_items=200, seed=0):
    """Users of varied activity (lognormal), each active in one burst: minutes between events, starts spread
    over a year; ratings 1-5 around an item quality."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    quality = rng.uniform(1, 5, n_items)
    rows = []
    for u in range(n_users):
        k = int(np.clip(rng.lognormal(2.5, 0.7), 3, n_items // 2))
        items = rng.choice(n_items, k, replace=False, p=pop / pop.sum())
        ts = T0 + int(rng.integers(0, 3 * 10**7)) + np.cumsum(rng.exponential(120, k)).astype(np.int64)
        ratings = np.clip(np.round(quality[items] + rng.normal(0, 0.5, k)), 1, 5)
        rows += [(u, int(i), r, int(t)) for i, r, t in zip(items, ratings, ts)]
    frame = pd.DataFrame(rows, columns=["user", "item", "weight", "timestamp"]).assign(action="rate")
    return validate(frame)


@pytest.fixture(scope="module")
def bursty():
    return bursty_log()


def fake_rows(res):
    frame = res.interactions.frame
    return frame[frame["user"].map(res.labels).to_numpy() == 1]


def ks(a, b):
    """Two-sample Kolmogorov-Smirnov distance."""
    grid = np.union1d(a, b)
    return float(np.max(np.abs(np.searchsorted(np.sort(a), grid, side="right") / len(a)
                               - np.searchsorted(np.sort(b), grid, side="right") / len(b))))


def median_gaps(frame):
    return frame.sort_values(["user", "timestamp"]).groupby("user")["timestamp"].apply(
        lambda t: np.median(np.diff(t.to_numpy()))).to_numpy()


@pytest.mark.parametrize("generator, params", [("independent", None), ("vae", FAST_VAE)])
def test_generated_fakes_labelled_with_targets_and_real_activity(bursty, generator, params):
    res = inject(bursty, "generated", generator=generator, generator_params=params, size=0.3, targets=2, seed=0)
    assert res.kind == "generated" and res.generator == generator
    n_real = bursty.frame["user"].nunique()
    fake = fake_rows(res)
    assert fake["user"].nunique() == round(0.3 * n_real) == int(res.labels.sum())
    assert set(fake["user"]) == set(res.labels.index[res.labels == 1])
    assert not set(fake["user"]) & set(bursty.frame["user"].astype(str))
    for _, g in fake.groupby("user"):  # every target once, at the top rating
        hit = g[g["item"].isin(res.targets)]
        assert sorted(hit["item"]) == sorted(res.targets) and (hit["weight"] == 5.0).all()
    # activity like the real users' (the classic attacks give every fake the same length)
    real_k = bursty.frame.groupby("user").size().to_numpy()
    fake_k = fake.groupby("user").size().to_numpy() - 2
    assert ks(fake_k, real_k) < 0.2 and np.std(fake_k) > 0.5 * np.std(real_k)
    # ratings on the log's scale, following the items' means
    assert set(fake["weight"]) <= {1.0, 2.0, 3.0, 4.0, 5.0} and fake["weight"].nunique() >= 4
    # timestamps inside the log's period, bursty like real users (not spread over the year)
    ts = bursty.frame["timestamp"]
    assert fake["timestamp"].between(ts.min(), ts.max()).all()
    assert np.median(median_gaps(fake)) < 10 * np.median(median_gaps(bursty.frame))
    again = validate(res.interactions.frame)
    pd.testing.assert_frame_equal(again.frame, res.interactions.frame)


def test_generated_same_seed_same_output_and_actions_of_the_log(implicit):
    a, b = (inject(implicit, "generated", generator="vae", generator_params=FAST_VAE, seed=3) for _ in range(2))
    pd.testing.assert_frame_equal(a.interactions.frame, b.interactions.frame)
    c = inject(implicit, "generated", generator="vae", generator_params=FAST_VAE, seed=4)
    assert not a.interactions.frame.equals(c.interactions.frame)
    fake = fake_rows(a)
    assert (fake["weight"] == 1.0).all() and set(fake["action"]) <= set(implicit.frame["action"])
    main = fake.groupby("user")["action"].agg(lambda s: s.value_counts().idxmax())
    hit = fake[fake["item"].isin(a.targets)]
    assert (hit.groupby("user").size() >= 1).all() and hit["user"].nunique() == len(main)
    assert all(((hit["user"] == u) & (hit["action"] == main[u])).any() for u in main.index)


def test_timing_real_gives_real_gaps_uniform_does_not(bursty):
    real_gaps = np.log1p(median_gaps(bursty.frame))
    uniform = inject(bursty, "average", size=0.2, filler=0.05, seed=0)
    real = inject(bursty, "average", size=0.2, filler=0.05, seed=0, timing="real")
    assert real.timing == "real" and uniform.timing == "uniform"
    assert ks(np.log1p(median_gaps(fake_rows(real))), real_gaps) < 0.35
    assert ks(np.log1p(median_gaps(fake_rows(uniform))), real_gaps) > 0.9
    # the profiles are the same attack; only the times differ
    pd.testing.assert_frame_equal(fake_rows(real).drop(columns="timestamp"), fake_rows(uniform).drop(columns="timestamp"))
    ts = bursty.frame["timestamp"]
    assert fake_rows(real)["timestamp"].isin(ts).all()


def test_timing_real_falls_back_to_the_most_active_user():
    frame = pd.DataFrame({"user": [1, 1, 1, 2, 2, 3], "item": [1, 2, 3, 1, 4, 5],
                          "timestamp": [10, 20, 30, 100, 200, 300], "weight": [5.0, 4.0, 3.0, 2.0, 1.0, 4.0]})
    res = inject(validate(frame), "random", size=0.5, filler=0.8, targets=[5], seed=0, timing="real")
    fake = fake_rows(res)
    assert len(fake) == 2 * 5 and fake["timestamp"].isin([10, 20, 30]).all()


@pytest.mark.parametrize("args, words", [
    (dict(kind="generated", generator="gpt"), "unknown generator 'gpt'"),
    (dict(kind="generated", generator_params={"nope": 1}), "no hyperparameter 'nope'"),
    (dict(kind="generated", generator_params={"epochs": "many"}), "epochs"),
    (dict(kind="generated", generator_params=[1]), "is not a mapping"),
    (dict(kind="generated", timing="real"), "timing applies to the classic kinds"),
    (dict(timing="later"), "unknown attack timing 'later'"),
])
def test_bad_generated_input_is_one_clear_line(rated, args, words):
    args = {"kind": "random", **args}
    with pytest.raises(DataError, match="fix:") as err:
        inject(rated, args.pop("kind"), **args)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_fakes_can_join_the_social_graph_with_real_users_degrees(implicit):
    plain = inject(implicit, "random", seed=2)
    social = inject(implicit, "random", seed=2, friends="real")
    assert plain.interactions.frame.equals(social.interactions.frame)          # the rows do not move
    fakes = set(social.labels.index[social.labels == 1])
    assert not fakes & set(plain.interactions.social["src"])
    edges = social.interactions.social
    added = edges[edges["src"].isin(fakes)]
    assert len(added) > 0 and not added["dst"].isin(fakes).any()
    assert len(edges[edges["dst"].isin(fakes)]) == len(added)                    # both directions
    real_degree = implicit.social["src"].value_counts().reindex(pd.unique(implicit.frame["user"]), fill_value=0)
    per_fake = added.groupby("src").size().reindex(list(fakes), fill_value=0)
    assert per_fake.max() <= real_degree.max()
    with pytest.raises(DataError, match="friends"):
        inject(implicit, "random", friends="some")

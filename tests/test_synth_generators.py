"""Synthetic-user generators: the shared contract over every generator, each one's own promise, the CLI."""
import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from feedgan.cli import app
from feedgan.data.readers import read, write_table
from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.io import ArtifactError
from feedgan.synth import Profiles
from feedgan.synth.generators import (
    GENERATORS,
    Generator,
    IndependentGenerator,
    VAEGenerator,
    weighted_rows,
)

QUICK = {"vae": {"epochs": 200, "hidden": 128, "latent": 16, "anneal_epochs": 50},
         "gan": {"vae_epochs": 200, "hidden": 128, "latent": 16, "anneal_epochs": 50, "epochs": 15,
                 "g_hidden": 64, "d_hidden": 64}}


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulationConfig(n_users=300, n_items=200, seed=0)).interactions


@pytest.fixture(scope="module")
def train(sim):
    return Profiles.from_interactions(sim).split_users(seed=0)[0]


@pytest.fixture(scope="module")
def fitted(train):
    return {name: cls(**QUICK.get(name, {})).fit(train, seed=0) for name, cls in GENERATORS.items()}


def ks(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov distance."""
    grid = np.union1d(a, b)
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)
    return float(np.abs(cdf(a) - cdf(b)).max())


def same(p: Profiles, q: Profiles) -> bool:
    mats = lambda d: [] if d is None else [d[a] for a in sorted(d)]
    pairs = list(zip(mats(p.actions), mats(q.actions))) + list(zip(mats(p.times), mats(q.times)))
    if (p.friends is None) != (q.friends is None) or (p.times is None) != (q.times is None):
        return False
    if p.friends is not None:
        pairs.append((p.friends, q.friends))
    return all(a.shape == b.shape and (a != b).nnz == 0 for a, b in pairs)


# -- the contract, every generator ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GENERATORS))
def test_a_sample_is_new_users_over_the_train_catalogue(fitted, train, name):
    s = fitted[name].sample(250, seed=1)
    assert s.n_users == 250 and np.array_equal(s.items, train.items)
    assert set(s.action_names) == set(train.action_names)
    assert len(set(s.users)) == 250 and all(u.startswith("synth-") for u in s.users)
    assert not set(s.users) & set(map(str, train.users))
    assert s.union().nnz > 0 and s.activity().min() >= 1
    back = Profiles.from_interactions(s.to_interactions())  # the readers' schema, read back whole
    assert back.n_users == 250 and back.union().nnz == s.union().nnz


@pytest.mark.parametrize("name", list(GENERATORS))
def test_activity_follows_the_train_users(fitted, train, name):
    s = fitted[name].sample(600, seed=2)
    assert ks(s.activity(), train.activity()) < 0.12
    rng = np.random.default_rng(0)  # the check can fail: Poisson activity of the right mean is off
    assert ks(rng.poisson(train.activity().mean(), 600), train.activity()) > 0.2


@pytest.mark.parametrize("name", list(GENERATORS))
def test_a_seed_fixes_the_sample_and_a_save_keeps_it(fitted, name, tmp_path):
    gen = fitted[name]
    a, b, c = gen.sample(120, seed=5), gen.sample(120, seed=5), gen.sample(120, seed=6)
    assert same(a, b) and not same(a, c)
    gen.save(tmp_path / "g")
    assert not any(p.suffix in (".pkl", ".pt", ".pickle") for p in (tmp_path / "g").iterdir())
    back = Generator.load(tmp_path / "g")
    assert type(back) is type(gen) and back.get_params() == gen.get_params()
    assert same(back.sample(120, seed=5), a)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_times_and_friends_come_when_train_has_them(fitted, train, name):
    s = fitted[name].sample(200, seed=3)
    assert s.times is not None and s.friends is not None
    for a in s.actions:  # one timestamp per event
        t, m = s.times[a].tocsr(), s.actions[a]
        assert np.array_equal(t.indptr, m.indptr) and np.array_equal(t.indices, m.indices)
    t_train = np.concatenate([m.data for m in train.times.values()])
    t_synth = np.concatenate([m.data for m in s.times.values()])
    assert t_synth.min() >= t_train.min() and np.mean(t_synth <= t_train.max()) > 0.98  # inside the period
    f = s.friends
    assert (f != f.T).nnz == 0 and f.diagonal().sum() == 0 and f.nnz > 0
    bare = replace(train, times=None, friends=None)
    plain = type(fitted[name])(**QUICK.get(name, {})).fit(bare, seed=0).sample(50, seed=0)
    assert plain.times is None and plain.friends is None


def test_friend_degrees_follow_train(fitted, train):
    s = fitted["independent"].sample(train.n_users, seed=0)
    real, synth = train.friends.getnnz(1).mean(), s.friends.getnnz(1).mean()
    assert abs(synth - real) < 0.15 * real  # configuration model: few stubs lost to self-loops and repeats


# -- each generator's own promise ----------------------------------------------------------------------
def test_copy_returns_real_train_users(fitted, train):
    s = fitted["copy"].sample(100, seed=0)
    real = {tuple(sorted((a, int(i)) for a in train.actions for i in train.actions[a][u].indices))
            for u in range(train.n_users)}
    for u in range(s.n_users):
        assert tuple(sorted((a, int(i)) for a in s.actions for i in s.actions[a][u].indices)) in real
    big = fitted["copy"].sample(2 * train.n_users, seed=0)  # beyond train: each user twice, degrees kept
    assert big.friends.nnz == 2 * train.friends.nnz


def test_independent_item_popularity_tracks_train(fitted, train):
    s = fitted["independent"].sample(3000, seed=0)
    real, synth = (np.asarray(p.actions["view"].sum(0)).ravel() for p in (train, s))
    assert np.corrcoef(real, synth)[0, 1] > 0.9
    assert synth[real == 0].sum() == 0  # nobody viewed it in train: never drawn
    shuffled = np.random.default_rng(0).permutation(real)  # the check can fail
    assert np.corrcoef(shuffled, synth)[0, 1] < 0.5


def test_vae_and_gan_learn_co_occurrence_beyond_popularity(fitted, train):
    """A user's items hang together: pairs of items that go together in train go together in the sample
    more often than under the popularity floor."""
    X = train.union().toarray()
    co = X.T @ X
    np.fill_diagonal(co, 0)
    expected = np.outer(X.sum(0), X.sum(0)) / X.shape[0]
    lift = np.where(expected > 0, co / np.maximum(expected, 1e-9), 0)  # > 1: the pair goes together

    def together(p):
        Y = p.union().toarray()
        c = Y.T @ Y
        np.fill_diagonal(c, 0)
        return (c * (lift > 2)).sum() / max(c.sum(), 1)  # share of co-occurrences on lifted pairs

    floor = together(fitted["independent"].sample(1000, seed=0))
    assert together(fitted["copy"].sample(1000, seed=0)) > floor
    assert together(fitted["vae"].sample(1000, seed=0)) > floor + 0.05  # 0.34 against 0.21
    assert together(fitted["gan"].sample(1000, seed=0)) > floor + 0.05


def test_weighted_draws_without_replacement_have_the_exact_probabilities():
    rng = np.random.default_rng(0)
    indptr, items = weighted_rows(np.array([2.0, 1.0, 1.0, 0.0]), np.full(60_000, 2), rng)
    pairs = np.sort(items.reshape(-1, 2), 1)
    assert np.array_equal(np.diff(indptr), np.full(60_000, 2)) and (pairs[:, 0] != pairs[:, 1]).all()
    assert abs(np.mean((pairs == [1, 2]).all(1)) - 1 / 6) < 0.006  # 1/4 * 1/3 twice; item 3 never
    assert items.max() == 2
    _, items = weighted_rows(np.array([1e-7, 1.0, 1.0]), np.full(5, 3), rng)  # the whole support, one rare item
    assert sorted(items.tolist()) == [0] * 5 + [1] * 5 + [2] * 5


def test_fit_and_load_refuse_bad_input(train, tmp_path):
    empty = replace(train, actions={a: m[:0] for a, m in train.actions.items()}, users=train.users[:0],
                    times=None, friends=None)
    with pytest.raises(ValueError, match="no interactions"):
        IndependentGenerator().fit(empty)
    with pytest.raises(RuntimeError, match="fit"):
        VAEGenerator().sample(3)
    gen = IndependentGenerator().fit(train)
    with pytest.raises(ValueError, match="positive integer"):
        gen.sample(0)
    gen.save(tmp_path / "g")
    with pytest.raises(ArtifactError, match="'independent' generator, not 'vae'"):
        VAEGenerator.load(tmp_path / "g")
    (tmp_path / "g" / "generator.json").write_text("{")
    with pytest.raises(ArtifactError, match="generator.json"):
        Generator.load(tmp_path / "g")


# -- the command line ----------------------------------------------------------------------------------
def test_cli_fit_then_sample_end_to_end(sim, tmp_path):
    runner = CliRunner()
    data, friends = tmp_path / "log.csv", tmp_path / "friends.csv"
    write_table(sim, data)
    sim.social[["src", "dst"]].to_csv(friends, index=False)
    runs = tmp_path / "runs"
    res = runner.invoke(app, ["synth", "fit", str(data), "--social", str(friends), "--generator", "gan",
                              "-p", "vae_epochs=2", "-p", "hidden=32", "-p", "latent=8",
                              "-p", "epochs=2", "-p", "g_hidden=32", "-p", "d_hidden=32", "--seed", "3",
                              "--runs-dir", str(runs), "--no-progress"])
    assert res.exit_code == 0, res.output
    (run,) = runs.iterdir()
    assert run.name.endswith("-synth-gan") and (run / "generator" / "generator.json").exists()
    split = json.loads((run / "split.json").read_text())
    n_users = sim.frame["user"].nunique()
    assert sorted(u for part in split.values() for u in part) == sorted(sim.frame["user"].unique().tolist())
    assert abs(len(split["train"]) - 0.6 * n_users) <= 1 and abs(len(split["test"]) - 0.2 * n_users) <= 1
    out = tmp_path / "synth.parquet"
    res = runner.invoke(app, ["synth", "sample", str(run), "-n", "500", "--out", str(out), "--seed", "1"])
    assert res.exit_code == 0, res.output
    back = read(out, social=out.with_name("synth.friends.csv"))
    assert back.frame["user"].nunique() == 500 and set(back.frame["action"].unique()) <= set(sim.actions)
    assert back.has_timestamps and back.social is not None and len(back.social) > 0
    again = tmp_path / "again.parquet"
    runner.invoke(app, ["synth", "sample", str(run), "-n", "500", "--out", str(again), "--seed", "1"])
    assert read(again).frame.equals(read(out).frame)


@pytest.mark.parametrize("args, says", [
    (["synth", "fit", "{tmp}/missing.csv", "--generator", "vae"], "missing.csv"),
    (["synth", "fit", "{tmp}/log.csv", "--generator", "gab"], "unknown --generator 'gab'"),
    (["synth", "sample", "{tmp}", "-n", "5", "--out", "{tmp}/s.parquet"], "no generator.json"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, says):
    (tmp_path / "log.csv").write_text("user,item\n1,2\n")
    res = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1

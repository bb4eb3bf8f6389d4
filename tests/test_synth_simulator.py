"""The `simulator` generator: the feed simulator's model fitted to train users (the shared contract over every
generator, save and load included, is in test_synth_generators.py)."""
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from feedgan.cli import app
from feedgan.data.readers import read, write_table
from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.synth import Profiles
from feedgan.synth.fidelity import fidelity
from feedgan.synth.generators import Generator, IndependentGenerator, SimulatorGenerator
from feedgan.synth.utility import tstr


@pytest.fixture(scope="module")
def world():
    sim = simulate(SimulationConfig(n_users=1000, n_items=400, seed=1))
    return sim, Profiles.from_interactions(sim.interactions).split_users(seed=0)


@pytest.fixture(scope="module")
def samples(world):
    _, (train, _, _) = world
    gens = {"simulator": SimulatorGenerator().fit(train, seed=0), "independent": IndependentGenerator().fit(train)}
    return gens, {name: g.sample(train.n_users, seed=1) for name, g in gens.items()}


def test_the_fit_finds_the_planted_topics_and_friend_graph(world, samples):
    sim, (train, _, _) = world
    gen = samples[0]["simulator"]
    seen = gen.popularity_ > 0
    truth = sim.item_topic[train.items.astype(np.int64)]
    assert adjusted_rand_score(truth[seen], gen.item_topic_[seen]) > 0.5
    assert adjusted_rand_score(np.random.default_rng(0).permutation(truth[seen]), gen.item_topic_[seen]) < 0.05
    cfg = gen.config_
    assert cfg.n_topics == 16 and cfg.n_communities == 8 and abs(gen.community_share_.sum() - 1) < 1e-9
    assert cfg.mean_friends == pytest.approx(train.friends.getnnz(1).mean())
    chance = (gen.community_share_ ** 2).sum()  # the within share of friendships blind to communities
    assert cfg.homophily > 2 * chance and cfg.degree_sigma > 0.3  # the simulator's 0.8 and 1.0, through fitted labels


def test_interest_concentration_follows_the_data():
    def fitted(concentration):
        sim = simulate(SimulationConfig(n_users=600, n_items=300, interest_concentration=concentration, seed=2))
        train = Profiles.from_interactions(sim.interactions)
        return SimulatorGenerator(n_topics=8, n_communities=4).fit(train, seed=0).config_.interest_concentration

    loose, tight = fitted(0.5), fitted(50.0)
    assert tight > 3 * loose


def test_samples_keep_the_topic_structure_that_the_floor_loses(world, samples):
    _, (train, holdout, test) = world
    synth = samples[1]
    fid = {name: fidelity(holdout, s, train) for name, s in synth.items()}
    co = {name: f["cooccurrence_overlap"]["synth"] for name, f in fid.items()}
    assert co["simulator"] > co["independent"] + 0.15
    ease = {name: tstr(train, s, test, models=("ease",))["models"]["ease"]["ratio"]["ndcg@20"]
            for name, s in synth.items()}
    assert ease["simulator"] > ease["independent"] + 0.2
    pop = {name: f["popularity_1_minus_tvd"]["synth"] for name, f in fid.items()}
    assert pop["simulator"] > pop["independent"] - 0.05  # popularity about as close to the real as the floor's
    real = np.asarray(train.union().sum(0)).ravel()
    assert np.corrcoef(real, np.asarray(synth["simulator"].union().sum(0)).ravel())[0, 1] > 0.9


def test_friends_come_from_the_simulators_graph_with_homophily(samples):
    gen = samples[0]["simulator"]
    n = 3000
    rng = np.random.default_rng(0)
    community = rng.choice(len(gen.community_share_), size=n, p=gen.community_share_).astype(np.int32)
    f = gen._friends(community, rng).tocoo()
    assert (f.row != f.col).all() and abs(f.nnz / n - gen.config_.mean_friends) < 0.1 * gen.config_.mean_friends
    within = np.mean(community[f.row] == community[f.col])
    assert abs(within - gen.config_.homophily) < 0.05


def test_a_saved_generator_keeps_the_fitted_config(samples, tmp_path):
    gen = samples[0]["simulator"]
    gen.save(tmp_path / "g")
    back = Generator.load(tmp_path / "g")
    assert back.config_ == gen.config_ and np.array_equal(back.item_topic_, gen.item_topic_)


def test_cli_fits_and_samples_the_simulator(world, tmp_path):
    sim, _ = world
    data, friends, runs = tmp_path / "log.csv", tmp_path / "friends.csv", tmp_path / "runs"
    write_table(sim.interactions, data)
    sim.interactions.social[["src", "dst"]].to_csv(friends, index=False)
    runner = CliRunner()
    res = runner.invoke(app, ["synth", "fit", str(data), "--social", str(friends), "--generator", "simulator",
                              "-p", "n_topics=8", "--runs-dir", str(runs), "--no-progress"])
    assert res.exit_code == 0, res.output
    (run,) = runs.iterdir()
    out = tmp_path / "synth.parquet"
    res = runner.invoke(app, ["synth", "sample", str(run), "-n", "300", "--out", str(out)])
    assert res.exit_code == 0, res.output
    back = read(out, social=out.with_name("synth.friends.csv"))
    assert back.frame["user"].nunique() == 300 and back.has_timestamps and len(back.social) > 0
    res = runner.invoke(app, ["synth", "fit", str(data), "--generator", "simulator", "-p", "n_topics=0",
                              "--runs-dir", str(runs)])
    assert res.exit_code != 0 and "n_topics must be a positive integer" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1

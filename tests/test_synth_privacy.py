"""Privacy figures: by hand on tiny sets, and the two controls: a copier (must be caught) and an
independent sampler (must look private).

Tolerances for "about 0.5": with n members and n non-members the ROC-AUC of an uninformative score
has standard deviation sqrt((2n + 1) / (12 n^2)), 0.017 at n = 600, so 0.07 is about four of them;
a share over 600 synthetic users has standard deviation at most 0.5 / sqrt(600) = 0.02, so 0.08."""
import numpy as np
import pytest
import scipy.sparse as sp
from synth_standins import copy_sample, independent_sample, sim_profiles

from feedgan.data.schema import DataError
from feedgan.synth import Profiles
from feedgan.synth import privacy as priv
from feedgan.synth.privacy import (
    distance_attack,
    distance_to_closest_record,
    exact_copies,
    nearest_distances,
    privacy,
    shadow_attack,
)

AUC_TOL, SHARE_TOL = 0.07, 0.08


def sets(*profiles: list[set[int]], n_items: int = 6) -> list[Profiles]:
    """One Profiles (a single ``view`` action) per list of item sets."""
    out = []
    for k, users in enumerate(profiles):
        rows = [u for u, s in enumerate(users) for _ in s]
        cols = [i for s in users for i in sorted(s)]
        m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(users), n_items))
        out.append(Profiles(np.array([f"s{k}-{u}" for u in range(len(users))]), np.arange(n_items), {"view": m}))
    return out


@pytest.fixture(scope="module")
def split():
    train, holdout = sim_profiles(n_users=1200, n_items=300).split_users((0.5, 0.5), seed=0)
    return train, holdout


def test_nearest_distances_match_sets_and_survive_blocking(monkeypatch):
    rng = np.random.default_rng(0)
    a = sp.csr_matrix(rng.random((23, 15)) < 0.3, dtype=np.float32)
    b = sp.csr_matrix(rng.random((17, 15)) < 0.3, dtype=np.float32)
    a = sp.vstack([a[:3], sp.csr_matrix((1, 15)), a[4:]]).tocsr()  # an empty profile: distance 1 from everything
    sa, sb = [set(r.indices) for r in a], [set(r.indices) for r in b]
    jd = lambda x, y: 1 - len(x & y) / len(x | y) if x | y else 1.0
    want = np.sort([[jd(x, y) for y in sb] for x in sa], axis=1)[:, :3]
    monkeypatch.setattr(priv, "CHUNK_CELLS", 40)  # blocks of two rows
    assert np.allclose(nearest_distances(a, b, k=3), want, atol=1e-6)
    assert np.all(nearest_distances(a, b, k=3)[3] == 1.0)


def test_copies_and_dcr_by_hand():
    train, holdout, synth = sets([{0, 1}, {2}], [{2}, {3}], [{0, 1}, {1}, set()])
    # {0, 1} copies a train user; {1} does not; the empty profile is never a copy. Holdout {2} equals train {2}.
    assert exact_copies(train, holdout, synth) == {"synth_rate": pytest.approx(1 / 3), "natural_rate": 0.5}
    train, holdout, synth = sets([{0, 1}], [{2, 3}], [{0, 1, 2}])
    d = distance_to_closest_record(train, holdout, synth)
    # to train: 1 - 2/3; to holdout: 1 - 1/4
    assert (d["dcr_train_median"], d["dcr_holdout_median"]) == pytest.approx((1 / 3, 3 / 4))
    assert (d["closer_to_train_share"], d["expected_if_private"], d["closer_to_train_excess"]) == (1.0, 0.5, 1.0)


def test_copy_real_is_caught_by_every_measure(split):
    train, holdout = split
    out = privacy(train, holdout, copy_sample(train), fit_sample=copy_sample)
    assert out["exact_copies"]["synth_rate"] == 1.0
    assert out["exact_copies"]["natural_rate"] < 0.1
    assert out["dcr"]["closer_to_train_share"] > 0.95 and out["dcr"]["dcr_train_median"] == 0.0
    assert out["mia_distance"]["auc"] > 0.95
    assert out["mia_shadow"]["auc"] > 0.95


def test_copying_half_the_members_halves_the_attack_advantage(split):
    train, holdout = split
    half = copy_sample(train, n=train.n_users // 2)
    # copied members sit at distance 0 and outrank everyone; the other members look like non-members:
    # AUC = 1/2 * 1 + 1/2 * 1/2 = 3/4 (less a little for non-members that collide with a copy)
    assert distance_attack(train, holdout, half)["auc"] == pytest.approx(0.75, abs=0.03)
    share = distance_to_closest_record(train, holdout, half)["closer_to_train_share"]
    assert share > 0.95  # every synthetic user is still a train user


def test_an_independent_sampler_looks_private(split):
    train, holdout = split
    synth = independent_sample(train, holdout.n_users, seed=1)
    fit = lambda p: independent_sample(p, p.n_users, seed=2)
    out = privacy(train, holdout, synth, fit_sample=fit)
    assert out["exact_copies"]["synth_rate"] <= out["exact_copies"]["natural_rate"] + 0.02
    assert out["dcr"]["expected_if_private"] == pytest.approx(0.5, abs=0.01)  # 591 vs 591 users
    assert abs(out["dcr"]["closer_to_train_share"] - 0.5) < SHARE_TOL
    assert abs(out["mia_distance"]["auc"] - 0.5) < AUC_TOL
    assert abs(out["mia_shadow"]["auc"] - 0.5) < AUC_TOL


def test_unequal_sizes_set_the_private_expectation(split):
    train, holdout = split
    small = holdout.subset(np.arange(200))
    d = distance_to_closest_record(train, small, independent_sample(train, 600, seed=3))
    expected = train.n_users / (train.n_users + 200)
    assert d["expected_if_private"] == pytest.approx(expected)
    assert abs(d["closer_to_train_share"] - expected) < SHARE_TOL
    assert distance_attack(train, small, copy_sample(train))["n_per_class"] == 200


def test_shadow_attack_is_skipped_without_a_refit(split):
    train, holdout = split
    assert "skipped" in shadow_attack(train, holdout, copy_sample(train), None)


def test_other_catalogues_are_refused_in_one_line(split):
    train, holdout = split
    other = Profiles(train.users, train.items[::-1].copy(), train.actions)
    for f in (exact_copies, distance_to_closest_record, distance_attack):
        with pytest.raises(DataError, match="'synth' and 'train' profiles are over different item catalogues"):
            f(train, holdout, other)
    with pytest.raises(DataError, match="'shadow_synth' and 'train'"):
        shadow_attack(train, holdout, copy_sample(train), lambda p: other)

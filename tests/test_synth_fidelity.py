"""Fidelity figures on hand-made profile sets whose answers are worked out by hand."""
import numpy as np
import pytest
import scipy.sparse as sp
from synth_standins import copy_sample, sim_profiles

from feedgan.data.schema import DataError
from feedgan.synth import Profiles
from feedgan.synth.fidelity import fidelity, gini, neighbour_overlap, neighbours

ITEMS = np.array([10, 11, 12, 13])
T0 = 1_600_000_000


def make(actions: dict[str, list[tuple[int, int]]], n_users: int = 4, items=ITEMS, times=None, friends=None):
    """Profiles from (user, item) pairs per action; ``times``: action -> timestamps in the same order."""
    def csr(pairs, values=None):
        r, c = zip(*pairs) if pairs else ((), ())
        v = np.ones(len(r)) if values is None else np.asarray(values, dtype=np.float64)
        return sp.csr_matrix((v, (r, c)), shape=(n_users, len(items)))
    acts = {a: csr(p) for a, p in actions.items()}
    ts = None if times is None else {a: csr(actions[a], t) for a, t in times.items()}
    return Profiles(np.array([f"u{i}" for i in range(n_users)]), np.asarray(items), acts, ts, friends)


@pytest.fixture(scope="module")
def sim():
    return sim_profiles(n_users=800, n_items=250)


def similarities(out: dict):
    """Every {synth, ceiling} similarity pair of a fidelity result, flattened."""
    for key, v in out.items():
        if key == "funnel":
            yield from ((f"funnel {k}", x) for k, x in v.items())
        elif "synth" in v and "ceiling" in v and key not in ("gini", "long_tail_share"):
            yield key, v


def test_identical_and_shuffled_sets_score_one_everywhere(sim):
    out = fidelity(sim, copy_sample(sim, seed=3), sim)
    pairs = dict(similarities(out))
    assert {"activity_1_minus_tvd", "popularity_1_minus_tvd", "action_mix_1_minus_tvd", "inter_event_1_minus_ks",
            "friend_degree_1_minus_tvd", "cooccurrence_overlap", "funnel like|view", "funnel share|like"} <= set(pairs)
    for key, v in pairs.items():
        assert v["synth"] == pytest.approx(1.0) and v["ceiling"] == pytest.approx(1.0), key
    assert out["gini"]["synth"] == pytest.approx(out["gini"]["real"])


def test_ceiling_is_the_reference_scored_like_a_synthetic_set(sim):
    a, b, c = sim.split_users((0.4, 0.3, 0.3), seed=1)
    one, two = fidelity(a, b, c), fidelity(a, c, b)
    for (key, x), (_, y) in zip(similarities(one), similarities(two)):
        assert x["ceiling"] == pytest.approx(y["synth"]), key
        assert 0.0 <= x["synth"] <= 1.0


def test_marginals_by_hand():
    # real: activity 1, 1, 2, 4; item events 4, 2, 1, 1 (by catalogue order)
    real = make({"view": [(0, 0), (1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (3, 3)]})
    # synth: activity 1, 2, 2, 3; item events 0, 1, 3, 4
    synth = make({"view": [(0, 3), (1, 2), (1, 3), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3)]})
    out = fidelity(real, synth, real)
    # log2 bins 0 | 1 | 2-3 | 4-7: real (0, .5, .25, .25), synth (0, .25, .75, 0): TVD = .5 * (.25 + .5 + .25)
    assert out["activity_1_minus_tvd"]["synth"] == pytest.approx(0.5)
    # shares (.5, .25, .125, .125) vs (0, .125, .375, .5): TVD = .5 * (.5 + .125 + .25 + .375) = .625
    assert out["popularity_1_minus_tvd"]["synth"] == pytest.approx(0.375)
    # Gini of (4, 2, 1, 1): sum of |x_i - x_j| over ordered pairs / (2 n^2 mean) = 20 / 64
    assert out["gini"]["real"] == pytest.approx(20 / 64)
    # head = the real top 20% = item 10 (ceil(0.8) = 1 item): real tail share 4/8, synth has nothing on it
    assert out["long_tail_share"] == pytest.approx({"real": 0.5, "synth": 1.0, "reference": 0.5})
    assert out["activity_1_minus_tvd"]["ceiling"] == 1.0
    assert "inter_event_1_minus_ks" not in out and "friend_degree_1_minus_tvd" not in out  # no times, no friends


def test_disjoint_items_score_zero():
    real = make({"view": [(0, 0), (1, 0), (1, 1), (2, 1), (3, 0)]})
    synth = make({"view": [(0, 2), (1, 2), (1, 3), (2, 3), (3, 2)]})
    out = fidelity(real, synth, real)
    assert out["popularity_1_minus_tvd"]["synth"] == 0.0
    assert out["cooccurrence_overlap"]["synth"] == 0.0 and out["cooccurrence_overlap"]["ceiling"] == 1.0
    assert out["long_tail_share"]["synth"] == 1.0
    assert out["activity_1_minus_tvd"]["synth"] == 1.0  # the same activity, elsewhere


def test_funnel_and_action_mix_by_hand():
    views = [(0, 0), (1, 0), (2, 0), (2, 1)]
    real = make({"view": views, "like": [(0, 0), (2, 1)]})           # P(like | view) = 2/4
    synth = make({"view": views, "like": [(1, 0)]})                  # 1/4
    out = fidelity(real, synth, real)
    f = out["funnel"]["like|view"]
    assert (f["real_rate"], f["synth_rate"], f["synth"], f["ceiling"]) == pytest.approx((0.5, 0.25, 0.75, 1.0))
    # action shares (4/6, 2/6) vs (4/5, 1/5): TVD = .5 * (2/15 + 2/15)
    assert out["action_mix_1_minus_tvd"]["synth"] == pytest.approx(1 - 2 / 15)
    no_likes = make({"view": views})
    assert out["funnel"].keys() == fidelity(real, no_likes, real)["funnel"].keys()
    assert fidelity(real, no_likes, real)["funnel"]["like|view"]["synth_rate"] == 0.0


def test_inter_event_times_and_friend_degrees():
    pairs = [(0, 0), (0, 1), (0, 2)]
    real = make({"view": pairs}, n_users=1, times={"view": [T0, T0 + 10, T0 + 30]})        # gaps 10, 20
    shifted = make({"view": pairs}, n_users=1, times={"view": [T0 + 99, T0 + 109, T0 + 129]})
    stretched = make({"view": pairs}, n_users=1, times={"view": [T0, T0 + 10, T0 + 50]})   # gaps 10, 40
    assert fidelity(real, shifted, real)["inter_event_1_minus_ks"]["synth"] == 1.0
    # ECDFs of {10, 20} and {10, 40} differ most at 20: 1 vs 1/2
    assert fidelity(real, stretched, real)["inter_event_1_minus_ks"]["synth"] == pytest.approx(0.5)
    untimed = make({"view": pairs}, n_users=1)
    assert fidelity(real, untimed, real)["inter_event_1_minus_ks"]["synth"] is None

    ring = sp.csr_matrix(np.roll(np.eye(4), 1, 1) + np.roll(np.eye(4), -1, 1))   # every degree 2
    star = sp.csr_matrix(np.r_[[[0, 1, 1, 1]], [[1, 0, 0, 0]] * 3])               # degrees 3, 1, 1, 1
    views = {"view": [(u, 0) for u in range(4)]}
    real, other = make(views, friends=ring), make(views, friends=star)
    # bins 0 | 1 | 2-3: ring (0, 0, 1), star (0, 3/4, 1/4)
    assert fidelity(real, other, real)["friend_degree_1_minus_tvd"] == pytest.approx({"synth": 0.25, "ceiling": 1.0})
    assert fidelity(real, make(views), real)["friend_degree_1_minus_tvd"]["synth"] is None


def test_cooccurrence_neighbours_by_hand():
    items = np.arange(6)
    real = make({"view": [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 3)]}, n_users=3, items=items)
    synth = make({"view": [(0, 0), (0, 3), (1, 0), (1, 3), (2, 0), (2, 1)]}, n_users=3, items=items)
    top = np.array([0, 1, 2, 3])
    real_nb, synth_nb = neighbours(real.union(), top, k=1), neighbours(synth.union(), top, k=1)
    # item 0: real 1 (twice) vs synth 3 (twice); item 1: 0 vs 0; item 2: 0 (tie with 1, catalogue order) vs none;
    # item 3: 0 vs 0
    assert [list(x) for x in real_nb] == [[1], [0], [0], [0]]
    assert [list(x) for x in synth_nb] == [[3], [0], [], [0]]
    assert neighbour_overlap(real_nb, synth_nb) == pytest.approx(0.5)
    out = fidelity(real, synth, real, top_items=4, k=1)["cooccurrence_overlap"]
    assert out == {"synth": 0.5, "ceiling": 1.0, "items": 4, "k": 1}


def test_gini_extremes():
    assert gini(np.array([3, 3, 3, 3])) == 0.0
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(3 / 4)


def test_other_catalogues_are_refused_in_one_line():
    real = make({"view": [(0, 0)]})
    with pytest.raises(DataError, match="'synth' and 'real' profiles are over different item catalogues "
                                        r"\(column 3 differs\).*same catalogue"):
        fidelity(real, make({"view": [(0, 0)]}, items=np.array([10, 11, 12, 99])), real)
    with pytest.raises(DataError, match=r"'reference' and 'real'.*\(3 items vs 4\)"):
        fidelity(real, real, make({"view": [(0, 0)]}, items=ITEMS[:3]))


def test_friend_degrees_of_two_random_parts_of_one_network_compare_as_one_distribution():
    from synth_standins import sim_profiles

    from feedgan.synth.fidelity import friend_degree_similarity

    train, holdout = sim_profiles(n_users=3000, n_items=100, seed=4).split_users((0.75, 0.25), seed=0)
    assert train.friends.getnnz(1).mean() > 2.5 * holdout.friends.getnnz(1).mean()  # degrees grow with the part
    assert friend_degree_similarity(holdout, train) > 0.93  # thinned to the holdout's size
    assert friend_degree_similarity(holdout, holdout) == 1.0

"""The attack's effect on recommendations: the four training logs, target exposure and the cost of false positives."""
from __future__ import annotations

import numpy as np
import pytest

from feedgan.data.schema import DataError
from feedgan.data.simulate import simulate
from feedgan.moderation.attacks import inject
from feedgan.moderation.effect import LOGS, attack_effect
from feedgan.rec.baselines import ItemKNN
from feedgan.rec.bpr import BPR


@pytest.fixture(scope="module")
def attacked():
    log = simulate(n_users=300, n_items=200, seed=5).interactions
    return inject(log, "bandwagon", size=0.3, filler=0.05, seed=1)


def fakes(a):
    return a.labels.index[a.labels == 1]


def test_a_large_bandwagon_attack_pushes_its_target_up_and_exact_removal_undoes_it(attacked):
    e = attack_effect(attacked, fakes(attacked), seed=0)
    assert e["rank_shift"]["attacked"] < -10          # pushed up the unseen-item ranking
    assert e["shift"]["attacked"] > 0
    assert e["hr"]["attacked"] > e["hr"]["clean"]
    # flagging exactly the fakes trains on exactly the clean rows: every figure returns to clean
    assert e["hr"]["cleaned"] == pytest.approx(e["hr"]["clean"])
    assert e["ndcg"]["cleaned"] == pytest.approx(e["ndcg"]["clean"])
    assert e["rank_shift"]["cleaned"] == pytest.approx(0.0, abs=1e-9)
    assert e["ndcg"]["fp_removed"] == pytest.approx(e["ndcg"]["clean"])
    assert (e["fakes_caught"], e["false_positives"], e["fakes"]) == (len(fakes(attacked)), 0, len(fakes(attacked)))
    assert set(e["hr"]) == set(LOGS) and set(e["shift"]) == set(LOGS) - {"clean"}


def test_flagging_nobody_leaves_the_attack_and_false_positives_cost_ndcg(attacked):
    none = attack_effect(attacked, [], seed=0)
    assert none["hr"]["cleaned"] == pytest.approx(none["hr"]["attacked"])
    assert none["ndcg"]["fp_removed"] == pytest.approx(none["ndcg"]["clean"])
    real = attacked.labels.index[attacked.labels == 0]
    heavy = attacked.interactions.frame.loc[lambda f: f["user"].isin(real), "user"].value_counts().index[:150]
    cost = attack_effect(attacked, heavy, seed=0)       # half the real users removed, the most active first
    assert cost["false_positives"] == 150 and cost["fakes_caught"] == 0
    assert cost["ndcg"]["fp_removed"] < cost["ndcg"]["clean"]


def test_the_holdout_is_seeded_and_another_model_can_be_measured(attacked):
    a = attack_effect(attacked, fakes(attacked)[:5], seed=3, model=ItemKNN(k=50))
    b = attack_effect(attacked, fakes(attacked)[:5], seed=3, model=ItemKNN(k=50))
    assert a == b
    assert a["users_measured"] > 0 and 0 <= a["hr"]["attacked"] <= 1 and np.isfinite(a["ndcg"]["clean"])


def test_bad_input_is_refused_with_the_fix(attacked):
    with pytest.raises(DataError, match="not in the attacked log"):
        attack_effect(attacked, ["nobody-here"])
    with pytest.raises(DataError, match="holdout"):
        attack_effect(attacked, [], holdout=1.5)
    with pytest.raises(DataError, match="fold-in"):
        attack_effect(attacked, [], model=BPR())

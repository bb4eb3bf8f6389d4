"""A run that keeps to a wall-clock budget: training stopped early, settings and seeds cut,
models left out, and every cut said; plus runs that cannot differ between seeds run once."""
from __future__ import annotations

import time

import numpy as np
import pytest

import feedgan.eval.bench as bench
from feedgan.eval.protocol import ModelSpec
from feedgan.gan import TimeLimit
from feedgan.rec.baselines import EASE, MostPopular, PureSVD
from feedgan.rec.bpr import BPR
from rec_contract import contract_dataset

TINY_BPR = {"factors": 4, "batch_size": 64, "eval_every": 1, "patience": None}


@pytest.fixture(scope="module")
def ds():
    return contract_dataset(seed=0)


def test_a_spent_time_limit_stops_training_at_its_next_validation_check(ds):
    with TimeLimit(0.0) as limit:
        cut = BPR(epochs=30, **TINY_BPR).fit(ds)
    assert limit.hits == 1 and cut.selected_params()["epochs"] == 1
    with TimeLimit(3600.0) as limit:  # a limit far away changes nothing
        full = BPR(epochs=3, **TINY_BPR).fit(ds)
    assert limit.hits == 0 and len(full.valid_history_) == 3
    # outside any limit the schedule runs to its end
    assert len(BPR(epochs=3, **TINY_BPR).fit(ds).valid_history_) == 3


def test_a_spent_budget_cuts_settings_seeds_and_later_models_and_says_so(ds):
    budget = bench.Budget(0.0)
    specs = [ModelSpec(EASE, grid={"l2": [1.0, 10.0, 100.0]}), ModelSpec(MostPopular)]
    rows = bench.run_bench(lambda s: contract_dataset(seed=s), specs, seeds=3, ks=(5,), metric="ndcg@5",
                           max_trials=None, budget=budget)
    # the first model still runs (one setting, one seed) so there is a board; the rest is left out
    assert [r["model"] for r in rows] == ["ease"]
    assert len(rows[0]["trials"]) == 1 and rows[0]["runs"] == 1 and not rows[0]["deterministic"]
    assert rows[0]["cut"] == ["1 of 3 settings tried (time budget)", "1 of 3 seeds (time budget)"]
    assert budget.cuts == ["ease: 1 of 3 settings tried (time budget)", "ease: 1 of 3 seeds (time budget)",
                           "most-popular: left out (the time budget was spent before it started)"]
    md = bench.results_markdown(rows, ["ndcg@5"])
    assert "Cut by the time budget:" in md and "- ease: 1 of 3 settings tried" in md


def test_a_budget_that_suffices_cuts_nothing(ds):
    budget = bench.Budget(600.0)
    specs = [ModelSpec(EASE, grid={"l2": [1.0, 10.0]}), ModelSpec(BPR, fixed={"epochs": 2, **TINY_BPR})]
    rows = bench.run_bench(lambda s: contract_dataset(seed=s), specs, seeds=2, ks=(5,), metric="ndcg@5",
                           max_trials=None, budget=budget)
    assert budget.cuts == [] and all(r["cut"] == [] and r["runs"] == 2 for r in rows)


def test_budget_parts_share_one_list_of_cuts():
    whole = bench.Budget(10.0)
    part = whole.part(0.5)
    assert 4.0 < part.left() <= 5.0
    part.cut("x: left out")
    part.part(1.0, "likes: ").cut("y: 1 of 3 seeds")
    assert whole.cuts == ["x: left out", "likes: y: 1 of 3 seeds"]
    time.sleep(0.01)
    assert whole.left() < 10.0


def test_a_deterministic_model_on_one_predefined_split_runs_once_and_the_table_says_so(ds):
    specs = [ModelSpec(EASE, grid={"l2": [10.0]}), ModelSpec(BPR, fixed={"epochs": 2, "factors": 4, "batch_size": 64}),
             ModelSpec(PureSVD, fixed={"factors": 4}, label="svd4")]
    rows = {r["model"]: r for r in bench.run_bench(lambda s: ds, specs, seeds=3, ks=(5,), metric="ndcg@5")}
    assert rows["ease"]["runs"] == 1 and rows["ease"]["deterministic"] and rows["ease"]["seeds"] == 3
    # PureSVD's seed only starts the solver: the same subspace, the same scores
    assert rows["svd4"]["runs"] == 1 and rows["svd4"]["deterministic"]
    one, other = PureSVD(factors=4, seed=0).fit(ds), PureSVD(factors=4, seed=7).fit(ds)
    users = np.arange(ds.n_users)
    np.testing.assert_allclose(one.score(users, ds.history("test")), other.score(users, ds.history("test")),
                               atol=1e-5)
    assert rows["bpr"]["runs"] == 3 and not rows["bpr"]["deterministic"]  # its seed changes the fit
    md = bench.results_markdown(list(rows.values()), ["ndcg@5"])
    ease_line = next(line for line in md.splitlines() if line.startswith("| ease |"))
    assert "| 1 (deterministic) |" in ease_line
    assert "| 3 |" in next(line for line in md.splitlines() if line.startswith("| bpr |"))


def test_progress_lines_name_the_variant_not_its_class(ds, capsys):
    from feedgan.progress import LineProgress

    spec = ModelSpec(EASE, grid={"l2": [10.0]}, label="ease-variant")
    bench.run_bench(lambda s: ds, [spec], seeds=1, ks=(5,), metric="ndcg@5", progress=LineProgress(every_s=0))
    err = capsys.readouterr().err
    assert "evaluate ease-variant on test" in err and "evaluate ease on" not in err

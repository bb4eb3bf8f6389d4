"""The benchmark runner: no setting is ever chosen on pairs that a test then scores."""
from __future__ import annotations

import pytest

import feedgan.eval.bench as bench
from feedgan.eval.protocol import ModelSpec
from feedgan.rec.baselines import EASE
from feedgan.rec.bpr import BPR
from rec_contract import contract_dataset


def _pairs(ds, parts) -> set[tuple[str, str]]:
    """The (raw user, raw item) pairs of ``parts`` of ``ds``."""
    out = set()
    for part in parts:
        coo = ds.matrix(part).tocoo()
        out |= set(zip(ds.user_ids.raw(coo.row).tolist(), ds.item_ids.raw(coo.col).tolist()))
    return out


@pytest.fixture
def spied(monkeypatch):
    """Record which dataset each tuning ran on (and what it chose), and which dataset and
    params each refit used."""
    tunes, refits = [], []
    real_tune, real_refit = bench.tune, bench.refit_and_test

    def tune(spec, dataset, **kw):
        params, trials = real_tune(spec, dataset, **kw)
        tunes.append((dataset, params))
        return params, trials

    def refit(spec, params, dataset, **kw):
        refits.append((dataset, params))
        return real_refit(spec, params, dataset, **kw)

    monkeypatch.setattr(bench, "tune", tune)
    monkeypatch.setattr(bench, "refit_and_test", refit)
    return tunes, refits


def test_every_re_split_seed_is_tuned_on_its_own_validation_part(spied):
    tunes, refits = spied
    made = {s: contract_dataset(seed=s) for s in range(3)}
    # the leak this guards against is real: seed 0's tuning pairs hold later seeds' test pairs
    assert _pairs(made[0], ("train", "valid")) & _pairs(made[1], ("test",))
    spec = ModelSpec(EASE, grid={"l2": [0.1, 10.0, 1000.0]})
    row = bench.run_bench(lambda s: made[s], [spec], seeds=3, ks=(5,), metric="ndcg@5", max_trials=None)[0]

    assert [d for d, _ in tunes] == [made[0], made[1], made[2]]
    assert len(refits) == 3
    for (refit_on, used), chosen in zip(refits, row["params_by_seed"]):
        tuned_on, picked = next((d, p) for d, p in tunes if d is refit_on)
        assert used == picked == chosen  # the refit used what its own split's validation chose
        # and that choice never saw a pair the refit's test then scores
        assert not _pairs(tuned_on, ("train", "valid")) & _pairs(refit_on, ("test",))
    assert row["params"] == row["params_by_seed"][0]


def test_a_fixed_split_is_tuned_once_and_only_the_model_seed_varies(spied):
    tunes, refits = spied
    ds = contract_dataset(seed=0)
    spec = ModelSpec(BPR, grid={"factors": [4, 8]}, fixed={"epochs": 2, "batch_size": 64})
    row = bench.run_bench(lambda s: ds, [spec], seeds=3, ks=(5,), metric="ndcg@5", max_trials=None)[0]
    assert len(tunes) == 1 and len(refits) == 3
    assert row["params_by_seed"] == [tunes[0][1]] * 3


def test_chosen_cell_counts_the_seeds_behind_each_setting():
    same = {"params": {"l2": 5.0}, "params_by_seed": [{"l2": 5.0}] * 3}
    assert bench.chosen_cell(same) == "l2=5.0"
    split = {"params": {"l2": 5.0}, "params_by_seed": [{"l2": 5.0}, {"l2": 50.0}, {"l2": 5.0}]}
    assert bench.chosen_cell(split) == "l2=5.0 (2 of 3 seeds); l2=50.0 (1 of 3 seeds)"
    assert bench.chosen_cell({"params": {}}) == "-"

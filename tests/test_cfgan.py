"""CFGAN: the recommender contract in every mode, plus behaviour that can fail."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.schema import validate
from feedgan.eval.metrics import evaluate
from feedgan.eval.protocol import ModelSpec
from feedgan.rec.baselines import MostPopular
from feedgan.rec.cfgan import CFGAN, CFGANTask

from rec_contract import RecommenderContract, assert_refit_trains_the_chosen_epochs

SMALL = dict(g_hidden=(16,), d_hidden=(8,), batch_g=16, batch_d=16, g_steps=1, d_steps=1, epochs=3,
             eval_every=1, lr_g=1e-3, lr_d=1e-3)


class TestCFGANUserZR(RecommenderContract):
    def make_model(self):
        return CFGAN(mode="user", scheme="ZR", noise_dim=4, seed=0, **SMALL)


class TestCFGANAutoencoder(RecommenderContract):
    def make_model(self):
        return CFGAN(mode="user", scheme="ZP", adversarial=False, seed=0, **SMALL)


def planted(seed=0, n_groups=3, users_per=40, block=15):
    """Each user group likes its own block of items (plus one random item)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for u in range(users_per):
            items = rng.choice(block, size=8, replace=False) + g * block
            rows += [(f"g{g}u{u}", int(i)) for i in items] + [(f"g{g}u{u}", int(rng.integers(n_groups * block)))]
    import pandas as pd

    inter = validate(pd.DataFrame(rows, columns=["user", "item"]))
    return prepare(inter, DataConfig(split="random", valid=0.2, test=0.2, seed=seed))


def test_masks_follow_the_scheme():
    X = sp.csr_matrix(np.array([[1, 0, 0, 0, 1, 0]] * 4, dtype=np.float32))
    gen = torch.Generator().manual_seed(0)
    for scheme, pm_on, zr_on in (("ZR", False, True), ("PM", True, False), ("ZP", True, True)):
        task = CFGANTask(X, scheme, s_zr=1.0, s_pm=1.0, alpha=0.1, noise_dim=0, steps_per_epoch=1)
        b = task.real_batch(4, gen)
        observed = b["real"] == 1
        # with shares of 1, every unobserved entry is sampled; observed ones never are
        assert bool((b["mask"][~observed] == 1).all()) == pm_on
        assert bool((b["zr"][~observed] == 1).all()) == zr_on
        assert (b["zr"][observed] == 0).all() and (b["mask"][observed] == 1).all()
        fake = torch.full_like(b["real"], 0.5)
        extra = task.g_extra_loss(fake, b)
        assert (extra is None) == (scheme == "PM")
        if extra is not None:  # alpha * sum over the 4 unobserved entries of 0.5^2
            assert float(extra) == pytest.approx(0.1 * 4 * 0.25)


def test_learns_planted_groups_and_picks_epoch_on_validation():
    ds = planted()
    model = CFGAN(mode="user", scheme="ZP", s_zr=0.5, s_pm=0.5, alpha=0.1, g_hidden=(32,), d_hidden=(16,),
                  lr_g=1e-2, lr_d=1e-3, batch_g=32, batch_d=32, g_steps=1, d_steps=1, epochs=60, eval_every=10,
                  activation="relu", seed=0).fit(ds)
    pop = MostPopular().fit(ds)
    ours, base = evaluate(model, ds, "valid")["ndcg@10"], evaluate(pop, ds, "valid")["ndcg@10"]
    assert ours > base + 0.1, (ours, base)
    epochs = [e for e, _ in model.valid_history_]
    assert epochs == [10, 20, 30, 40, 50, 60]
    best = max(model.valid_history_, key=lambda t: t[1])
    assert model.best_epoch_ == best[0] and model.selected_params() == {"epochs": best[0]}


def test_tuning_carries_the_chosen_epoch_into_the_refit():
    fixed = {**SMALL, "mode": "user", "epochs": 60, "eval_every": 1, "patience": 1}
    assert_refit_trains_the_chosen_epochs(ModelSpec(CFGAN, grid={"alpha": [0.1]}, fixed=fixed), planted())


def test_bad_settings_are_clear(tmp_path):
    ds = planted()
    with pytest.raises(ValueError, match="scheme"):
        CFGAN(scheme="XY", **SMALL).fit(ds)
    with pytest.raises(ValueError, match="mode"):
        CFGAN(mode="both", **SMALL).fit(ds)


def test_generator_output_layer_is_configurable():
    ds = planted()
    lin = CFGAN(g_output="linear", mode="user", **SMALL).fit(ds)
    sig = CFGAN(mode="user", **SMALL).fit(ds)
    assert not isinstance(lin.generator_[-1], torch.nn.Sigmoid) and isinstance(sig.generator_[-1], torch.nn.Sigmoid)
    with pytest.raises(ValueError, match="g_output"):
        CFGAN(g_output="relu", **SMALL).fit(ds)

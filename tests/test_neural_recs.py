"""BPR and Mult-VAE: the shared recommender contract plus behaviour checks that can fail.

The behaviour checks use a planted-structure dataset: three user groups of different sizes, each
interacting only inside its own block of items (plus a little noise). Popularity is dominated by
the largest group, so MostPopular serves the other groups badly, while any model that learns
the groups ranks each user's held-out block items near the top.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from feedgan.data.dataset import Dataset, IdMap, Part
from feedgan.eval.metrics import evaluate
from feedgan.eval.protocol import ModelSpec
from feedgan.rec.base import Recommender
from feedgan.rec.baselines import MostPopular
from feedgan.rec.bpr import BPR
from feedgan.rec.multvae import MultVAE
from rec_contract import RecommenderContract, assert_refit_trains_the_chosen_epochs


class TestBPRWithBias(RecommenderContract):
    def make_model(self):
        return BPR(factors=8, lr=0.01, epochs=3, batch_size=64, neg_per_pos=3, item_bias=True, seed=3)


# -- planted structure ------------------------------------------------------------------------------
GROUP_SIZES = (70, 40, 30)  # users per group; group 0 dominates popularity
BLOCK = 20  # items per group's block
N_ITEMS = BLOCK * len(GROUP_SIZES)


def planted_dataset(seed: int = 0, per_user: int = 10, held_out: int = 3) -> Dataset:
    """Each user picks ``per_user`` items of their group's block and one random item anywhere;
    ``held_out`` of the block items go to the validation part."""
    rng = np.random.default_rng(seed)
    tr_rows, tr_cols, va_rows, va_cols = [], [], [], []
    u = 0
    for g, size in enumerate(GROUP_SIZES):
        for _ in range(size):
            items = g * BLOCK + rng.choice(BLOCK, per_user, replace=False)
            noise = rng.integers(N_ITEMS)
            train = np.union1d(items[held_out:], [noise])
            valid = np.setdiff1d(items[:held_out], train)
            tr_rows += [u] * len(train)
            tr_cols += train.tolist()
            va_rows += [u] * len(valid)
            va_cols += valid.tolist()
            u += 1
    shape = (u, N_ITEMS)

    def part(rows, cols):
        return Part({"view": sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)})

    parts = {"train": part(tr_rows, tr_cols), "valid": part(va_rows, va_cols), "test": part([], [])}
    return Dataset(IdMap(np.arange(u), "user"), IdMap(np.arange(N_ITEMS), "item"), parts)


@pytest.fixture(scope="module")
def planted() -> Dataset:
    return planted_dataset()


@pytest.fixture(scope="module")
def popular_ndcg(planted) -> float:
    return evaluate(MostPopular().fit(planted), planted, "valid", ks=(10,))["ndcg@10"]


@pytest.fixture(scope="module")
def bpr(planted) -> BPR:
    return BPR(factors=16, lr=0.02, epochs=20, batch_size=128, seed=0).fit(planted)


@pytest.fixture(scope="module")
def vae(planted) -> MultVAE:
    return MultVAE(hidden=64, latent=16, epochs=30, batch_size=32, lr=3e-3, anneal_steps=200,
                   seed=0).fit(planted)


def test_bpr_beats_most_popular_on_planted_groups(bpr, planted, popular_ndcg):
    ndcg = evaluate(bpr, planted, "valid", ks=(10,))["ndcg@10"]
    assert ndcg > popular_ndcg + 0.15, (ndcg, popular_ndcg)


def test_multvae_beats_most_popular_on_planted_groups(vae, planted, popular_ndcg):
    ndcg = evaluate(vae, planted, "valid", ks=(10,))["ndcg@10"]
    assert ndcg > popular_ndcg + 0.15, (ndcg, popular_ndcg)


def test_bpr_loss_decreases(bpr):
    losses = bpr.loss_history_
    assert isinstance(losses, list) and len(losses) == bpr.epochs
    assert losses[0] == pytest.approx(np.log(2), abs=0.05)  # random init: x_ui ~ x_uj
    assert losses[-1] < 0.6 * losses[0], losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_multvae_loss_decreases(vae):
    losses = vae.loss_history_
    assert len(losses) == vae.epochs and losses[-1] < losses[0], losses


def test_bpr_scores_are_factor_products(bpr):
    users = np.array([0, 75, 130])
    expected = bpr.user_factors_[users] @ bpr.item_factors_.T + bpr.item_bias_
    np.testing.assert_allclose(bpr.score(users), expected, rtol=1e-5, atol=1e-6)
    assert bpr.user_factors_.dtype == bpr.item_factors_.dtype == np.float32
    assert bpr.user_factors_.shape == (sum(GROUP_SIZES), 16) and bpr.item_factors_.shape == (N_ITEMS, 16)
    assert not bpr.item_bias_.any()  # item_bias=False keeps it at zero


def test_multvae_fold_in_of_unseen_history_matches_known_user(vae, planted):
    X = planted.matrix("train")
    rows = X[[5, 80]]  # histories the model saw, presented as brand-new users
    np.testing.assert_allclose(vae.score(None, history=rows), vae.score([5, 80]), rtol=1e-5, atol=1e-6)
    # a history nobody has: folded in, and given to a known user, it scores the same
    new = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 0], [2, 25, 47])), shape=(1, N_ITEMS), dtype=np.float32)
    folded = vae.score(None, history=new)
    np.testing.assert_allclose(folded, vae.score([0], history=new), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(folded, vae.score([100], history=new), rtol=1e-5, atol=1e-6)
    assert not np.allclose(folded, vae.score([0]))  # the history, not the user index, decides


def test_multvae_fold_in_follows_the_planted_group(vae):
    # a new user holding only group-2 items gets group-2 items first
    hist = sp.csr_matrix(np.isin(np.arange(N_ITEMS), [40, 41, 42, 43]).astype(np.float32)[None, :])
    items, _ = vae.recommend(None, n=5, history=hist)
    assert ((items[0] >= 2 * BLOCK) & (items[0] < 3 * BLOCK)).all(), items


def test_multvae_save_stores_plain_weight_arrays(vae, tmp_path):
    from safetensors.numpy import load_file

    vae.save(tmp_path / "m")
    arrays = load_file(str(tmp_path / "m" / "model.safetensors"))
    weights = {k for k in arrays if k.startswith("state.")}
    assert weights == {f"state.network.{layer}.{p}" for layer in ("enc_hidden", "enc_out", "dec_hidden", "dec_out")
                       for p in ("weight", "bias")}
    assert arrays["state.network.enc_hidden.weight"].shape == (64, N_ITEMS)
    back = Recommender.load(tmp_path / "m")
    assert not hasattr(back, "loss_history_")  # training diagnostics are not part of the saved model
    np.testing.assert_array_equal(back.score(None, history=vae.train_[:7]), vae.score(np.arange(7)))


@pytest.mark.parametrize("make", [lambda: BPR(factors=4, epochs=2, batch_size=256),
                                  lambda: MultVAE(hidden=16, latent=4, epochs=2, batch_size=64)])
def test_seeded_without_touching_global_rng(make, planted):
    state = torch.random.get_rng_state()
    a = make().set_params(seed=1).fit(planted).score(np.arange(10))
    assert torch.equal(state, torch.random.get_rng_state())
    b = make().set_params(seed=2).fit(planted).score(np.arange(10))
    assert not np.allclose(a, b)


class _Progress:
    """Records the calls a Rich Progress would get."""

    def __init__(self):
        self.tasks, self.advanced = [], 0

    def add_task(self, description, total=None):
        self.tasks.append((description, total))
        return len(self.tasks) - 1

    def advance(self, task, advance=1):
        self.advanced += advance


@pytest.mark.parametrize("make", [lambda: BPR(factors=4, epochs=3, batch_size=256),
                                  lambda: MultVAE(hidden=16, latent=4, epochs=3, batch_size=64)])
def test_progress_advances_once_per_epoch(make, planted):
    prog = _Progress()
    model = make().fit(planted, progress=prog)
    assert prog.tasks == [(f"fit {model.name}", 3)] and prog.advanced == 3


def test_bad_hyperparameters_fail_at_fit(planted):
    with pytest.raises(ValueError):
        BPR(factors=0).fit(planted)
    with pytest.raises(ValueError):
        MultVAE(dropout=1.0).fit(planted)


@pytest.mark.parametrize("make", [
    lambda: BPR(factors=16, lr=0.02, epochs=12, batch_size=128, eval_every=3, seed=0),
    lambda: MultVAE(hidden=64, latent=16, epochs=12, batch_size=32, lr=3e-3, anneal_steps=200, eval_every=3,
                    seed=0),
], ids=["bpr", "multvae"])
def test_validation_picks_the_epoch_and_keeps_its_weights(make, planted):
    model = make().fit(planted)  # train alone: the valid part is scored every 3 epochs
    epochs = [e for e, _ in model.valid_history_]
    assert epochs == [3, 6, 9, 12]
    best_epoch, best_value = max(model.valid_history_, key=lambda ev: ev[1])
    assert model.selected_params() == {"epochs": best_epoch}
    # the weights kept are the best epoch's: scoring them again gives the recorded value
    again = evaluate(model, planted, "valid", ks=(20,))["ndcg@20"]
    assert again == pytest.approx(best_value, abs=1e-6)


@pytest.mark.parametrize("spec", [
    ModelSpec(BPR, grid={"lr": [0.05]}, fixed=dict(factors=16, epochs=60, batch_size=128, eval_every=1, patience=1)),
    ModelSpec(MultVAE, grid={"lr": [1e-2]}, fixed=dict(hidden=32, latent=8, epochs=60, batch_size=32, anneal_steps=200,
                                                      eval_every=1, patience=1)),
], ids=["bpr", "multvae"])
def test_tuning_carries_the_chosen_epoch_into_the_refit(spec, planted):
    assert_refit_trains_the_chosen_epochs(spec, planted)


def test_validation_is_off_by_default_and_for_refits(planted):
    assert BPR(factors=8, epochs=2, seed=0).fit(planted).selected_params() == {}
    model = BPR(factors=8, epochs=2, eval_every=1, seed=0).fit(planted, parts=("train", "valid"))
    assert model.valid_history_ == [] and model.selected_params() == {}


def test_patience_stops_early(planted):
    model = BPR(factors=16, lr=0.5, epochs=40, batch_size=128, eval_every=1, patience=2, seed=0).fit(planted)
    assert len(model.valid_history_) < 40
    values = [v for _, v in model.valid_history_]
    assert max(values[-2:]) <= max(values[:-2])  # the last two evaluations brought no improvement


# -- Mult-VAE's reparameterisation noise ------------------------------------------------------------
def _vae_loss(planted, noise_scale: float, noise_seed: int) -> float:
    """One batch's loss from weights seeded 0, with the noise (and any dropout) drawn from ``noise_seed``."""
    from feedgan.rec.multvae import _Batch, _VAENet

    model = MultVAE(hidden=16, latent=4, dropout=0.0, noise_scale=noise_scale)
    net = _VAENet(N_ITEMS, 16, 4).to_empty(device="cpu")
    net.init_weights(torch.Generator().manual_seed(0))
    batch = _Batch(planted.matrix("train"), np.arange(32), torch.device("cpu"))
    with torch.no_grad():
        return float(model._loss(net, batch, 0.3, torch.Generator().manual_seed(noise_seed)))


def test_multvae_noise_scale_zero_makes_the_loss_deterministic(planted):
    # no dropout: the noise is the only draw, so at scale 0 the generator's state cannot matter
    assert _vae_loss(planted, 0.0, 1) == _vae_loss(planted, 0.0, 2)
    assert _vae_loss(planted, 1.0, 1) != _vae_loss(planted, 1.0, 2)
    # a tiny scale moves the loss far less than the full one
    base = _vae_loss(planted, 0.0, 1)
    assert abs(_vae_loss(planted, 0.01, 1) - base) < 0.1 * abs(_vae_loss(planted, 1.0, 1) - base)


def test_multvae_noise_scale_changes_the_fit(planted):
    def fit(scale):
        return MultVAE(hidden=32, latent=8, epochs=3, batch_size=32, noise_scale=scale, seed=0).fit(planted)

    full, small = fit(1.0), fit(0.01)
    assert not np.allclose(full.score([0, 80]), small.score([0, 80]))
    assert full.loss_history_ != small.loss_history_
    # the same scale and seed give the same model: the scale is all that differed
    np.testing.assert_array_equal(fit(0.01).score([0, 80]), small.score([0, 80]))


@pytest.mark.parametrize("scale", [-0.1, float("nan"), float("inf")])
def test_multvae_refuses_a_bad_noise_scale(planted, scale):
    with pytest.raises(ValueError, match="noise_scale"):
        MultVAE(hidden=8, latent=4, epochs=1, noise_scale=scale).fit(planted)

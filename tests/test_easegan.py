"""EASE-GAN: the recommender contract, its EASE starting point, and what training changes."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from feedgan.eval.metrics import evaluate
from feedgan.eval.protocol import ModelSpec
from feedgan.rec.baselines import EASE
from feedgan.rec.easegan import EASEGAN, ItemItem, LowRankItemItem, _Task

from rec_contract import RecommenderContract, assert_refit_trains_the_chosen_epochs
from test_cfgan import planted

SMALL = dict(l2=10.0, d_hidden=(8,), batch_size=16, epochs=3, eval_every=1, lr_g=1e-3, lr_d=1e-3)


class TestEASEGANWithoutDiscriminator(RecommenderContract):
    def make_model(self):
        return EASEGAN(adversarial=False, seed=0, **SMALL)


@pytest.fixture(scope="module")
def ds():
    return planted()


def test_zero_epochs_is_ease_itself(ds):
    ours = EASEGAN(l2=10.0, epochs=0).fit(ds, parts=("train", "valid"))
    ease = EASE(l2=10.0).fit(ds, parts=("train", "valid"))
    np.testing.assert_allclose(ours.score(np.arange(20)), ease.score(np.arange(20)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("adversarial", [True, False])
def test_validation_starts_at_ease_and_picks_the_best_epoch(ds, adversarial):
    model = EASEGAN(l2=10.0, dropout=0.3, epochs=6, eval_every=2, patience=None, lr_g=1e-3, batch_size=16,
                    adversarial=adversarial, seed=0).fit(ds)
    assert [e for e, _ in model.valid_history_] == [0, 2, 4, 6]
    ease_valid = evaluate(EASE(l2=10.0).fit(ds), ds, "valid", ks=(20,))["ndcg@20"]
    assert model.valid_history_[0][1] == pytest.approx(ease_valid, abs=1e-6)
    best_epoch, best_value = max(model.valid_history_, key=lambda ev: ev[1])
    assert model.selected_params() == {"epochs": best_epoch}
    assert evaluate(model, ds, "valid", ks=(20,))["ndcg@20"] == pytest.approx(best_value, abs=1e-6)


def test_training_moves_the_weights_and_the_discriminator_matters(ds):
    common = dict(l2=10.0, dropout=0.3, epochs=4, batch_size=16, lr_g=1e-3, seed=0)
    both = ("train", "valid")  # no validation part to select on: the last epoch is kept
    ease = EASE(l2=10.0).fit(ds, parts=both).B_
    gan = EASEGAN(adv_weight=1.0, **common).fit(ds, parts=both).B_
    rec = EASEGAN(adversarial=False, **common).fit(ds, parts=both).B_
    assert np.abs(gan - ease).max() > 1e-3 and np.abs(rec - ease).max() > 1e-3
    assert np.abs(gan - rec).max() > 1e-4  # the adversarial term changes the solution
    assert np.all(np.diag(gan) == 0) and np.all(np.diag(rec) == 0)


@pytest.mark.parametrize("density", [0.02, 0.5])  # the sparse and the dense product
def test_item_item_generator_ignores_the_diagonal(density):
    rng = torch.Generator().manual_seed(0)
    B = torch.randn(40, 40, generator=rng)
    c = (torch.rand(8, 40, generator=rng) < density).float()
    c[0, :2] = 1.0  # at least one row with two items
    G = ItemItem(B)
    off = B - torch.diag(torch.diagonal(B))
    torch.testing.assert_close(G(c), c @ off)
    with torch.no_grad():
        G.weight.diagonal().add_(5.0)  # the output never depends on the diagonal
    torch.testing.assert_close(G(c), c @ off)
    g = torch.randn(8, 40, generator=rng)
    (G(c) * g).sum().backward()
    mask = 1.0 - torch.eye(40)
    torch.testing.assert_close(G.weight.grad * mask, (c.T @ g) * mask)  # off-diagonal: the plain gradient


def test_task_dropout_keeps_the_expectation_and_masks_only_unobserved():
    X = sp.csr_matrix((np.random.default_rng(0).random((400, 30)) < 0.3).astype(np.float32))
    task = _Task(X, X, [], dropout=0.4, s_neg=0.5, steps_per_epoch=1)
    b = task.real_batch(4000, torch.Generator().manual_seed(0))
    observed = b["real"] == 1
    assert b["cond"][observed].mean().item() == pytest.approx(1.0, abs=0.03)  # 1/(1-p) on the kept 60%
    assert torch.all(b["cond"][~observed] == 0)
    assert torch.all(b["mask"][observed] == 1)
    assert b["mask"][~observed].mean().item() == pytest.approx(0.5, abs=0.02)
    # the extra loss is the EASE objective: squared error plus l2 / n_users * ||B||^2
    assert task.g_extra_loss(torch.zeros_like(b["real"]), b).item() == pytest.approx(
        float(b["real"].sum(1).mean()), rel=1e-6)


def test_tuning_carries_the_chosen_epoch_into_the_refit(ds):
    fixed = {**SMALL, "epochs": 60, "eval_every": 1, "patience": 1}
    assert_refit_trains_the_chosen_epochs(ModelSpec(EASEGAN, grid={"adv_weight": [0.1]}, fixed=fixed), ds)


def test_bad_settings_are_clear(ds):
    with pytest.raises(ValueError, match="dropout"):
        EASEGAN(dropout=1.0, **{k: v for k, v in SMALL.items()}).fit(ds)
    with pytest.raises(ValueError, match="loss"):
        EASEGAN(loss="nope", **SMALL).fit(ds)


def test_action_task_drops_only_the_target_part():
    rng = np.random.default_rng(1)
    Y = sp.csr_matrix((rng.random((300, 20)) < 0.2).astype(np.float32))
    A = sp.csr_matrix((rng.random((300, 20)) < 0.3).astype(np.float32))
    X = sp.csr_matrix(Y + 0.5 * A)
    task = _Task(X, Y, [A], dropout=0.5, s_neg=0.0, steps_per_epoch=1)
    b = task.real_batch(3000, torch.Generator().manual_seed(0))
    # the auxiliary part of the condition is never dropped: cond - dropout(target) == 0.5 * aux
    dropped_or_kept = b["cond"] - 0.5 * b["aux"][:, 0]
    assert torch.all((dropped_or_kept == 0) | (dropped_or_kept == 2.0))
    assert torch.all((dropped_or_kept == 2.0) <= (b["real"] == 1))
    assert torch.equal(b["mask"], b["real"])  # s_neg = 0: only observed targets are judged


def _likes_from_views():
    """60 users, 30 items, views and likes, split on likes."""
    from feedgan.data.dataset import DataConfig, prepare
    from feedgan.data.schema import validate

    rng = np.random.default_rng(0)
    n = 1500
    log = pd.DataFrame({"user": rng.integers(0, 60, n), "item": rng.integers(0, 30, n),
                        "action": rng.choice(["view", "like"], n, p=[0.7, 0.3])})
    return prepare(validate(log), DataConfig(split="random", target_action="like", seed=0))


def test_action_conditional_epoch_zero_is_stacked_ease_plus_conversion():
    from feedgan.rec.baselines import EASE

    ds = _likes_from_views()
    small = {k: v for k, v in SMALL.items() if k not in ("epochs", "l2")}
    m = EASEGAN(l2=5.0, epochs=0, **small).fit(ds, aux={"view": 0.5})
    stacked = EASE(l2=5.0).fit(ds, aux={"view": 0.5})
    np.testing.assert_allclose(m.B_, stacked.B_, rtol=1e-5, atol=1e-6)
    V, L = ds.matrix("train", "view").copy(), m.seen_
    V.data[:] = 1
    both, cnt = np.asarray(V.multiply(L).sum(0)).ravel(), np.asarray(V.sum(0)).ravel()
    prior = both.sum() / cnt.sum()
    np.testing.assert_allclose(m.D_[0], (both + 10 * prior) / (cnt + 10), rtol=1e-5)
    users = np.arange(10)
    expect = m.train_[users] @ m.B_ + V[users].toarray() * m.D_[0]
    np.testing.assert_allclose(m.score(users), expect, rtol=1e-4, atol=1e-5)
    # trained adversarially with a target: runs, reports its epoch, excludes only the user's likes
    g = EASEGAN(l2=5.0, **{**small, "epochs": 2}).fit(ds, aux={"view": 0.5})
    assert g.best_epoch_ in (0, 1, 2) and g.D_.shape == (1, ds.n_items)
    items, _ = g.recommend(users, n=5)
    for row, u in enumerate(users):
        assert not set(items[row]) & set(g.seen_[u].indices)


# -- the low-rank generator (rank=r): B = P Q^T minus its diagonal, never formed ----------------

class TestEASEGANLowRank(RecommenderContract):
    def make_model(self):
        return EASEGAN(rank=8, seed=0, **SMALL)


@pytest.mark.parametrize("density", [0.02, 0.5])  # the sparse and the dense product
def test_low_rank_generator_at_full_rank_is_the_dense_one(density):
    rng = torch.Generator().manual_seed(0)
    B = torch.randn(40, 40, generator=rng, dtype=torch.float64).float()
    U, S, Vh = torch.linalg.svd(B)
    low, dense = LowRankItemItem(U * S, Vh.T), ItemItem(B)  # P Q^T = B at rank 40
    c = (torch.rand(8, 40, generator=rng) < density).float()
    c[0, :2] = 1.0
    torch.testing.assert_close(low(c), dense(c), rtol=1e-4, atol=1e-4)
    g = torch.randn(8, 40, generator=rng)
    (low(c) * g).sum().backward()
    # the zero diagonal is part of the function: dL/dB is c^T g off the diagonal, 0 on it
    dB = (c.T @ g) * (1.0 - torch.eye(40))
    torch.testing.assert_close(low.left.grad, dB @ low.right.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(low.right.grad, dB.T @ low.left.detach(), rtol=1e-4, atol=1e-4)


def test_low_rank_start_is_the_ridge_solution_and_scores_like_the_dense_path(ds):
    l2 = 10.0
    low = EASEGAN(l2=l2, rank=ds.n_items, epochs=0).fit(ds, parts=("train", "valid"))
    X = low.train_.toarray().astype(np.float64)
    G = X.T @ X
    ridge = np.linalg.solve(G + l2 * np.eye(ds.n_items), G)  # full-rank ridge, then the diagonal removed
    np.fill_diagonal(ridge, 0.0)
    users = np.arange(20)
    np.testing.assert_allclose(low.score(users), X[users] @ ridge, rtol=1e-4, atol=1e-4)
    # the dense path's scoring of the same B gives the same scores
    B = low.P_ @ low.Q_.T
    np.fill_diagonal(B, 0.0)
    dense = EASEGAN(l2=l2, epochs=0).fit(ds, parts=("train", "valid"))
    dense._set_state({"B_": B, "D_": low.D_})
    np.testing.assert_allclose(dense.score(users), low.score(users), rtol=1e-4, atol=1e-5)


def test_low_rank_never_solves_ease_and_keeps_o_of_items_times_rank(monkeypatch):
    rng = np.random.default_rng(0)
    n_users, n_items, r = 80, 3000, 4
    X = sp.csr_matrix((rng.random((n_users, n_items)) < 0.01).astype(np.float32))

    def no_dense_solve(*a, **k):
        raise AssertionError("the low-rank generator must not solve the dense EASE system")

    monkeypatch.setattr(EASE, "_fit", no_dense_solve)
    m = EASEGAN(rank=r, l2=10.0, d_hidden=(8,), batch_size=32, epochs=1, seed=0).fit(X)
    state = m._state()
    assert set(state) == {"P_", "Q_", "D_"} and state["P_"].shape == state["Q_"].shape == (n_items, r)
    learned = [v for k, v in vars(m).items() if k.endswith("_") and isinstance(v, np.ndarray)]
    assert max(v.size for v in learned) <= n_items * r  # nothing of n_items^2 is kept
    diag = np.einsum("ir,ir->i", m.P_, m.Q_)
    assert np.abs(diag).max() > 0  # P Q^T has a diagonal; the scores must leave it out:
    unit = sp.identity(n_items, format="csr", dtype=np.float32)[:50]  # item i alone in row i
    np.testing.assert_allclose(m.score(history=unit)[np.arange(50), np.arange(50)], 0.0, atol=1e-5)


def test_low_rank_selection_keeps_epoch_zero_when_training_hurts(ds):
    common = dict(l2=10.0, rank=12, dropout=0.3, batch_size=16, d_hidden=(8,), seed=0)
    start = EASEGAN(epochs=0, **common).fit(ds)
    harsh = EASEGAN(epochs=4, eval_every=2, patience=None, lr_g=1.0, adv_weight=1.0, **common).fit(ds)
    (e0, v0), *later = harsh.valid_history_
    assert e0 == 0 and later and all(v < v0 for _, v in later)  # training at lr 1.0 wrecks the model
    assert v0 == pytest.approx(evaluate(start, ds, "valid", ks=(20,))["ndcg@20"], abs=1e-6)
    assert harsh.selected_params() == {"epochs": 0}
    np.testing.assert_allclose(harsh.score(np.arange(20)), start.score(np.arange(20)), rtol=1e-5, atol=1e-6)


def test_low_rank_action_conditional_runs_and_excludes_the_target_history():
    ds = _likes_from_views()
    small = {k: v for k, v in SMALL.items() if k not in ("epochs", "l2")}
    m = EASEGAN(l2=5.0, rank=6, epochs=2, **small).fit(ds, aux={"view": 0.5})
    assert m.P_.shape == (ds.n_items, 6) and m.D_.shape == (1, ds.n_items) and m.best_epoch_ in (0, 1, 2)
    users = np.arange(10)
    V = ds.matrix("train", "view")[users].toarray()
    B = m.P_ @ m.Q_.T
    np.fill_diagonal(B, 0.0)
    expect = m.train_[users] @ B + (V > 0) * m.D_[0]  # the channel rows are binary
    np.testing.assert_allclose(m.score(users), expect, rtol=1e-4, atol=1e-5)
    items, _ = m.recommend(users, n=5)
    for row, u in enumerate(users):
        assert not set(items[row]) & set(m.seen_[u].indices)


@pytest.mark.parametrize("rank", [0, -3, 2.5, True, "64", 10_000])
def test_bad_rank_is_one_clear_error(ds, rank):
    with pytest.raises(ValueError, match=r"rank must be None .* integer from 1 to the number of items \(45\)"):
        EASEGAN(rank=rank, **SMALL).fit(ds)


def _baselines_script():
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "feedgan_baselines_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "baselines.py")
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def test_benchmark_labels_a_low_rank_epoch_zero_apart_from_plain_ease():
    bench = _baselines_script()
    dense = {"model": "easegan", "params": {"epochs": 0, "l2": 200.0}}
    low = {"model": "easegan", "params": {"epochs": 0, "l2": 200.0, "rank": 256}}
    assert bench.is_plain_ease(dense) and not bench.is_plain_ease(low)  # the low-rank start is not EASE
    assert "rank-256 ridge start" in bench._leader_name(low) and "plain EASE" in bench._leader_name(dense)
    # the Gowalla ablation gets the same generator as the GAN it is compared with
    gow = bench.GAN_OVERRIDES["gowalla"]
    same = ("rank", "lr_g", "epochs", "batch_size")
    assert {k: gow["easegan"][1][k] for k in same} == {k: gow["easegan-noD"][1][k] for k in same}

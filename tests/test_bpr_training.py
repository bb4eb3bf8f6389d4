"""BPR's training step: the hand-written batch gradient against autograd on the documented loss,
the lazy Adam against torch's SparseAdam, whole fits against a plain autograd training loop,
seeded runs, and the step's fixed cost."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from feedgan.rec.bpr import BPR, _BatchLoss, _LazyAdam, _RowSums, _Scratch

N_USERS, N_ITEMS, D = 7, 5, 4  # small tables: every batch repeats users and items


def reference_loss(W, b, u, i, j, reg: float, item_bias: bool) -> torch.Tensor:
    """The loss of the module docstring, written with plain autograd operations."""
    pu, qi, qj = W[u], W[N_USERS + i], W[N_USERS + j]  # (B, d), (B, d), (B, n, d)
    bi, bj = (b[i, 0], b[j, 0]) if item_bias else (torch.zeros(len(i)), torch.zeros(j.shape))
    x_ui = (pu * qi).sum(-1) + bi
    x_uj = torch.einsum("bd,bnd->bn", pu, qj) + bj
    sq = pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() / j.shape[1]
    if item_bias:
        sq = sq + bi.pow(2).sum() + bj.pow(2).sum() / j.shape[1]
    return -F.logsigmoid(x_ui[:, None] - x_uj).mean() + reg * sq / len(u)


def batch(gen: torch.Generator, B: int, n: int):
    return (torch.randint(N_USERS, (B,), generator=gen), torch.randint(N_ITEMS, (B,), generator=gen),
            torch.randint(N_ITEMS, (B, n), generator=gen))


@pytest.mark.parametrize("n, item_bias", [(1, False), (3, False), (1, True), (3, True)])
def test_batch_gradient_matches_autograd_on_the_documented_loss(n, item_bias):
    gen = torch.Generator().manual_seed(n)
    W0 = torch.randn(N_USERS + N_ITEMS, D, generator=gen)
    b0 = torch.randn(N_ITEMS, 1, generator=gen)
    W, b = W0.clone().requires_grad_(), b0.clone().requires_grad_(item_bias)
    sums, scratch = (_RowSums(W), _RowSums(b) if item_bias else None), _Scratch()
    for _ in range(2):  # twice through the same sums: what one batch marked must not leak into the next
        u, i, j = batch(gen, 16, n)
        W.grad = b.grad = None
        loss = _BatchLoss.apply(W, b, u, i, j, N_USERS, 0.1, sums, scratch)
        loss.backward()
        Wr, br = W0.clone().requires_grad_(), b0.clone().requires_grad_(item_bias)
        ref = reference_loss(Wr, br, u, i, j, 0.1, item_bias)
        ref.backward()
        assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
        assert W.grad.is_sparse
        touched = torch.unique(torch.cat([u, N_USERS + i, N_USERS + j.reshape(-1)]))
        assert torch.equal(W.grad._indices()[0], touched)  # exactly the batch's rows, once each
        torch.testing.assert_close(W.grad.to_dense(), Wr.grad, rtol=1e-5, atol=1e-7)
        if item_bias:
            torch.testing.assert_close(b.grad.to_dense(), br.grad, rtol=1e-5, atol=1e-7)
        else:
            assert b.grad is None


def test_lazy_adam_makes_sparse_adams_updates():
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(20, D, generator=gen)
    ours, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    opt_ours, opt_theirs = _LazyAdam([ours], lr=0.05), torch.optim.SparseAdam([theirs], lr=0.05)
    for step in range(8):
        rows = torch.randperm(20, generator=gen)[:6].sort().values  # a few rows per step, others untouched
        grad = torch.sparse_coo_tensor(rows[None], torch.randn(6, D, generator=gen), (20, D),
                                       check_invariants=True).coalesce()
        before = ours.detach().clone()
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_theirs.step()
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-5, atol=1e-6)
        untouched = torch.ones(20, dtype=torch.bool)
        untouched[rows] = False
        assert torch.equal(ours.detach()[untouched], before[untouched])


@pytest.fixture(scope="module")
def interactions() -> sp.csr_matrix:
    X = sp.random(60, 25, density=0.2, format="csr", random_state=0)
    X.data[:] = 1.0
    return X


def reference_fit(X: sp.csr_matrix, factors: int, lr: float, reg: float, epochs: int, batch_size: int,
                  neg_per_pos: int, item_bias: bool, seed: int, optimizer: str):
    """BPR written plainly: the documented loss through autograd (sparse embedding lookups),
    torch's SparseAdam or SGD, the documented random stream (normal init, one shuffle and one
    draw of negatives per epoch)."""
    gen = torch.Generator().manual_seed(seed)
    n_users, n_items = X.shape
    P = torch.randn(n_users, factors, generator=gen) * 0.1
    Q = torch.randn(n_items, factors, generator=gen) * 0.1
    W = torch.cat([P, Q]).requires_grad_()
    b = torch.zeros(n_items, 1, requires_grad=item_bias)
    params = [W, b] if item_bias else [W]
    opt = torch.optim.SparseAdam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    pos_u = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(X.indptr)))
    pos_i = torch.from_numpy(X.indices.astype(np.int64))
    for _ in range(epochs):
        order = torch.randperm(len(pos_u), generator=gen)
        us, its = pos_u[order], pos_i[order]
        js = torch.randint(n_items, (len(order), neg_per_pos), generator=gen)
        for start in range(0, len(order), batch_size):
            u, i, j = (t[start:start + batch_size] for t in (us, its, js))
            pu, qi = F.embedding(u, W, sparse=True), F.embedding(n_users + i, W, sparse=True)
            qj = F.embedding(n_users + j, W, sparse=True)  # (B, n, d)
            bi, bj = F.embedding(i, b, sparse=True)[:, 0], F.embedding(j, b, sparse=True)[..., 0]
            z = ((pu * qi).sum(-1) + bi)[:, None] - (torch.einsum("bd,bnd->bn", pu, qj) + bj)
            sq = pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() / neg_per_pos
            if item_bias:
                sq = sq + bi.pow(2).sum() + bj.pow(2).sum() / neg_per_pos
            loss = -F.logsigmoid(z).mean() + reg * sq / len(u)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return W.detach()[:n_users].numpy(), W.detach()[n_users:].numpy(), b.detach()[:, 0].numpy()


@pytest.mark.parametrize("optimizer, lr, neg_per_pos, item_bias", [
    ("adam", 0.02, 1, False), ("adam", 0.02, 3, True), ("sgd", 5.0, 1, False), ("sgd", 5.0, 2, True)])
def test_a_fit_makes_the_updates_of_a_plain_autograd_loop(interactions, optimizer, lr, neg_per_pos, item_bias):
    setting = {"factors": 6, "lr": lr, "reg": 0.01, "epochs": 3, "batch_size": 32, "neg_per_pos": neg_per_pos,
               "item_bias": item_bias, "seed": 2}  # 300 pairs: a short last batch every epoch
    model = BPR(**setting, optimizer=optimizer).fit(interactions)
    P, Q, bias = reference_fit(interactions, **setting, optimizer=optimizer)
    assert not np.allclose(Q, reference_fit(interactions, **{**setting, "epochs": 2}, optimizer=optimizer)[1])
    np.testing.assert_allclose(model.user_factors_, P, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.item_factors_, Q, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.item_bias_, bias, rtol=1e-4, atol=1e-5)


def test_an_unknown_optimizer_is_refused_in_one_line(interactions):
    with pytest.raises(ValueError, match=r"optimizer must be one of adam, sgd, got 'adagrad'"):
        BPR(optimizer="adagrad").fit(interactions)


def test_seeded_runs_are_identical_and_seeds_differ(interactions):
    def fit(seed):
        return BPR(factors=6, lr=0.02, epochs=3, batch_size=32, neg_per_pos=2, item_bias=True, seed=seed).fit(
            interactions)

    a, b, c = fit(4), fit(4), fit(5)
    for name in ("user_factors_", "item_factors_", "item_bias_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.loss_history_ == b.loss_history_
    assert not np.allclose(a.item_factors_, c.item_factors_)


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count, self.clones = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        self.clones += func is torch.ops.aten.clone.default
        return func(*args, **(kwargs or {}))


def test_a_training_step_dispatches_few_tensor_operations(interactions):
    # at ML-1M sizes a step costs in proportion to the tensor operations it runs (each a pass
    # over the batch's rows, or a fixed cost): the autograd + SparseAdam step ran about 200;
    # the hand-written one with the lazy Adam runs under 120 (loss, gradient, update and the
    # loop's guard together; the gradient is not copied on its way to .grad), with SGD under 100
    for optimizer, most in (("adam", 120), ("sgd", 100)):
        counts, clones = [], []
        for epochs in (1, 2):
            with _CountOps() as ops:
                BPR(factors=8, epochs=epochs, batch_size=10, optimizer=optimizer).fit(interactions)
            counts.append(ops.count)
            clones.append(ops.clones)
        steps_per_epoch = -(-interactions.nnz // 10)
        assert (counts[1] - counts[0]) / steps_per_epoch <= most, optimizer
        assert clones[1] == clones[0], optimizer  # no step copies its gradient

"""BPR's training step: the hand-written batch gradient against autograd on the documented loss,
the lazy Adam against torch's SparseAdam, seeded runs, and the step's fixed cost."""
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
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_a_training_step_dispatches_few_tensor_operations(interactions):
    # at ML-1M sizes a step costs in proportion to the tensor operations it runs (each a pass
    # over the batch's rows): the autograd + SparseAdam step ran about 200, the fused one runs
    # about 130 (loss, gradient, lazy Adam and the loop's guard together)
    counts = []
    for epochs in (1, 2):
        with _CountOps() as ops:
            BPR(factors=8, epochs=epochs, batch_size=10).fit(interactions)
        counts.append(ops.count)
    steps_per_epoch = -(-interactions.nnz // 10)
    assert (counts[1] - counts[0]) / steps_per_epoch <= 150

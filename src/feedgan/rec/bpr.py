"""BPR-MF: matrix factorisation trained with the Bayesian Personalized Ranking loss.

Rendle, Freudenthaler, Gantner, Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
Implicit Feedback", UAI 2009.

Every user ``u`` and item ``i`` gets a ``factors``-dimensional vector (plus, optionally, an item
bias ``b_i``); the predicted preference is ``x_ui = <p_u, q_i> + b_i``. Training looks at triples
``(u, i, j)`` where ``i`` is an item ``u`` interacted with and ``j`` one drawn at random, and
maximises the log-probability that ``u`` ranks ``i`` above ``j``::

    loss = -mean log sigmoid(x_ui - x_uj) + reg * sum_batch(|p_u|^2 + |q_i|^2 + |q_j|^2) / B

with lazy Adam (``torch.optim.SparseAdam``: only the rows a batch touches are updated, and their
moment estimates advance only then; a dense Adam would rewrite all of both tables on every batch,
which made a Gowalla epoch ~10x slower), in mini-batches of ``batch_size`` positive pairs (with ``neg_per_pos`` > 1 the
``|q_j|^2`` term is averaged over a pair's negatives; with ``item_bias`` the biases get the same
penalty). The L2 term covers only the rows a batch touches (the usual "batch embedding"
regularisation of LightGCN / RecBole), so ``reg`` is per example: on MovieLens-100K values
around 1e-2 work far better than 1e-4.

Sampling, all in torch, seeded by a local ``torch.Generator`` (global RNG state is untouched):
each epoch shuffles every positive ``(u, i)`` pair of the training matrix once and draws
``neg_per_pos`` negatives per pair uniformly over all items. There is no rejection step, so a
"negative" is occasionally an item the user did interact with (a false negative, probability
``|I_u| / n_items`` per draw). On sparse feedback that is rare and it acts as mild label noise;
in exchange sampling is one ``randint`` call per batch, with no loop over users.

Training runs on the shared loop (:class:`feedgan.gan.LossTrainer`: NaN guard, progress). With
``eval_every`` > 0 and a validation part, NDCG@20 on validation is measured every ``eval_every``
epochs and the best factors are kept (see :mod:`feedgan.rec.selection`); the chosen epoch count
is what the refit on train + valid uses.

BPR cannot fold in unseen users (``fold_in = False``): a user's vector exists only after fit.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..gan import BestCheckpoint, LossTrainer
from .base import Recommender, Validation
from .selection import check_can_score, epoch_choice, validation_ndcg

_INIT_STD = 0.1  # std of the normal initialisation of both factor tables


class BPR(Recommender):
    """Matrix factorisation with the BPR pairwise ranking loss (Rendle et al. 2009).

    Learned state: ``user_factors_`` (n_users, factors), ``item_factors_`` (n_items, factors) and
    ``item_bias_`` (n_items,) (all zeros without ``item_bias``), numpy float32.
    ``loss_history_`` is the mean batch loss of every epoch (a list, not saved).
    """

    name = "bpr"
    fold_in = False
    uses_validation = True

    def __init__(self, factors: int = 64, lr: float = 1e-3, reg: float = 1e-4, epochs: int = 50,
                 batch_size: int = 4096, neg_per_pos: int = 1, item_bias: bool = False, eval_every: int = 0,
                 patience: int | None = None, seed: int = 0, device: str = "cpu"):
        self.factors, self.lr, self.reg, self.epochs = factors, lr, reg, epochs
        self.batch_size, self.neg_per_pos, self.item_bias = batch_size, neg_per_pos, item_bias
        self.eval_every, self.patience, self.seed, self.device = eval_every, patience, seed, device

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, X: sp.csr_matrix, progress=None, valid: Validation | None = None) -> None:
        if self.factors < 1 or self.epochs < 0 or self.batch_size < 1 or self.neg_per_pos < 1:
            raise ValueError(f"{self.name}: factors, batch_size and neg_per_pos must be >= 1 and epochs >= 0, "
                             f"got {self.get_params()}")
        select = valid is not None and self.eval_every > 0
        if select:
            check_can_score(self, valid)
        dev = torch.device(self.device)
        gen = torch.Generator(device=dev).manual_seed(int(self.seed))
        n_users, n_items = X.shape
        P = torch.randn(n_users, self.factors, generator=gen, device=dev) * _INIT_STD
        Q = torch.randn(n_items, self.factors, generator=gen, device=dev) * _INIT_STD
        net = _Factors(P, Q, torch.zeros(n_items, 1, device=dev), self.item_bias)
        opt = torch.optim.SparseAdam([p for p in net.parameters() if p.requires_grad], lr=self.lr)  # lazy Adam
        task = _Epochs(self, net, X, gen)
        trainer = LossTrainer(net, task, opt, self.epochs, name=self.name)
        best = None
        if select:
            @torch.no_grad()
            def metric(_) -> float:
                return validation_ndcg(lambda u: (net.P[u] @ net.Q.T + net.b.T).cpu().numpy(), valid)

            best = BestCheckpoint(metric, every=self.eval_every * task.steps_per_epoch, patience=self.patience,
                                  restore_on_end=True)
        trainer.fit(progress=progress, callbacks=[best] if best else [])
        self.loss_history_ = [s["loss"] for s in trainer.history]
        self.valid_history_, self.best_epoch_ = epoch_choice(best, task.steps_per_epoch, None) if best else ([], None)
        self.user_factors_ = net.P.detach().cpu().numpy().astype(np.float32)  # (n_users, factors)
        self.item_factors_ = net.Q.detach().cpu().numpy().astype(np.float32)  # (n_items, factors)
        self.item_bias_ = net.b.detach()[:, 0].cpu().numpy().astype(np.float32)  # (n_items,)

    def _loss(self, P: torch.Tensor, Q: torch.Tensor, b: torch.Tensor, u: torch.Tensor, i: torch.Tensor,
              j: torch.Tensor) -> torch.Tensor:
        """BPR loss of one batch: B positive pairs ``(u, i)``, each with n negatives ``j`` (B, n)."""
        def rows(table, idx):  # sparse gradient: cost follows the batch, not the table size
            return F.embedding(idx, table, sparse=True)

        pu, qi, qj = rows(P, u), rows(Q, i), rows(Q, j)  # (B, d), (B, d), (B, n, d)
        bi, bj = rows(b, i)[..., 0], rows(b, j)[..., 0]  # (B,), (B, n)
        x_ui = (pu * qi).sum(-1) + bi  # (B,)
        x_uj = torch.einsum("bd,bnd->bn", pu, qj) + bj  # (B, n)
        rank = -F.logsigmoid(x_ui[:, None] - x_uj).mean()  # mean over the B * n triples
        sq = pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() / j.shape[1]
        if self.item_bias:
            sq = sq + bi.pow(2).sum() + bj.pow(2).sum() / j.shape[1]
        return rank + self.reg * sq / u.shape[0]

    # -- scoring ----------------------------------------------------------------------------------
    def _score(self, users, history):
        # users is never None here: fold_in = False makes the base class refuse history-only calls
        U = torch.from_numpy(self.user_factors_[users])  # (B, factors)
        V = torch.from_numpy(self.item_factors_)  # (n_items, factors)
        return (U @ V.T + torch.from_numpy(self.item_bias_)[None, :]).numpy()  # (B, n_items)


class _Factors(nn.Module):
    """The learned tables: ``P`` (n_users, d), ``Q`` (n_items, d), the item bias ``b`` (n_items, 1)
    (a one-column table, trained only with ``item_bias``)."""

    def __init__(self, P: torch.Tensor, Q: torch.Tensor, b: torch.Tensor, item_bias: bool):
        super().__init__()
        self.P, self.Q = nn.Parameter(P), nn.Parameter(Q)
        self.b = nn.Parameter(b, requires_grad=item_bias)


class _Epochs:
    """BPR batches for :class:`~feedgan.gan.LossTrainer`: every epoch shuffles all positive pairs
    once; step ``t`` is batch ``t mod steps_per_epoch`` of that order, with uniform negatives."""

    def __init__(self, model: BPR, net: _Factors, X: sp.csr_matrix, gen: torch.Generator):
        dev = net.P.device
        # every positive pair once: pos_u[k], pos_i[k] is the k-th non-zero of X
        self.pos_u = torch.from_numpy(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))).to(dev)  # (nnz,)
        self.pos_i = torch.from_numpy(X.indices.astype(np.int64)).to(dev)  # (nnz,)
        self.model, self.net, self.gen, self.n_items = model, net, gen, X.shape[1]
        self.steps_per_epoch = math.ceil(len(self.pos_u) / model.batch_size)
        self.order = None

    def loss(self, step: int) -> torch.Tensor:
        k, B, net = step % self.steps_per_epoch, self.model.batch_size, self.net
        if k == 0:
            self.order = torch.randperm(len(self.pos_u), generator=self.gen, device=net.P.device)  # (nnz,)
        idx = self.order[k * B:(k + 1) * B]
        u, i = self.pos_u[idx], self.pos_i[idx]  # (B,), (B,)
        j = torch.randint(self.n_items, (len(idx), self.model.neg_per_pos), generator=self.gen,
                          device=net.P.device)  # (B, n)
        return self.model._loss(net.P, net.Q, net.b, u, i, j)
